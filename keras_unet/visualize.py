"""Pictures for people: colour-mapped weight maps with a scale bar, written as PNG with OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["colorize", "weight_map_image", "write_png"]


def colorize(values: np.ndarray, vmin: float, vmax: float, colormap: int = cv2.COLORMAP_INFERNO) -> np.ndarray:
    """Map ``(H, W)`` values to RGB uint8 ``(H, W, 3)`` with an OpenCV colour map (dark = low)."""
    span = max(float(vmax) - float(vmin), 1e-12)
    scaled = np.clip((np.asarray(values, np.float64) - vmin) / span, 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def weight_map_image(weights: np.ndarray) -> np.ndarray:
    """RGB picture of a weight map: the map colour-mapped from 0 to its maximum, with a scale bar.

    The heaviest pixels (the thin borders between touching objects) are the brightest.
    """
    w = np.asarray(weights, np.float32)
    vmax = float(w.max()) if w.size else 1.0
    picture = colorize(w, 0.0, vmax)
    h = picture.shape[0]
    bar_w, text_w = max(12, h // 32), 70
    ramp = np.linspace(vmax, 0.0, h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    legend = np.full((h, bar_w + text_w, 3), 255, np.uint8)
    legend[:, :bar_w] = colorize(ramp, 0.0, vmax)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    cv2.putText(legend, f"{vmax:.2f}", (bar_w + 4, 12), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(legend, "0", (bar_w + 4, h - 4), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([picture, np.full((h, 4, 3), 255, np.uint8), legend], axis=1)


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB (or grey) uint8/uint16 image as PNG, atomically (temporary name, then rename)."""
    path = Path(path)
    image = np.asarray(rgb)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    tmp = path.with_name(f".{path.stem}.partial.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)
    return path

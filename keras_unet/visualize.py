"""Pictures for people: colour-mapped weight maps with a scale bar, written as PNG with OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["colorize", "overlay", "weight_map_image", "write_png"]


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


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 picture of ``mask`` (class ids) over ``image``: tinted classes, outlined objects."""
    img = np.asarray(image, np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    lo, hi = np.percentile(img, (0.5, 99.5)) if img.size else (0, 1)
    grey = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2) if grey.ndim == 2 else grey[..., :3]
    palette = np.array([[0, 0, 0], [255, 64, 64], [64, 160, 255], [64, 255, 64], [255, 200, 0],
                        [200, 64, 255]], np.float64)
    mask = np.asarray(mask)
    tint = palette[np.clip(mask, 0, len(palette) - 1)]
    out = np.where(mask[..., None] > 0, (1 - alpha) * rgb + alpha * tint, rgb).astype(np.uint8)
    edges = cv2.morphologyEx((mask > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    out[edges > 0] = (255, 255, 0)
    return out

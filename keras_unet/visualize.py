"""Pictures for people: colour-mapped weight maps with a scale bar, written as PNG with OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .files import atomic_path

__all__ = ["colorize", "overlay", "instance_overlay", "weight_map_image", "write_png", "plot_history",
           "plot_curves",
           "weight_map_files"]


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
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"cannot write {path}")
    return path


def _display(image: np.ndarray) -> np.ndarray:
    """float64 RGB ``(H, W, 3)`` in [0, 255] of an image of any range: the 0.5 and 99.5
    percentiles stretched to black and white; of more channels the first three, of two red and
    green."""
    img = np.asarray(image, np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    lo, hi = np.percentile(img, (0.5, 99.5)) if img.size else (0, 1)
    grey = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    if grey.ndim == 2:
        return np.repeat(grey[..., None], 3, axis=2)
    if grey.shape[2] < 3:  # 2 channels: red and green
        grey = np.concatenate([grey, np.zeros(grey.shape[:2] + (3 - grey.shape[2],))], axis=2)
    return grey[..., :3]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 picture of ``mask`` (class ids) over ``image``: tinted classes, outlined objects."""
    rgb = _display(image)
    palette = np.array([[0, 0, 0], [255, 64, 64], [64, 160, 255], [64, 255, 64], [255, 200, 0],
                        [200, 64, 255]], np.float64)
    mask = np.asarray(mask)
    tint = palette[np.clip(mask, 0, len(palette) - 1)]
    out = np.where(mask[..., None] > 0, (1 - alpha) * rgb + alpha * tint, rgb).astype(np.uint8)
    edges = cv2.morphologyEx((mask > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    out[edges > 0] = (255, 255, 0)
    return out


def instance_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of instance ``labels`` over ``image``: each object in its own colour
    (a fixed pseudo-random colour per id), outlined in white."""
    rgb = _display(image)
    labels = np.asarray(labels).astype(np.int64)
    hue = (labels * 0.618033988749895) % 1.0  # golden-ratio hues: neighbours differ
    hsv = np.stack([hue * 179, np.full_like(hue, 200), np.full_like(hue, 255)], -1)
    colours = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float64)
    out = np.where(labels[..., None] > 0, (1 - alpha) * rgb + alpha * colours, rgb)
    kernel = np.ones((3, 3), np.uint8)
    as_float = labels.astype(np.float32)
    edges = (cv2.dilate(as_float, kernel) != cv2.erode(as_float, kernel)) & (labels > 0)
    out[edges] = (255, 255, 255)
    return out.astype(np.uint8)


_LINE_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """At most ``n`` round y-tick values (steps of 1, 2, 2.5 or 5 times a power of ten, the
    smallest that fits) from ``lo`` to ``hi``, as the axis labels (the axis itself keeps the
    data's range)."""
    power = 10.0 ** np.floor(np.log10((hi - lo) / n))
    for step in (m * power for m in (1, 2, 2.5, 5, 10, 20)):
        first, last = np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9)
        if last - first + 1 <= n:
            break
    return np.round(np.arange(first, last + 0.5) * step, 10) + 0.0  # + 0.0: no "-0"
def _panel(series: dict[str, list[float]], epochs: list[float], title: str,
           size: tuple[int, int] = (520, 360), xlabel: str = "epoch") -> np.ndarray:
    """One line chart, RGB uint8: axes with ticks, one coloured line per series, a legend.
    ``epochs`` are the x positions (of every series; NaN values are left out)."""
    w, h = size
    left, right, top, bottom = 60, 30, 48, 40  # the right margin parts it from the next panel
    font = cv2.FONT_HERSHEY_SIMPLEX
    legend, x, y = [], left, 34  # the legend in rows between the title and the plot area
    for name in series:
        width = 35 + cv2.getTextSize(name, font, 0.4, 1)[0][0]
        if x > left and x + width - 10 > w - right:
            x, y = left, y + 16
        legend.append((name, x, y))
        x += width
    top += y - 34
    h += y - 34
    img = np.full((h, w, 3), 255, np.uint8)
    values = np.array([v for vs in series.values() for v in vs if np.isfinite(v)], np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    ticks = _nice_ticks(lo, hi)
    e0, e1 = min(epochs), max(epochs)
    e1 = e1 if e1 > e0 else e0 + 1

    def to_px(e, v):
        x = left + (e - e0) / (e1 - e0) * (w - left - right)
        y = top + (hi - v) / (hi - lo) * (h - top - bottom)
        return int(round(x)), int(round(y))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for v in ticks:  # y ticks
        _, y = to_px(e0, v)
        cv2.line(img, (left - 4, y), (left, y), (0, 0, 0), 1)
        cv2.line(img, (left + 1, y), (w - right - 1, y), (230, 230, 230), 1)
        cv2.putText(img, f"{v:.3g}", (2, y + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for e in (int(t) for t in _nice_ticks(e0, e1, 6) if t == int(t)):  # whole epochs
        x, _ = to_px(e, lo)
        cv2.line(img, (x, h - bottom), (x, h - bottom + 4), (0, 0, 0), 1)
        cv2.putText(img, str(e), (x - 6, h - bottom + 16), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 20, h - 6), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, vs) in enumerate(series.items()):
        colour = _LINE_COLOURS[i % len(_LINE_COLOURS)]
        pts = [to_px(e, v) for e, v in zip(epochs, vs) if np.isfinite(v)]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
    for i, (name, x, y) in enumerate(legend):
        colour = _LINE_COLOURS[i % len(_LINE_COLOURS)]
        cv2.line(img, (x, y), (x + 20, y), colour, 2)
        cv2.putText(img, name, (x + 25, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def plot_curves(series: dict[str, list[float]], x: list[float], title: str,
                xlabel: str) -> np.ndarray:
    """A line chart of ``series`` (name -> values at ``x``; NaN: no point), RGB uint8."""
    return _panel(series, x, title, (640, 400), xlabel)


COUNTS = ("val_merges",)  # history columns that count objects: their own panel, not 0 to 1


def plot_history(history: dict[str, list[float]]) -> np.ndarray:
    """Training curves as an RGB uint8 picture: losses on the left, validation metrics on the
    right (when there are any). ``history`` maps column names of history.csv to values; the
    ``epoch`` column (0-based) gives the x axis."""
    n = len(next(iter(history.values()))) if history else 0
    if n == 0:
        raise ValueError("the history is empty: no epoch finished")
    epochs = [e + 1 for e in history.get("epoch", range(n))]
    losses = {k: v for k, v in history.items() if k.endswith("loss")}
    metrics = {k: v for k, v in history.items()
               if k.startswith("val_") and not k.endswith("loss") and k not in COUNTS}
    counts = {k: v for k, v in history.items() if k in COUNTS}
    panels = [_panel(losses, epochs, "loss (weighted cross-entropy)")]
    if metrics:
        panels.append(_panel(metrics, epochs, "validation metrics (0 to 1)"))
    if counts:
        panels.append(_panel(counts, epochs, "validation: merged objects", (360, 360)))
    height = max(p.shape[0] for p in panels)  # a wrapped legend makes a panel taller
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)),
                                  constant_values=255) for p in panels], axis=1)


def weight_map_files(mask: str | os.PathLike, output: str | os.PathLike, w0: float = 10.0,
                     sigma: float = 5.0, class_weights: str | None = "balanced",
                     mask_type: str = "auto", border_width: int = 1,
                     log=None, axes: str | None = None) -> tuple[Path, Path]:
    """The weight map of a mask file as ``OUTPUT.npy`` (exact values) and ``OUTPUT.png``,
    computed as ``fit`` does: on the objects after separating touching ones by
    ``border_width`` px each (:func:`keras_unet.targets.separate_touching`).

    Returns the two paths; ``log`` (``print``-like) gets a summary line and where they went.
    """
    from .files import check_writable
    from .images import read_mask
    from .targets import labels_from_mask
    from .weights import unet_weight_map

    from .axes import check_axes

    axes = check_axes(axes)
    out = Path(output)
    if out.suffix in (".npy", ".png"):
        out = out.with_suffix("")
    check_writable(out.parent, "output folder")
    if not isinstance(border_width, int) or not 0 <= border_width <= 16:
        raise ValueError(f"--border-width must be an integer from 0 to 16 px, got {border_width!r}")
    # fit's reading and rules: grey values that are no labels are refused, naming the file
    labels = labels_from_mask(read_mask(mask, axes), 2, mask_type, str(mask), border_width,
                              option="MASK")[1]
    w = unet_weight_map(labels, w0, sigma, class_weights)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".npy")) as tmp:
        np.save(tmp, w)
    write_png(out.with_suffix(".png"), weight_map_image(w))
    if log:
        n = len(np.unique(labels[labels > 0]))
        log(f"{n} objects; weights min {w.min():.3f}, mean {w.mean():.3f}, max {w.max():.3f}")
        log(f"Wrote {out.with_suffix('.npy')} and {out.with_suffix('.png')}")
    return out.with_suffix(".npy"), out.with_suffix(".png")

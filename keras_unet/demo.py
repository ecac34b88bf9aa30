"""The built-in demo data: synthetic microscopy-like images of touching cells, with their
instance labels (NumPy and SciPy only; :func:`keras_unet.data.demo_data` re-exports it)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["demo_data"]


def demo_data(
    n_images: int = 8,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    cell_radius: tuple[float, float] = (9.0, 16.0),
    density: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic microscopy-like images of touching cells, with their instance labels.

    Cells are grown from random seeds as a noisy Voronoi tessellation limited by a per-cell radius,
    so many cells touch their neighbours; a 1 px background line (like the membranes of ISBI 2012)
    separates touching cells in the labels and shows as a faint dark line in the image. Interiors
    have per-cell brightness and texture, the image is blurred and noisy. Deterministic for a seed.

    Args:
        n_images: number of images.
        size: image size in px, ``int`` or ``(height, width)``.
        seed: random seed.
        cell_radius: range of cell radii in px.
        density: fraction of the area seeded with cells (about; 0..1).

    Returns:
        ``images`` float32 ``(n, H, W, 1)`` in [0, 1] and ``labels`` int32 ``(n, H, W)``
        (0 = background, 1..N = cells).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if n_images < 1 or h < 8 or w < 8:
        raise ValueError(f"need n_images >= 1 and size >= 8 px, got {n_images} and {(h, w)}")
    rng = np.random.default_rng(seed)
    images = np.empty((n_images, h, w, 1), np.float32)
    labels = np.empty((n_images, h, w), np.int32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n_images):
        r_mean = float(np.mean(cell_radius))
        n_cells = max(2, int(density * h * w / (np.pi * r_mean**2)))
        cy = rng.uniform(0, h, n_cells).astype(np.float32)
        cx = rng.uniform(0, w, n_cells).astype(np.float32)
        radius = rng.uniform(*cell_radius, n_cells).astype(np.float32)
        # Noisy distance so borders are wavy, not straight Voronoi edges.
        wobble = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 3).astype(np.float32)
        wobble *= 2.5 / (wobble.std() + 1e-6)
        seeds = np.ones((h, w), np.uint8)
        seeds[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = 0
        _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
        owner_map = np.full((h, w), -1, np.int64)
        owner_map[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = np.arange(
            n_cells
        )
        owner = owner_map[iy, ix]
        dist = np.hypot(yy - cy[owner], xx - cx[owner]) + wobble
        lab = np.where(dist < radius[owner], owner + 1, 0).astype(np.int32)
        # 1 px background line where two cells touch (4-neighbourhood).
        border = np.zeros((h, w), bool)
        for axis in (0, 1):
            a = np.moveaxis(lab, axis, 0)
            diff = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
            np.moveaxis(border, axis, 0)[1:] |= diff
        lab[border] = 0
        lab = _relabel(lab)

        brightness = rng.uniform(0.55, 0.9, n_cells + 1).astype(np.float32)
        brightness[0] = 0.25
        texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 1.5).astype(np.float32)
        img = brightness[np.where(lab > 0, owner + 1, 0)] + 0.05 * texture
        img[border] = 0.4  # faint membrane between touching cells
        img = ndi.gaussian_filter(img, 1.0) + rng.normal(0, 0.03, (h, w)).astype(np.float32)
        images[i, ..., 0] = np.clip(img, 0, 1)
        labels[i] = lab
    return images, labels


def _relabel(lab: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N, in order of first appearance in raster order."""
    ids, first = np.unique(lab, return_index=True)
    order = ids[np.argsort(first)]
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    fg = order[order > 0]
    lut[fg] = np.arange(1, len(fg) + 1)
    return lut[lab]

"""How often each training image is drawn (``fit --balance``): groups of images, by kind or by a
CSV, and the probabilities that draw each group in proportion to the square root of its size.

A training set of 40 fluorescence images and 4 stained ones, drawn alike, gives the stained kind
9 % of the tiles; drawn by group in proportion to the square root of the group sizes, 24 %.
:func:`keras_unet.data.training_dataset` draws the images with these probabilities.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import groups_of, read_groups
from .preprocess import image_kind

__all__ = ["check_draws", "image_groups", "draw_probabilities"]


def check_draws(draws: Sequence[float] | None, n: int) -> None:
    """Raise ValueError unless ``draws`` is None or ``n`` probabilities > 0 that sum to 1."""
    if draws is None:
        return
    p = np.asarray(draws, dtype=np.float64)
    if p.shape != (n,) or not np.all(np.isfinite(p)) or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError(f"draws must hold {n} probabilities > 0 that sum to 1, got {list(draws)}")


def image_groups(balance: str, images: Sequence[np.ndarray], names: Sequence[str],
                 folder: str | None = None) -> list[str] | None:
    """Each image's group for ``fit --balance``: None for ``"none"``; the kind of image for
    ``"kind"`` (:func:`keras_unet.preprocess.image_kind`); else the group a CSV of ``file
    name,group`` rows gives each of ``names``.

    Raises:
        ValueError, FileNotFoundError: a CSV that is missing or malformed, that gives an image
            no group, or that names a file not among the images (one line each).
    """
    if balance == "none":
        return None
    if balance == "kind":
        return [image_kind(x) for x in images]
    if not Path(balance).is_file():
        raise FileNotFoundError(f"--balance {balance}: no such file; give a CSV of 'file name,"
                                "group' rows, or --balance kind (or none)")
    return groups_of(names, read_groups(balance), f"--balance {balance}", folder or "the images")


def draw_probabilities(groups: Sequence[str]) -> tuple[list[float] | None, str]:
    """How often to draw each image so that each group is drawn in proportion to the square root
    of its number of images (square-root sampling: a compromise between drawing every image alike,
    which lets a common kind swamp a rare one, and every group alike, which repeats the few images
    of a rare kind until the network learns them by heart). Returns the probabilities (None when
    there is a single group) and a line that says what they are."""
    counts = Counter(groups)
    n = len(groups)
    if len(counts) < 2:
        (only,) = counts or {"none": 0}
        return None, (f"All {n} training images are of one group ({only}); each is drawn alike.")
    share = {g: np.sqrt(c) for g, c in counts.items()}
    total = sum(share.values())
    probs = [share[g] / total / counts[g] for g in groups]
    parts = [f"{g}: {c} image{'s' * (c != 1)}, {100 * share[g] / total:.0f} % of the tiles "
             f"({100 * c / n:.0f} % if drawn alike)" for g, c in counts.most_common()]
    return probs, ("Drawing each group of training images in proportion to the square root of "
                   "its size: " + "; ".join(parts) + ".")

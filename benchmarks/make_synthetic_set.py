"""A synthetic training set of any size, for memory and speed checks of ``keras-unet fit``.

    python benchmarks/make_synthetic_set.py /tmp/synthetic --images 300 --large 6000

writes ``images/`` (8-bit PNG) and ``instance_labels/`` (16-bit PNG, random discs, some
touching): ``--images`` images of random sizes from ``--min`` to ``--max`` px a side, plus one
``--large`` x ``--large`` image (0: none). Deterministic for a ``--seed``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def pair(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit image of bright noisy discs on a dark background, and its instance labels."""
    labels = np.zeros((h, w), np.uint16)
    n = max(1, int(0.35 * h * w / (np.pi * 12**2)))
    for k in range(1, min(n, 65535) + 1):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(labels, centre, int(rng.integers(6, 18)), k, -1)
    image = np.where(labels > 0, 150, 40).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + rng.normal(0, 12, (h, w)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--min", type=int, default=256)
    parser.add_argument("--max", type=int, default=1024)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    (args.folder / "images").mkdir(parents=True, exist_ok=True)
    (args.folder / "instance_labels").mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in rng.integers(args.min, args.max + 1, 2))
             for _ in range(args.images)] + ([(args.large, args.large)] if args.large else [])
    for i, (h, w) in enumerate(sizes):
        image, labels = pair(h, w, rng)
        cv2.imwrite(str(args.folder / "images" / f"s{i:04d}.png"), image)
        cv2.imwrite(str(args.folder / "instance_labels" / f"s{i:04d}.png"), labels)
    pixels = sum(h * w for h, w in sizes)
    print(f"wrote {len(sizes)} images, {pixels / 1e6:.0f} megapixels, to {args.folder}")


if __name__ == "__main__":
    main()

"""See what training tiles look like: one tile, and the same tile as the pipeline augments it.

    python examples/augmentation_gallery.py [--image ../shared/data/isbi2012/train/images/00.png
                                             --mask ../shared/data/isbi2012/train/masks/00.png]

Writes ``augmentation_gallery.png``: the top row shows image tiles, the middle row their labels
(white = class 1) after the crop to the network output, with the separating borders between
touching objects as background (``--border-width``, 1 px per object by default), and the bottom
row the weight maps, brightest in those gaps. The columns are the plain tile, the elastic
deformation alone, and every augmentation together. Without --image it uses the built-in demo
data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from keras_unet.augment import Augmentation
from keras_unet.data import demo_data, training_dataset
from keras_unet.images import read_image, read_mask
from keras_unet.config import TrainConfig
from keras_unet.model import Geometry
from keras_unet.training import prepare_training_set
from keras_unet.visualize import write_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--mask", type=Path)
    parser.add_argument("--output", type=Path, default=Path("augmentation_gallery.png"))
    args = parser.parse_args()

    if args.image and args.mask:
        images, masks = [read_image(args.image)], [read_mask(args.mask)]
    else:
        x, y = demo_data(1, 512, seed=1)
        images, masks = list(x), list(y)
    data = prepare_training_set(images, masks, TrainConfig())
    geo, tile = Geometry(5), 572
    m, out = geo.margin, geo.output_size(tile)
    elastic_only = Augmentation(flips=False, rotation=0, shift=0, brightness=0, contrast=0)
    tops, bottoms, weights = [], [], []
    for augmentation in (None, elastic_only, Augmentation()):
        # the same seed picks the same tile position, whatever the augmentation
        batch = next(iter(training_dataset(data, geo, tile, 1, seed=7, augmentation=augmentation)))
        image = batch["image"].numpy()[0, m:m + out, m:m + out, 0]
        lo, hi = np.percentile(image, (1, 99))
        tops.append((np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8))
        bottoms.append((batch["labels"].numpy()[0] > 0).astype(np.uint8) * 255)
        w = batch["weights"].numpy()[0]
        weights.append((np.clip(w / max(float(w.max()), 1e-6), 0, 1) * 255).astype(np.uint8))
    gap = np.full((out, 6), 128, np.uint8)
    row = lambda tiles: np.concatenate(sum(([t, gap] for t in tiles), [])[:-1], axis=1)  # noqa: E731
    band = np.full((6, row(tops).shape[1]), 128, np.uint8)
    picture = np.concatenate([row(tops), band, row(bottoms), band, row(weights)], axis=0)
    write_png(args.output, picture)
    print(f"Wrote {args.output}: plain tile | elastic deformation | all augmentations")


if __name__ == "__main__":
    main()

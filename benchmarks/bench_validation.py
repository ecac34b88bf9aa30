"""The cost of validating once per epoch during ``fit``, before and after, side by side in one run.

    python benchmarks/bench_validation.py [--size 1000] [--images 2]

``fit`` holds out validation images by default (10 % of them from 10 images on) and, after every
epoch, scores the validation tiles. Before, it predicted them twice: once in Keras' own
``validation_data`` pass (for ``val_loss``) and once in :class:`~keras_unet.callbacks.
ValidationMetrics` (for the pixel error, IoU and Dice). Now ``ValidationMetrics`` gives
``val_loss`` from its own prediction. Prints the seconds per epoch of each, with the default
network (depth 4, 32 filters, 252 px tiles, batch 2, bfloat16 where the CPU computes it) on
``--images`` synthetic RGB images of ``--size`` px a side (the MoNuSeg default split holds out two
1000 x 1000 images), and the ratio now / before (target < 0.6), and the training steps that time
is worth (one step as timed here).
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import median_time
from make_synthetic_set import pair

from keras_unet.callbacks import ValidationMetrics
from keras_unet.config import TrainConfig
from keras_unet.data import validation_dataset, validation_tiles
from keras_unet.devices import precision
from keras_unet.losses import build_training_model
from keras_unet.model import build_unet
from keras_unet.prepare import prepare_training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pairs = [pair(args.size, args.size, rng) for _ in range(args.images)]
    images = [np.repeat(im[..., None], 3, axis=-1) for im, _ in pairs]
    config = TrainConfig(images="-", masks="-")
    data = prepare_training_set(images, [lab for _, lab in pairs], config)
    with precision(config.mixed_precision):
        unet = build_unet((None, None, 3), depth=config.depth, filters=config.filters)
        model = build_training_model(unet)
        model.compile(optimizer="adam")
    tiles = validation_tiles(data, config.geometry, config.tile_size)
    metrics = ValidationMetrics(unet, tiles, config.batch_size)
    batch = {k: tiles[k][: config.batch_size] for k in ("image", "labels", "weights")}

    def before() -> None:
        model.evaluate(validation_dataset(data, config.geometry, config.tile_size,
                                          config.batch_size), verbose=0)
        metrics.on_epoch_end(0, {})

    def now() -> None:
        metrics.on_epoch_end(0, {})

    step = median_time(lambda: model.train_on_batch(batch), args.repeat * 3)
    old, new = median_time(before, args.repeat), median_time(now, args.repeat)
    print(f"validation of {args.images} images of {args.size} x {args.size} px "
          f"({len(tiles['image'])} tiles of {config.tile_size} px), per epoch:")
    print(f"  before (Keras validation_data + ValidationMetrics)  {old:6.2f} s  "
          f"= {old / step:5.1f} training steps")
    print(f"  now    (ValidationMetrics alone, val_loss included)  {new:6.2f} s  "
          f"= {new / step:5.1f} training steps")
    print(f"  ratio now / before: {new / old:.2f}; over the default 40 epochs: "
          f"{40 * (old - new) / 60:.1f} min saved")


if __name__ == "__main__":
    main()

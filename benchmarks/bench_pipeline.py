"""Input pipeline speed, side by side in one run.

    pip install --no-binary elasticdeform elasticdeform   # the comparison only (NumPy 2 build)
    python benchmarks/bench_pipeline.py [--data ../shared/data/isbi2012]

Prints:

* reading the images and computing their weight maps once (the cache the pipeline cuts from);
* tiles per second of the full tf.data pipeline (random 572 px tile, mirror padding, rotation,
  shift, the paper's elastic deformation, flips, grey values, label/weight crop, batching);
* the time of one training step of the default network (``build_unet()``: 64 base filters,
  572 px tile, batch 1, SGD) and of the laptop default (16 base filters); the ratio says how many
  times faster the pipeline delivers tiles than training consumes them (target >= 3);
* one elastic deformation of a 572 x 572 tile, ours (TensorFlow ops, compiled) against
  ``elasticdeform.deform_random_grid`` (3 x 3 grid, sigma 10 px) on the same tile: image alone
  (bilinear), and image + labels + weights (orders 1, 0, 0). Target: ratio ours / theirs <= 1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _timing import median_time

from keras_unet._compat import keras, tf
from keras_unet.augment import Augmentation, dense_field, random_grid, warp
from keras_unet.data import demo_data, training_dataset
from keras_unet.images import load_pairs
from keras_unet.losses import build_training_model
from keras_unet.model import Geometry, build_unet
from keras_unet.config import TrainConfig
from keras_unet.training import prepare_training_set

TILE = 572


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parent / "shared/data/isbi2012")
    parser.add_argument("--tiles", type=int, default=200, help="tiles to time the pipeline on")
    args = parser.parse_args()

    config = TrainConfig(tile_size=TILE, batch_size=1)
    t = time.perf_counter()
    if (args.data / "train" / "images").is_dir():
        images, masks, _ = load_pairs(args.data / "train" / "images", args.data / "train" / "masks")
        source = f"ISBI 2012, {len(images)} slices {images[0].shape[1]}x{images[0].shape[0]}"
    else:
        images, masks = demo_data(30, 512, seed=0)
        images, masks = list(images), list(masks)
        source = "demo data, 30 images 512x512 (no --data found)"
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    data = prepare_training_set(images, masks, config)
    prep_s = time.perf_counter() - t
    print(f"{source}: read {read_s:.2f} s, normalise + weight maps {prep_s:.2f} s "
          f"({1000 * prep_s / len(images):.1f} ms per image, once per run)")

    # -- the pipeline ---------------------------------------------------------------------
    geo = Geometry()
    dataset = training_dataset(data, geo, TILE, batch_size=1, seed=0,
                               augmentation=Augmentation())
    iterator = iter(dataset)
    for _ in range(10):  # warm-up: tracing, thread pools, prefetch buffer
        next(iterator)
    t = time.perf_counter()
    for _ in range(args.tiles):
        batch = next(iterator)
    batch["image"].numpy()
    pipe_s = (time.perf_counter() - t) / args.tiles
    print(f"pipeline, {TILE} px tiles with every augmentation: {1 / pipe_s:7.1f} tiles/s "
          f"({1000 * pipe_s:.1f} ms per tile)")

    # -- the training step it feeds ---------------------------------------------------------
    one = next(iter(training_dataset(data, geo, TILE, batch_size=1, seed=1)))
    for base in (64, 16):
        model = build_training_model(build_unet(filters=base))
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.99))
        step_s = median_time(lambda: model.train_on_batch(one), repeat=3 if base == 64 else 5)
        label = "default network build_unet()" if base == 64 else "laptop default, 16 filters"
        print(f"train step, {label:30s} {TILE} px, batch 1: {step_s:6.2f} s "
              f"-> pipeline is {step_s / pipe_s:6.1f}x faster than training consumes tiles")

    # -- one elastic deformation ----------------------------------------------------------
    rng = np.random.default_rng(0)
    image = rng.random((TILE, TILE)).astype(np.float32)
    labels = rng.integers(0, 30, (TILE, TILE)).astype(np.int32)
    weights = rng.random((TILE, TILE)).astype(np.float32)

    @tf.function(jit_compile=False)
    def ours_image(x, seed):
        field = dense_field(random_grid(seed, (3, 3), 10.0), TILE, TILE)
        return warp(x, field, 1)

    @tf.function(jit_compile=False)
    def ours_three(x, y, w, seed):
        field = dense_field(random_grid(seed, (3, 3), 10.0), TILE, TILE)
        return warp(x, field, 1), warp(y, field, 0), warp(w, field, 0)

    x_t, y_t, w_t = tf.constant(image), tf.constant(labels), tf.constant(weights)
    seed = tf.constant([1, 2], tf.int64)
    ours1 = median_time(lambda: ours_image(x_t, seed).numpy(), 30)
    ours3 = median_time(lambda: [a.numpy() for a in ours_three(x_t, y_t, w_t, seed)], 30)
    try:
        import elasticdeform
    except ImportError:
        print("elastic deformation of one tile: ours "
              f"{1000 * ours1:.1f} ms (image), {1000 * ours3:.1f} ms (image + labels + weights); "
              "pip install --no-binary elasticdeform elasticdeform for the comparison")
        return
    theirs1 = median_time(lambda: elasticdeform.deform_random_grid(image, sigma=10, points=3, order=1), 30)
    theirs3 = median_time(lambda: elasticdeform.deform_random_grid(
        [image, labels, weights], sigma=10, points=3, order=[1, 0, 0]), 30)
    theirs_default = median_time(lambda: elasticdeform.deform_random_grid(image, sigma=10, points=3), 10)
    print(f"elastic deformation of one {TILE}x{TILE} tile (median):")
    print(f"  image, bilinear:               ours {1000 * ours1:6.2f} ms, elasticdeform "
          f"{1000 * theirs1:6.2f} ms, ratio ours/theirs {ours1 / theirs1:.2f}")
    print(f"  image + labels + weights:      ours {1000 * ours3:6.2f} ms, elasticdeform "
          f"{1000 * theirs3:6.2f} ms, ratio ours/theirs {ours3 / theirs3:.2f}")
    print(f"  (elasticdeform's default cubic spline on the image: {1000 * theirs_default:.2f} ms)")


if __name__ == "__main__":
    main()

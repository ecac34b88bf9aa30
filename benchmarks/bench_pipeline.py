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

``--paths`` instead compares where the tiles come from, at the ``fit`` defaults (252 px tiles,
batch 2, every augmentation, the default network), side by side in one run: the pipeline as it
was before images were held at their own size (every image padded to the largest and stacked
into one ``tf.constant``; its code is kept below, :func:`stacked_training_dataset`), images held
in memory at their own size, and the zarr disk cache. For each: batches per second of the
pipeline alone, and training steps per second of ``model.fit`` fed by it (with the CPU seconds
the process spends per step, which other load on a shared machine disturbs less), with the
ratios to the stacked pipeline. Targets: in memory >= 0.95x, from the disk cache >= 0.8x. (The
cache has just been written, so the OS holds it in its page cache: a second epoch's view.)
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


def stacked_training_dataset(data, geometry, tile_size, batch_size=1, seed=0, augmentation=None,
                             start=0):
    """The training pipeline as it was before images were held at their own size (commit
    3bc57bd): every normalised image, label and weight map mirror-padded to the largest extent,
    stacked, and copied into ``tf.constant``. Kept here only to compare speed and memory."""
    from keras_unet import augment
    from keras_unet.data import crop_to_output
    from keras_unet.preprocess import mirror_pad

    out = geometry.check(tile_size, "tile size")
    aug = (augmentation or Augmentation.off()).validate()
    reach = aug.reach(tile_size)
    pad = geometry.margin + reach
    n, c = len(data.images), data.channels
    ext_h = [max(im.shape[0], out) for im in data.images]
    ext_w = [max(im.shape[1], out) for im in data.images]
    H, W = max(ext_h) + 2 * pad, max(ext_w) + 2 * pad
    images = np.zeros((n, H, W, c), np.float32)
    labels = np.zeros((n, H, W), np.int32)
    weights = np.zeros((n, H, W), np.float32)
    for i in range(n):
        im, lb, wt = data.image(i), np.asarray(data.labels[i]), np.asarray(data.weights[i])
        h, w = im.shape[:2]
        images[i] = mirror_pad(im, (pad, H - h - pad, pad, W - w - pad))
        labels[i, pad:pad + h, pad:pad + w] = lb
        weights[i, pad:pad + h, pad:pad + w] = wt
    max_y = tf.constant(np.array(ext_h) - out + 1, tf.int32)
    max_x = tf.constant(np.array(ext_w) - out + 1, tf.int32)
    images_t, labels_t, weights_t = (tf.constant(a) for a in (images, labels, weights))
    span = tile_size + 2 * reach

    def sample(step):
        s = tf.stack([tf.cast(seed, tf.int64), step])
        idx = tf.random.stateless_uniform([], s, 0, n, dtype=tf.int32)
        yx = tf.random.stateless_uniform([2], s + [0, 1 << 40], 0, 1 << 30, dtype=tf.int32)
        y, x = yx[0] % max_y[idx], yx[1] % max_x[idx]
        image = images_t[idx, y:y + span, x:x + span]
        lab = labels_t[idx, y:y + span, x:x + span]
        wt = weights_t[idx, y:y + span, x:x + span]
        if aug.geometric:
            yy, xx = augment.coordinates(aug, s + [0, 2 << 40], tile_size)
            yy, xx = yy + reach, xx + reach
            image = augment.sample(image, yy, xx, 1)
            lab = augment.sample(lab, yy, xx, 0)
            wt = augment.sample(wt, yy, xx, 0)
        image = tf.ensure_shape(image, [tile_size, tile_size, c])
        lab = tf.ensure_shape(lab, [tile_size, tile_size])
        wt = tf.ensure_shape(wt, [tile_size, tile_size])
        image, lab, wt = augment.flip(aug, s + [0, 3 << 40], image, lab, wt)
        image = augment.grey(aug, s + [0, 4 << 40], image)
        return {"image": image, "labels": crop_to_output(lab, geometry),
                "weights": crop_to_output(wt, geometry)}

    ds = tf.data.Dataset.counter(start).map(sample, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def cached_copy(data, folder):
    """``data`` written to a disk cache in ``folder`` and opened from there."""
    from types import SimpleNamespace

    from keras_unet.cache import CacheWriter, open_cache

    with CacheWriter(folder, "bench") as writer:
        for i in range(len(data.images)):
            writer.add("train", SimpleNamespace(image=data.images[i], labels=data.labels[i],
                                                weights=data.weights[i], stats=data.stats[i],
                                                instances=None))
        writer.finish_set("train", data.min_object_size, data.border_width, False)
        writer.commit()
    return open_cache(Path(folder) / "bench")["train"]


def compare_paths(data, batches: int, steps: int, rounds: int = 6) -> None:
    """Batches/s and training steps/s at the fit defaults: stacked, in memory, disk cache."""
    import tempfile

    from keras_unet.devices import precision

    config = TrainConfig()
    geo, aug = config.geometry, config.augmentation
    folder = tempfile.mkdtemp(prefix="bench-cache-")
    sources = {"stacked (before)": lambda: stacked_training_dataset(
                   data, geo, config.tile_size, config.batch_size, 0, aug),
               "in memory": lambda: training_dataset(data, geo, config.tile_size,
                                                     config.batch_size, 0, aug)}
    cached = cached_copy(data, folder)
    sources["disk cache"] = lambda: training_dataset(cached, geo, config.tile_size,
                                                     config.batch_size, 0, aug)
    with precision(config.mixed_precision):
        model = build_training_model(build_unet(
            (None, None, data.channels), config.n_classes, config.depth, config.filters,
            config.padding, config.dropout, config.batch_norm))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # Interleaved rounds, so that other load on the machine falls on all three alike; each
    # round opens fresh iterators (an idle one would keep filling its buffer in the background).
    datasets = {name: make() for name, make in sources.items()}
    for name in sources:
        model.fit(datasets[name], epochs=1, steps_per_epoch=3, verbose=0)  # tracing
    spent = {name: [0.0, 0.0, 0.0] for name in sources}
    names = list(sources)
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:  # each in each place of the order
            iterator = iter(datasets[name])
            for _ in range(3):
                next(iterator)
            t = time.perf_counter()
            for _ in range(batches // rounds):
                next(iterator)["image"].numpy()
            spent[name][0] += time.perf_counter() - t
            del iterator
            t, cpu = time.perf_counter(), time.process_time()
            model.fit(datasets[name], epochs=1, steps_per_epoch=steps // rounds, verbose=0)
            spent[name][1] += time.perf_counter() - t
            spent[name][2] += time.process_time() - cpu
    n = (steps // rounds) * rounds
    rates = {name: ((batches // rounds) * rounds / pipe, n / train, cpu / n)
             for name, (pipe, train, cpu) in spent.items()}
    base = rates["stacked (before)"]
    print(f"tiles from where, fit defaults ({config.tile_size} px tiles, batch "
          f"{config.batch_size}, every augmentation, depth {config.depth}, {config.filters} "
          f"filters):")
    for name, (pipe, train, cpu) in rates.items():
        print(f"  {name:17s} pipeline {pipe:6.2f} batches/s ({pipe / base[0]:.2f}x)   training "
              f"{train:5.3f} steps/s ({train / base[1]:.2f}x), {cpu:5.2f} CPU s per step "
              f"({cpu / base[2]:.2f}x)")
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parent / "shared/data/isbi2012")
    parser.add_argument("--tiles", type=int, default=200, help="tiles to time the pipeline on")
    parser.add_argument("--paths", action="store_true",
                        help="compare the stacked, in-memory and disk-cache pipelines instead")
    parser.add_argument("--batches", type=int, default=120, help="--paths: batches to time")
    parser.add_argument("--steps", type=int, default=36, help="--paths: training steps to time")
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
    if args.paths:
        compare_paths(data, args.batches, args.steps)
        return

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

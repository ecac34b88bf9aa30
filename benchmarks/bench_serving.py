"""Latency of the exported ``serving_default`` signature against ``predict_tiled`` in Keras.

    python benchmarks/bench_serving.py [--filters 16]

Exports the paper's network (depth 5) with the given base filters, loads the export the way TF
Serving does (TF1 session loader, tag ``serve``) and times ``serving_default`` on a 512x512 and a
2048x2048 image, against :func:`keras_unet.tiling.predict_tiled` on the same images with the same
572 px tiles and tile batch, side by side. The in-graph overlap tiling should cost at most 20 %
more (ratio <= 1.2).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _timing import median_time

from keras_unet._compat import tf
from keras_unet.preprocess import normalize
from keras_unet.export import export_saved_model
from keras_unet.model import build_unet
from keras_unet.tiling import predict_tiled

TILE = 572


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    model = build_unet(filters=args.filters)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_saved_model(model, tmp, "unet", tile_size=TILE, batch_size=args.batch_size)
        sess = tf.compat.v1.Session(graph=tf.Graph())
        with sess.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        sig = meta.signature_def["serving_default"]
        fetch = {k: t.name for k, t in sig.outputs.items()}
        feed_name = sig.inputs["images"].name
        print(f"depth 5, {args.filters} base filters, {TILE} px tiles, {args.batch_size} tiles per "
              f"pass; median of {args.repeat}")
        rng = np.random.default_rng(0)
        for size in (512, 2048):
            raw = rng.integers(0, 256, (size, size, 1)).astype(np.uint8)
            feed = {feed_name: raw[None].astype(np.float32)}
            served = median_time(lambda: sess.run(fetch, feed), args.repeat)
            keras_t = median_time(
                lambda: predict_tiled(model, normalize(raw), TILE, args.batch_size).argmax(-1),
                args.repeat)
            out = sess.run(fetch, feed)
            diff = np.abs(out["probabilities"][0] - predict_tiled(model, normalize(raw), TILE,
                                                                  args.batch_size)).max()
            print(f"{size}x{size}: serving_default {served:6.2f} s, predict_tiled {keras_t:6.2f} s, "
                  f"ratio {served / keras_t:.2f}, max |diff| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()

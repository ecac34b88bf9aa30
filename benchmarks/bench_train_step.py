"""One training step of the paper's network against the PyTorch reference, side by side.

    pip install torch==2.13.0   # the CPU build; for the comparison only
    python benchmarks/bench_train_step.py [--torch-ref ../shared/bench/torch_unet_ref.py]

Same network (depth 5, unpadded convolutions, crop-and-concatenate), 572 px tile, batch 1, SGD
with momentum 0.99, base 16 and 32 filters. Ours is the weight-map training model
(``build_training_model``: weighted softmax cross-entropy) stepped with ``train_on_batch``; the
reference runs as its own script (plain cross-entropy). Prints seconds per step, the ratio
ours / PyTorch (target <= 1.0) and the GFLOP/s reached (a training step counted as three
forward passes: forward, and the gradients with respect to activations and to weights).
Options: ``--jit`` (XLA) and ``--mixed-precision bfloat16`` add rows for those settings.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from _timing import median_time

from keras_unet._compat import keras
from keras_unet.losses import build_training_model
from keras_unet.model import build_unet
from keras_unet.devices import precision

TILE = 572


def forward_flops(model: keras.Model) -> float:
    """Multiply-adds x 2 of every convolution for one TILE x TILE input."""
    fixed = build_unet((TILE, TILE, 1), filters=model.get_layer("down0_conv1").filters)
    total = 0.0
    for layer in fixed.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            if isinstance(layer, keras.layers.Conv2DTranspose):  # each input pixel -> 2x2 outputs
                h, w = layer.input.shape[1], layer.input.shape[2]
            total += 2.0 * h * w * kh * kw * cin * cout
    return total


def ours(base: int, jit: bool, mixed: str | None, repeat: int) -> float:
    with precision(mixed):
        unet = build_unet(filters=base)
        model = build_training_model(unet)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.99), jit_compile=jit)
    out = TILE - 2 * 92
    rng = np.random.default_rng(0)
    batch = {"image": rng.random((1, TILE, TILE, 1)).astype(np.float32),
             "labels": rng.integers(0, 2, (1, out, out)).astype(np.int32),
             "weights": np.ones((1, out, out), np.float32)}
    model.train_on_batch(batch)  # trace; median_time warms up once more
    return median_time(lambda: model.train_on_batch(batch), repeat)


def torch_step(script: Path, base: int) -> float | None:
    out = subprocess.run([sys.executable, str(script), str(base), str(TILE), "train"],
                         capture_output=True, text=True, check=False)
    match = re.search(r"([\d.]+)s/tile", out.stdout)
    return float(match.group(1)) if match else None


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-ref", type=Path,
                        default=here.parent / "shared/bench/torch_unet_ref.py")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="also time with XLA")
    parser.add_argument("--mixed-precision", choices=["float16", "bfloat16"])
    args = parser.parse_args()

    variants = [("float32", False, None)]
    if args.jit:
        variants.append(("float32 + XLA", True, None))
    if args.mixed_precision:
        variants.append((f"mixed {args.mixed_precision}", False, args.mixed_precision))
    print(f"training step, depth 5, {TILE} px tile, batch 1, SGD momentum 0.99 (median of "
          f"{args.repeat})")
    for base in (16, 32):
        flops = 3 * forward_flops(build_unet(filters=base))
        reference = torch_step(args.torch_ref, base) if args.torch_ref.is_file() else None
        ref_text = (f"PyTorch {reference:.3f} s ({flops / reference / 1e9:.0f} GFLOP/s)"
                    if reference else "PyTorch reference not run (pip install torch==2.13.0)")
        print(f"base {base}: {flops / 1e9:.0f} GFLOP per step; {ref_text}")
        for label, jit, mixed in variants:
            step = ours(base, jit, mixed, args.repeat)
            ratio = f", ratio ours/PyTorch {step / reference:.2f}" if reference else ""
            print(f"  ours {label:16s} {step:.3f} s ({flops / step / 1e9:.0f} GFLOP/s){ratio}",
                  flush=True)


if __name__ == "__main__":
    main()

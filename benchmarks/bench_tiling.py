"""Overlap-tile prediction speed on a 2048x2048 image, side by side in one run.

    python benchmarks/bench_tiling.py [--torch-ref ../shared/bench/torch_unet_ref.py]

For the paper's network (depth 5) at base 16 and 32 filters, 572 px tiles (stride 384):

* ``predict_tiled`` against the sum of the raw forward passes of the same tiles (its overhead:
  padding, cutting and stitching; target <= 10 %);
* the same tiles through the PyTorch reference U-Net (eval mode, inference_mode), run as its own
  script with one tile per pass (ratio ours / PyTorch; target <= 1.0).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from keras_unet.model import Geometry, build_unet
from keras_unet.preprocess import mirror_pad
from keras_unet.tiling import plan_axis, predict_tiled


def best_of(fn, repeat: int = 2) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-ref", type=Path,
                        default=here.parent / "shared/bench/torch_unet_ref.py")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=572)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()

    geo = Geometry()
    image = np.random.default_rng(0).random((args.size, args.size, 1)).astype(np.float32)
    plan = plan_axis(args.size, args.tile, geo)
    n_tiles = plan.count**2
    print(f"{args.size}x{args.size} image, {args.tile} px tiles, stride {plan.stride}: "
          f"{n_tiles} tiles, batch {args.batch_size}")
    for base in (16, 32):
        model = build_unet(filters=base)
        padded = mirror_pad(image, (plan.pad_before, plan.pad_after) * 2)
        starts = [(i * plan.stride, j * plan.stride) for i in range(plan.count)
                  for j in range(plan.count)]
        batches = [np.stack([padded[y:y + args.tile, x:x + args.tile]
                             for y, x in starts[b:b + args.batch_size]])
                   for b in range(0, len(starts), args.batch_size)]
        model.predict_on_batch(batches[0])  # warm-up / trace

        def raw():
            for batch in batches:
                model.predict_on_batch(batch)

        raw_t = best_of(raw)
        tiled_t = best_of(lambda: predict_tiled(model, image, args.tile, args.batch_size))
        line = (f"base {base:2d}: predict_tiled {tiled_t:6.2f} s, raw forwards {raw_t:6.2f} s, "
                f"overhead {100 * (tiled_t / raw_t - 1):+5.1f} %")
        if args.torch_ref.is_file():
            out = subprocess.run([sys.executable, str(args.torch_ref), str(base), str(args.tile)],
                                 capture_output=True, text=True, check=False)
            match = re.search(r"([\d.]+)s/tile", out.stdout)
            if match:
                torch_t = float(match.group(1)) * n_tiles
                line += f", PyTorch {torch_t:6.2f} s, ratio ours/PyTorch {tiled_t / torch_t:.2f}"
            else:
                line += f", PyTorch reference failed: {(out.stderr or out.stdout).strip()[-200:]}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

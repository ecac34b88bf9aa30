"""Block-wise prediction of large images: memory flat in image size, time linear in pixels.

    python benchmarks/bench_large.py [--sizes 2000 8000 20000] [--work /tmp/bench_large]

For each size it writes a synthetic uint8 tiled TIFF (demo cells, tiled), then, each in a fresh
process so that peak resident memory (``ru_maxrss``) is that run's alone:

* ``predict_large`` from the TIFF to a tiled mask TIFF, with a small model (depth 3, 8 filters);
* ``predict_tiled`` on the whole image read into memory, where it fits (up to 8000 px a side).

It prints, side by side: peak RSS, megapixels per second, seconds per megapixel, and the ratios
(block-wise / whole-image throughput; time per megapixel and peak memory against the smallest
size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
mode, model_path, image_path, out = sys.argv[1:5]
import keras_unet, keras
from keras_unet.predict import load_model
unet = load_model(model_path)
start = time.perf_counter()
if mode == "blockwise":
    from keras_unet.large import predict_large
    report = predict_large(unet, image_path, out, batch_size=8)
    shape = report.shape
else:
    import tifffile
    from keras_unet.preprocess import normalizer_of
    from keras_unet.tiling import predict_tiled
    image = tifffile.imread(image_path)
    mask = predict_tiled(unet, normalizer_of(unet)(image), batch_size=8).argmax(-1)
    shape = image.shape
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
print(json.dumps({"seconds": seconds, "peak_mib": peak, "pixels": shape[0] * shape[1]}))
"""


def write_tiff(path: Path, size: int) -> None:
    """A size x size uint8 tiled TIFF of demo cells, written tile row by tile row."""
    import tifffile

    from keras_unet.data import demo_data

    patch = (demo_data(1, 512, seed=3)[0][0, ..., 0] * 255).astype(np.uint8)
    tile = 256

    def tiles():
        for y in range(0, size, tile):
            for x in range(0, size, tile):
                yield patch[(y // tile % 2) * tile:(y // tile % 2) * tile + tile,
                            (x // tile % 2) * tile:(x // tile % 2) * tile + tile]

    tifffile.imwrite(path, data=tiles(), shape=(size, size), dtype=np.uint8, tile=(tile, tile),
                     bigtiff=True, compression="zlib")


def run(mode: str, model: Path, image: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(image), str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} on {image.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 20000])
    parser.add_argument("--whole-max", type=int, default=8000,
                        help="largest size also predicted whole-image with predict_tiled")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_large"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from keras_unet.model import build_unet

    model = args.work / "small.keras"
    build_unet(depth=3, filters=8).save(model)
    rows = []
    for size in args.sizes:
        image = args.work / f"synthetic_{size}.tif"
        if not image.exists():
            t = time.perf_counter()
            write_tiff(image, size)
            print(f"wrote {image} ({size}x{size}) in {time.perf_counter() - t:.1f} s", flush=True)
        block = run("blockwise", model, image, args.work / f"out_{size}")
        whole = run("whole", model, image, args.work) if size <= args.whole_max else None
        rows.append((size, block, whole))
        print(f"{size}: block-wise {block['seconds']:.1f} s, {block['peak_mib']:.0f} MiB", flush=True)
    base = rows[0][1]
    print(f"\n{'size':>7s} {'MP':>6s} | {'block-wise':>10s} {'MP/s':>6s} {'s/MP':>6s} {'peak MiB':>9s} "
          f"| {'predict_tiled':>13s} {'MP/s':>6s} {'peak MiB':>9s} | {'thru ratio':>10s} "
          f"{'s/MP vs 1st':>11s} {'peak vs 1st':>11s}")
    for size, block, whole in rows:
        mp = block["pixels"] / 1e6
        b_rate = mp / block["seconds"]
        line = (f"{size:7d} {mp:6.0f} | {block['seconds']:9.1f}s {b_rate:6.2f} "
                f"{block['seconds'] / mp:6.3f} {block['peak_mib']:9.0f} | ")
        if whole:
            w_rate = mp / whole["seconds"]
            line += f"{whole['seconds']:12.1f}s {w_rate:6.2f} {whole['peak_mib']:9.0f} | {b_rate / w_rate:10.2f} "
        else:
            line += f"{'(too large)':>13s} {'':6s} {'':9s} | {'':10s} "
        base_spm = base["seconds"] / (base["pixels"] / 1e6)
        line += (f"{block['seconds'] / mp / base_spm:11.2f} "
                 f"{block['peak_mib'] / base['peak_mib']:11.2f}")
        print(line)


if __name__ == "__main__":
    main()

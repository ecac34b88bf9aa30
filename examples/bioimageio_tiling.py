"""Tiled prediction in bioimageio.core against ``keras-unet predict``: how many pixels agree.

Usage::

    python examples/bioimageio_tiling.py RUN/model.keras --images A.png B.png C.png D.png \\
        --out runs/bioimageio-tiling

The images are laid out in a grid (mirrored where they do not fill it) to make one ``--size``
square image (default 1024x1024). The script then

1. exports the model with ``keras-unet export MODEL --format bioimageio``;
2. runs ``keras-unet predict`` on the big image (its mask: the argmax class per pixel);
3. runs bioimageio.core's ``predict`` on the package with blocking (``--blocksize-parameter``
   n: blocks of ``min + n * step`` px, smaller than the image) and takes the argmax;

and prints the share of pixels whose class agrees, the largest probability difference, and the
block layout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CORE_SCRIPT = """
import json, os, sys, time
sys.modules["keras_unet"] = None  # bioimageio.core alone, as in Fiji/napari: no keras_unet
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
from bioimageio.core import Tensor, load_description, predict
from bioimageio.core.digest_spec import get_block_transform
package, image_npy, out_npy, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = load_description(package)
image = np.load(image_npy)
size = model.inputs[0].axes[1].size
start = time.perf_counter()
sample = predict(model=model, inputs={"raw": Tensor.from_numpy(image, dims=("batch", "y", "x",
                 "channel"))}, blocksize_parameter=n)
seconds = time.perf_counter() - start
np.save(out_npy, sample.members["probabilities"].data.to_numpy())
halo = model.outputs[0].axes[1].halo
print("@@" + json.dumps({"block": size.min + n * size.step, "halo": halo, "seconds": seconds}))
"""


def mosaic(paths: list[Path], size: int) -> np.ndarray:
    """One ``(size, size, C)`` image from the given images in a grid, mirrored to fill it."""
    from keras_unet.images import read_image
    from keras_unet.preprocess import mirror_pad

    images = [read_image(p) for p in paths]
    images = [i[..., None] if i.ndim == 2 else i for i in images]
    side = int(np.ceil(np.sqrt(len(images))))
    cell = min(min(i.shape[0], i.shape[1]) for i in images)
    rows = []
    for r in range(side):
        row = [images[(r * side + c) % len(images)][:cell, :cell] for c in range(side)]
        rows.append(np.concatenate(row, axis=1))
    big = np.concatenate(rows, axis=0)
    if big.shape[0] < size:
        big = mirror_pad(big, (0, size - big.shape[0], 0, size - big.shape[1]))
    return big[:size, :size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/bioimageio-tiling"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--blocksize-parameter", type=int, default=10)
    args = parser.parse_args()
    import cv2

    from keras_unet.images import read_mask

    args.out.mkdir(parents=True, exist_ok=True)
    image = mosaic(args.images, args.size)
    image_png = args.out / "big.png"
    cv2.imwrite(str(image_png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.shape[2] == 3
                else image[..., 0])
    subprocess.run(["keras-unet", "export", str(args.model), "--format", "bioimageio", "--name",
                    "tiling-check", "--output", str(args.out / "package")], check=True)
    subprocess.run(["keras-unet", "predict", str(args.model), str(image_png), "--output",
                    str(args.out / "predict"), "--save-probabilities"], check=True)
    ours = np.load(args.out / "predict" / "big_probabilities.npy")
    mask = read_mask(args.out / "predict" / "big_mask.png")
    np.save(args.out / "big.npy", image[None].astype(np.float32))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", CORE_SCRIPT,
                           str(args.out / "package" / "tiling-check.zip"), str(args.out / "big.npy"),
                           str(args.out / "core.npy"), str(args.blocksize_parameter)],
                          capture_output=True, text=True, env=env, cwd=args.out)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    info = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    core = np.load(args.out / "core.npy")[0]
    same_class = float((core.argmax(-1) == ours.argmax(-1)).mean())
    same_mask = float(((core.argmax(-1) > 0) == (mask > 0)).mean())
    blocks = -(-args.size // (info["block"] - 2 * info["halo"]))
    print(f"{args.size}x{args.size} image, bioimageio.core blocks of {info['block']} px (halo "
          f"{info['halo']} px, {blocks}x{blocks} blocks, {info['seconds']:.1f} s)")
    print(f"same mask as `keras-unet predict` on {100 * same_mask:.3f} % of the pixels "
          f"(argmax class: {100 * same_class:.3f} %); largest probability difference "
          f"{np.abs(core - ours).max():.2e}, mean {np.abs(core - ours).mean():.2e}")


if __name__ == "__main__":
    main()

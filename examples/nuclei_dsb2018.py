"""Nuclei of the Data Science Bowl 2018: train with the CLI defaults, predict instances, score them.

Usage (about 25 minutes on a 2-core laptop CPU: two trainings of at most 12 minutes)::

    python examples/nuclei_dsb2018.py --data ../shared/data/dsb2018 --out runs/dsb2018

The data folder holds ``images/<id>.png`` (RGB) and ``instance_labels/<id>.png`` (16-bit, one id
per nucleus). The script splits the 61 images into 50 for training and 11 held out for testing
(a fixed, seeded draw: ``split``), links them into folder pairs under ``--out``, and runs what a
user would type::

    keras-unet fit --images OUT/data/train/images --masks OUT/data/train/masks \\
        --val-fraction 0.1 --output OUT/weight-map
    keras-unet evaluate OUT/weight-map/model.keras \\
        --images OUT/data/test/images --masks OUT/data/test/masks --json

then the same with ``--no-weight-map``. It prints AP at IoU 0.5, mAP (IoU 0.5 ... 0.95), F1 and
the merge count for both, beside the *ceiling* of the task without separation: the true
foreground cut into connected components, scored the same way, and that foreground cut at necks
as well (what separation by shape alone could reach). ``--fit-args`` passes more options to both
trainings (experiments).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from keras_unet.images import read_mask
from keras_unet.instances import split_at_necks
from keras_unet.metrics import instance_counts, instance_scores
from keras_unet.weights import instances_from_mask


def split(names: list[str], n_test: int = 11, seed: int = 2018) -> tuple[list[str], list[str]]:
    """A fixed random split of the sorted names: (train, test)."""
    order = np.random.default_rng(seed).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    return sorted(set(names) - set(test)), test


def link(data: Path, out: Path, names: list[str]) -> tuple[Path, Path]:
    """Symbolic links to the chosen images and labels in ``out/images`` and ``out/masks``."""
    for kind, source in (("images", "images"), ("masks", "instance_labels")):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = out / kind / f"{name}.png"
            if not target.exists():
                target.symlink_to((data / source / f"{name}.png").resolve())
    return out / "images", out / "masks"


def ceiling(masks: Path, split_depth: float = 0.0) -> dict:
    """Scores of the perfect foreground mask cut into 4-connected components (and, with
    ``split_depth``, at necks, as :func:`keras_unet.instances.split_at_necks` cuts them)."""
    counts = []
    for path in sorted(masks.glob("*.png")):
        truth = read_mask(path)
        found = split_at_necks(instances_from_mask(truth > 0), split_depth)
        counts.append(instance_counts(found, truth))
    return instance_scores(counts)


def figure(run_dir: Path, images: Path, masks: Path, out: Path, n: int = 3, size: int = 256) -> Path:
    """Rows of image | true nuclei | predicted nuclei, each in its own colour: the most crowded
    ``size`` px window of each of the ``n`` test images with the most nuclei."""
    import tifffile

    from keras_unet.images import read_image
    from keras_unet.visualize import instance_overlay, write_png

    def crowd(truth, y, x):
        return len(np.unique(truth[y:y + size, x:x + size])) - 1

    paths = sorted(masks.glob("*.png"), key=lambda p: -len(np.unique(read_mask(p))))[:n]
    rows = []
    for path in paths:
        truth = read_mask(path)
        found = tifffile.imread(run_dir / "test-predictions" / f"{path.stem}_instances.tif")
        image = read_image(images / path.name).astype(np.float32)
        image = image if image.ndim == 3 else image[..., None]
        grey = (255 * (image - image.min()) / max(np.ptp(image), 1e-6)).astype(np.uint8)
        grey = np.repeat(grey[..., :1], 3, -1) if grey.shape[2] != 3 else grey
        h, w = truth.shape
        y, x = max(((y, x) for y in range(0, max(h - size, 0) + 1, 32)
                    for x in range(0, max(w - size, 0) + 1, 32)), key=lambda yx: crowd(truth, *yx))
        window = (slice(y, y + size), slice(x, x + size))
        gap = np.full((grey[window].shape[0], 6, 3), 255, np.uint8)
        rows.append(np.concatenate([grey[window], gap, instance_overlay(grey[window], truth[window]),
                                    gap, instance_overlay(grey[window], found[window])], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return write_png(out, np.concatenate(rows, 0)[:-6])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dsb2018"))
    parser.add_argument("--out", type=Path, default=Path("runs/dsb2018"))
    parser.add_argument("--fit-args", default="", help="more keras-unet fit options, quoted")
    parser.add_argument("--only", choices=("weight-map", "no-weight-map"),
                        help="train one of the two only")
    args = parser.parse_args()
    names = sorted(p.stem for p in (args.data / "images").glob("*.png"))
    if len(names) < 20:
        sys.exit(f"Error: {args.data}/images holds {len(names)} images; point --data at dsb2018")
    train_names, test_names = split(names)
    train_images, train_masks = link(args.data, args.out / "data" / "train", train_names)
    test_images, test_masks = link(args.data, args.out / "data" / "test", test_names)
    command = Path(sys.executable).with_name("keras-unet")
    cli = [str(command)] if command.exists() else [shutil.which("keras-unet") or "keras-unet"]

    results = {"ceiling (true foreground, connected components)": ceiling(test_masks),
               "true foreground cut at necks (1.5 px)": ceiling(test_masks, 1.5)}
    runs = [("weight-map", []), ("no-weight-map", ["--no-weight-map"])]
    for name, extra in runs:
        if args.only and name != args.only:
            continue
        run_dir = args.out / name
        start = time.time()
        subprocess.run(cli + ["fit", "--images", str(train_images), "--masks", str(train_masks),
                              "--val-fraction", "0.1", "--output", str(run_dir), "--overwrite",
                              *extra, *shlex.split(args.fit_args)], check=True)
        minutes = (time.time() - start) / 60
        scored = subprocess.run(cli + ["evaluate", str(run_dir / "model.keras"), "--images",
                                       str(test_images), "--masks", str(test_masks), "--json"],
                                check=True, capture_output=True, text=True)
        result = json.loads(scored.stdout)
        results[name] = {**result["instances"], "fit_minutes": round(minutes, 1),
                         "pixel_iou": result["mean"]["iou"]}
        subprocess.run(cli + ["predict", str(run_dir / "model.keras"), str(test_images),
                              "--output", str(run_dir / "test-predictions"), "--instances"],
                       check=True, capture_output=True)
    (args.out / "scores.json").write_text(json.dumps(results, indent=2) + "\n")
    shown = args.out / (args.only or "weight-map")
    picture = figure(shown, test_images, test_masks, args.out / "nuclei.png")
    print(f"Held-out nuclei, image | truth | {shown.name}: {picture}")
    print(f"\nTest split: {len(test_names)} images held out of {len(names)}")
    print(f"{'':50s} {'AP50':>6s} {'mAP':>6s} {'F1':>6s} {'merges':>7s} {'found':>6s} "
          f"{'truth':>6s} {'fit min':>7s}")
    for name, s in results.items():
        print(f"{name:50s} {s['ap50']:6.3f} {s['map']:6.3f} {s['f1']:6.3f} {s['merges']:7d} "
              f"{s['n_pred']:6d} {s['n_true']:6d} {s.get('fit_minutes', ''):>7}")


if __name__ == "__main__":
    main()

"""Nuclei in H&E-stained tissue (MoNuSeg 2018): train with the CLI defaults, score AP, mAP, AJI.

Usage (about 20 minutes of ``fit`` on a 2-core laptop CPU when nothing else runs)::

    python examples/monuseg.py --data ../shared/data/monuseg2018_train --out runs/monuseg

The data folder holds ``images/<TCGA-ID>.png`` (RGB, 1000x1000) and ``instance_labels/<TCGA-ID>.png``
(16-bit, one id per nucleus). The script splits the 30 images by file name, a fixed split: of the
names in sorted order, every third (the 3rd, 6th, ...) is held out for testing, 10 images, and
the other 20 train. It links them into folder pairs under ``--out`` and runs what a user would
type::

    keras-unet fit --images OUT/data/train/images --masks OUT/data/train/masks --output OUT/NAME
    keras-unet evaluate OUT/NAME/model.keras \\
        --images OUT/data/test/images --masks OUT/data/test/masks --json
    keras-unet predict OUT/NAME/model.keras OUT/data/test/images --instances \\
        --output OUT/NAME/test-predictions

``fit`` holds out 2 of the 20 training images for validation and calibrates the object
settings on them (its defaults). The script prints AP at IoU 0.5, mAP (IoU 0.5 ... 0.95), the
aggregated Jaccard index (AJI, the challenge's metric, averaged over the images), the objects
found and the fit time, beside the *ceiling* of the task without separation (the true foreground
cut into connected components), and draws ``OUT/monuseg.png``: image | truth | prediction for
the most crowded window of three test images. ``--fit-args`` passes more ``fit`` options
(experiments), ``--name`` names the run.

The MoNuSeg data are licensed CC BY-NC-SA 4.0: use them to measure and develop only; ship no
weights trained on them and copy no image (or picture of one) into this repository.
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

from nuclei_dsb2018 import ceiling, figure, link  # the DSB 2018 recipe's helpers, same layout


def split(names: list[str]) -> tuple[list[str], list[str]]:
    """The fixed split by file name: every third name in sorted order is a test image."""
    names = sorted(names)
    test = [n for i, n in enumerate(names) if i % 3 == 2]
    return [n for n in names if n not in test], test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/monuseg2018_train"))
    parser.add_argument("--out", type=Path, default=Path("runs/monuseg"))
    parser.add_argument("--name", default="defaults", help="the run's folder under --out")
    parser.add_argument("--fit-args", default="", help="more keras-unet fit options, quoted")
    parser.add_argument("--skip-fit", action="store_true",
                        help="score the model already in OUT/NAME instead of training")
    args = parser.parse_args()
    names = sorted(p.stem for p in (args.data / "images").glob("*.png"))
    if len(names) < 15:
        sys.exit(f"Error: {args.data}/images holds {len(names)} images; point --data at "
                 "monuseg2018_train")
    train_names, test_names = split(names)
    train_images, train_masks = link(args.data, args.out / "data" / "train", train_names)
    test_images, test_masks = link(args.data, args.out / "data" / "test", test_names)
    command = Path(sys.executable).with_name("keras-unet")
    cli = [str(command)] if command.exists() else [shutil.which("keras-unet") or "keras-unet"]

    run_dir = args.out / args.name
    minutes = None
    if not args.skip_fit:
        start = time.time()
        subprocess.run(cli + ["fit", "--images", str(train_images), "--masks", str(train_masks),
                              "--output", str(run_dir), "--overwrite",
                              *shlex.split(args.fit_args)], check=True)
        minutes = round((time.time() - start) / 60, 1)
    scored = subprocess.run(cli + ["evaluate", str(run_dir / "model.keras"), "--images",
                                   str(test_images), "--masks", str(test_masks), "--json"],
                            check=True, capture_output=True, text=True)
    result = json.loads(scored.stdout)
    subprocess.run(cli + ["predict", str(run_dir / "model.keras"), str(test_images),
                          "--output", str(run_dir / "test-predictions"), "--instances",
                          "--no-overlay"], check=True, capture_output=True)
    from keras_unet.preprocess import instance_settings_of
    from keras_unet.predict import load_model

    settings = instance_settings_of(load_model(run_dir / "model.keras"))
    results = {
        "ceiling (true foreground, connected components)": ceiling(test_masks),
        args.name: {**result["instances"], "fit_minutes": minutes,
                    "pixel_iou": result["mean"]["iou"], "object_settings": settings},
    }
    (run_dir / "scores.json").write_text(json.dumps(results, indent=2) + "\n")
    picture = figure(run_dir, test_images, test_masks, args.out / f"monuseg-{args.name}.png")
    print(f"Held-out H&E nuclei, image | truth | {args.name}: {picture}")
    print(f"\nTest split: {len(test_names)} images held out of {len(names)}; object settings "
          f"{settings}")
    print(f"{'':50s} {'AP50':>6s} {'mAP':>6s} {'AJI':>6s} {'merges':>7s} {'found':>6s} "
          f"{'truth':>6s} {'fit min':>7s}")
    for name, s in results.items():
        print(f"{name:50s} {s['ap50']:6.3f} {s['map']:6.3f} {s['aji']:6.3f} {s['merges']:7d} "
              f"{s['n_pred']:6d} {s['n_true']:6d} {s.get('fit_minutes') or '':>7}")


if __name__ == "__main__":
    main()

"""Is fine-tuning worth it? ``fit --init MODEL`` against ``fit`` from random weights, at the same
step counts, on a kind of image MODEL was not trained on; both curves in one picture.

Usage (the measurement of the nuclei model's card; MoNuSeg is non-commercial: measuring only,
no weights trained on it are kept or shipped)::

    python examples/finetune_curve.py --data ../shared/data/monuseg2018_train \\
        --out runs/finetune-curve --model nuclei --n-train 5,10 --steps 250,500,1000,2000

The data folder holds ``images/<name>.png`` and ``instance_labels/<name>.png``. A fixed, seeded
draw of the sorted names (``numpy.random.default_rng(--seed)``) gives ``--n-test`` test images
and a training pool; each ``--n-train`` takes the pool's first n. Colour images become the
model's one channel as the **haematoxylin** channel of a colour deconvolution
(``skimage.color.rgb2hed``, Ruifrok and Johnston 2001), scaled to 8 bits: nuclei bright on dark,
as in fluorescence. Both arms train on the same images with the same settings and seed; each
run holds out 20% of its images for validation and calibration (``--val-fraction 0.2``):

    keras-unet fit --init MODEL --images ... --epochs E --steps-per-epoch S/E   # fine-tuned
    keras-unet fit              --images ... --epochs E --steps-per-epoch S/E   # from scratch

(the fine-tuned arm also gets MODEL's architecture and ``--lr`` default; the scratch arm the
``fit`` defaults, unless ``--fit-args`` or ``--scratch-args`` say otherwise). Every model is scored with
``keras-unet evaluate`` on the test images, and MODEL itself at step 0 (zero-shot). Writes
``OUT/curve.json`` (every figure, with the commands) and ``OUT/curve.png`` (AP50 against steps,
one line per arm and training-set size), and prints the table. Runs already finished are
reused, so an interrupted measurement continues where it stopped.
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


def split(names: list[str], n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """A fixed draw of the sorted names: (training pool in drawn order, sorted test names)."""
    order = np.random.default_rng(seed).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    return [names[i] for i in order[n_test:]], test


def to_grey(image: np.ndarray) -> np.ndarray:
    """One 8-bit channel: the haematoxylin stain of a colour image, a grey image as it is."""
    from skimage.color import rgb2hed

    if image.ndim == 2 or image.shape[2] == 1 or (image[..., :1] == image[..., :3]).all():
        return image if image.ndim == 2 else image[..., 0]
    h = rgb2hed(image[..., :3])[..., 0]
    low, high = np.percentile(h, (0.5, 99.5))
    return (255 * np.clip((h - low) / max(high - low, 1e-6), 0, 1)).astype(np.uint8)


def put(data: Path, names: list[str], out: Path) -> tuple[Path, Path]:
    """The chosen images (as one channel) and their labels in ``out/images``, ``out/masks``."""
    import cv2

    from keras_unet.images import read_image

    for kind in ("images", "masks"):
        (out / kind).mkdir(parents=True, exist_ok=True)
    for name in names:
        image = out / "images" / f"{name}.png"
        if not image.exists():
            cv2.imwrite(str(image), to_grey(read_image(data / "images" / f"{name}.png")))
        mask = out / "masks" / f"{name}.png"
        if not mask.exists():
            mask.symlink_to((data / "instance_labels" / f"{name}.png").resolve())
    return out / "images", out / "masks"


def cli() -> list[str]:
    command = Path(sys.executable).with_name("keras-unet")
    return [str(command)] if command.exists() else [shutil.which("keras-unet") or "keras-unet"]


def evaluate(model: str, images: Path, masks: Path) -> dict:
    done = subprocess.run(cli() + ["evaluate", model, "--images", str(images), "--masks",
                                   str(masks), "--json"], check=True, capture_output=True,
                          text=True)
    scores = json.loads(done.stdout)["instances"]
    return {k: scores[k] for k in ("ap50", "ap75", "map", "f1", "merges", "splits")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/monuseg2018_train"))
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-curve"))
    parser.add_argument("--model", default="nuclei", help="the model to fine-tune (--init)")
    parser.add_argument("--n-train", default="10", help="training-set sizes, comma-separated")
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--steps", default="250,500,1000,2000", help="step counts, comma-separated")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (steps/epochs each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-args", default="", help="more keras-unet fit options for both arms")
    parser.add_argument("--scratch-args", default="", help="more options for the scratch arm")
    args = parser.parse_args()
    sizes = [int(n) for n in args.n_train.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    names = sorted(p.stem for p in (args.data / "images").glob("*.png"))
    if len(names) < args.n_test + max(sizes):
        sys.exit(f"Error: {args.data}/images holds {len(names)} images; need {args.n_test} test "
                 f"+ {max(sizes)} training images")
    pool, test = split(names, args.n_test, args.seed)
    test_images, test_masks = put(args.data, test, args.out / "data" / "test")
    results: dict = {"model": args.model, "test_images": test, "runs": []}
    started = time.time()
    zero = evaluate(args.model, test_images, test_masks)
    results["zero_shot"] = zero
    print(f"{args.model} zero-shot: AP50 {zero['ap50']:.3f}, mAP {zero['map']:.3f}")
    for n in sizes:
        train = pool[:n]
        images, masks = put(args.data, train, args.out / "data" / f"train-{n}")
        for total in steps:
            per_epoch = max(1, total // args.epochs)
            for arm, extra in (("fine-tuned", ["--init", args.model]),
                               ("scratch", shlex.split(args.scratch_args))):
                run = args.out / f"{arm}-n{n}-s{total}"
                command = cli() + ["fit", "--images", str(images), "--masks", str(masks),
                                   "--val-fraction", "0.2", "--seed", str(args.seed),
                                   "--epochs", str(args.epochs), "--steps-per-epoch",
                                   str(per_epoch), "--output", str(run), "--overwrite",
                                   *extra, *shlex.split(args.fit_args)]
                if not (run / "model.keras").exists():
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                scores = evaluate(str(run / "model.keras"), test_images, test_masks)
                results["runs"].append({"arm": arm, "n_train": n, "steps": per_epoch * args.epochs,
                                        "train_images": train, "command": shlex.join(command),
                                        **scores})
                print(f"{arm:10s} n={n:3d} steps={per_epoch * args.epochs:6d}: AP50 "
                      f"{scores['ap50']:.3f}, mAP {scores['map']:.3f}", flush=True)
    results["minutes"] = round((time.time() - started) / 60, 1)
    (args.out / "curve.json").write_text(json.dumps(results, indent=2) + "\n")
    picture = plot(results, args.out / "curve.png")
    print(f"Both curves: {picture}; figures: {args.out / 'curve.json'}")


def plot(results: dict, path: Path) -> Path:
    """AP50 against steps: one line per arm and training-set size; the fine-tuned lines start
    at the model's zero-shot AP50 (step 0)."""
    from keras_unet.visualize import plot_curves, write_png

    xs = sorted({0} | {r["steps"] for r in results["runs"]})
    series = {}
    for r in results["runs"]:
        key = f"{r['arm']} n={r['n_train']}"
        values = series.setdefault(key, [float("nan")] * len(xs))
        values[xs.index(r["steps"])] = r["ap50"]
        if r["arm"] == "fine-tuned":
            values[0] = results["zero_shot"]["ap50"]
    return write_png(path, plot_curves(series, xs, f"AP50 on {len(results['test_images'])} "
                                       "test images", "steps"))


if __name__ == "__main__":
    main()

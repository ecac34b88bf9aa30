"""DSB 2018 split by kind of image: train with the CLI defaults (and variants), score per kind.

Usage (each arm is one ``keras-unet fit`` of the CLI defaults plus its options, about 25 minutes
on a 2-core CPU; an arm already trained is only scored again, one that stopped is resumed)::

    python examples/dsb2018_by_kind.py --data ../shared/data/dsb2018 --out runs/kinds \\
        --arm defaults= --arm balance="--balance kind"

The 61 images are sorted into four kinds by a rule on their pixels (not checked by eye):
colour images are ``stained``; grey ones with a median above 100 are ``brightfield``; grey ones
whose 99.5th percentile is below 60 are ``dim-fluorescence``; the rest ``fluorescence`` (7, 4,
14 and 36 images). A seeded draw per kind (``numpy.random.default_rng(25)``) takes
``TEST_PER_KIND`` test images (15); the other 46 are trained on. The script links them into
``OUT/data/{train,test}/{images,masks}``, writes ``OUT/test-groups.csv`` and runs, per arm::

    keras-unet fit --images OUT/data/train/images --masks OUT/data/train/masks \\
        --output OUT/ARM [ARM's options]
    keras-unet evaluate OUT/ARM/model.keras --images OUT/data/test/images \\
        --masks OUT/data/test/masks --groups OUT/test-groups.csv --json > OUT/ARM-eval.json

then prints AP50 / mAP / AJI per kind, one column per arm.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

KINDS = ("fluorescence", "dim-fluorescence", "stained", "brightfield")
TEST_PER_KIND = {"stained": 3, "brightfield": 2, "dim-fluorescence": 4, "fluorescence": 6}
SEED = 25


def kind_of(image: np.ndarray) -> str:
    """The kind of a DSB 2018 image (RGB or RGBA, 8-bit) by the rule of the module docs."""
    rgb = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    if not (rgb == rgb[..., :1]).all():
        return "stained"
    grey = rgb[..., 0]
    if np.median(grey) > 100:
        return "brightfield"
    if np.percentile(grey, 99.5) < 60:
        return "dim-fluorescence"
    return "fluorescence"


def split(data: Path, out: Path) -> dict[str, str]:
    """Link the images into OUT/data/{train,test}; returns {test file name: kind}."""
    from keras_unet.images import read_image

    names = sorted(p.name for p in (data / "images").glob("*.png"))
    kinds = {n: kind_of(read_image(data / "images" / n)) for n in names}
    rng = np.random.default_rng(SEED)
    test = {}
    for kind, n in TEST_PER_KIND.items():
        of_kind = sorted(f for f, k in kinds.items() if k == kind)
        test.update({of_kind[i]: kind for i in rng.permutation(len(of_kind))[:n]})
    for name in names:
        part = "test" if name in test else "train"
        for sub, source in (("images", "images"), ("masks", "instance_labels")):
            link = out / "data" / part / sub / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to((data / source / name).resolve())
    rows = ["file,group"] + [f"{n},{k}" for n, k in sorted(test.items())]
    (out / "test-groups.csv").write_text("\n".join(rows) + "\n")
    counts = {k: sum(v == k for v in kinds.values()) for k in KINDS}
    print(f"Kinds: {counts}; {len(test)} test images, {len(names) - len(test)} training images.")
    return test


def cli() -> list[str]:
    command = Path(sys.executable).with_name("keras-unet")
    return [str(command)] if command.exists() else [shutil.which("keras-unet") or "keras-unet"]


def run_arm(out: Path, name: str, options: str) -> dict:
    """Train (or resume, or reuse) one arm and score it per kind."""
    run = out / name
    if not (run / "model.keras").exists():
        if (run / "checkpoints" / "last.keras").exists():
            command = cli() + ["fit", "--resume", str(run)]
        else:
            command = cli() + ["fit", "--images", str(out / "data/train/images"), "--masks",
                               str(out / "data/train/masks"), "--output", str(run),
                               "--overwrite"] + shlex.split(options)
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    command = cli() + ["evaluate", str(run / "model.keras"), "--images",
                       str(out / "data/test/images"), "--masks", str(out / "data/test/masks"),
                       "--groups", str(out / "test-groups.csv"), "--json"]
    print("$", shlex.join(command), flush=True)
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    (out / f"{name}-eval.json").write_text(done.stdout)
    return json.loads(done.stdout)


def table(results: dict[str, dict]) -> str:
    """AP50 / mAP / AJI per kind, one column per arm (Markdown)."""
    lines = ["| kind | images | " + " | ".join(f"{a}: AP50 / mAP / AJI" for a in results) + " |",
             "|---|---|" + "---|" * len(results)]
    first = next(iter(results.values()))
    for kind in KINDS:
        cells = [f"{r['groups'][kind]['ap50']:.3f} / {r['groups'][kind]['map']:.3f} / "
                 f"{r['groups'][kind]['aji']:.3f}" for r in results.values()]
        lines.append(f"| {kind} | {first['groups'][kind]['images']} | " + " | ".join(cells) + " |")
    cells = [f"{r['instances']['ap50']:.3f} / {r['instances']['map']:.3f} / "
             f"{r['instances']['aji']:.3f}" for r in results.values()]
    lines.append(f"| all | {len(first['images'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dsb2018"))
    parser.add_argument("--out", type=Path, default=Path("runs/kinds"))
    parser.add_argument("--arm", action="append", metavar="NAME=OPTIONS",
                        help="an arm: its folder name and the fit options it adds to the CLI "
                        "defaults (empty for none); repeat for more [default: defaults=]")
    args = parser.parse_args()
    if not (args.data / "images").is_dir() or not (args.data / "instance_labels").is_dir():
        sys.exit(f"Error: {args.data} has no images/ and instance_labels/ folders; point --data "
                 "at the DSB 2018 data")
    arms = {}
    for spec in args.arm or ["defaults="]:
        name, sep, options = spec.partition("=")
        if not sep or not name or "/" in name:
            sys.exit(f"Error: --arm {spec!r}: give NAME=OPTIONS, e.g. balance=\"--balance kind\"")
        arms[name] = options
    split(args.data, args.out)
    results = {name: run_arm(args.out, name, options) for name, options in arms.items()}
    print(table(results))


if __name__ == "__main__":
    main()

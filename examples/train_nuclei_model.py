"""Train the packaged nuclei model (``keras-unet predict nuclei IMAGE``) from CC0 data only.

Usage (the full run; continue it in a later session by running the same command again, which
resumes the run with ``keras-unet fit --resume``)::

    python examples/train_nuclei_model.py --dsb ../shared/data/dsb2018 \\
        --bbbc ../shared/data/bbbc039 --out runs/nuclei-model --package

Data (both CC0 1.0, so the weights may be redistributed):

* DSB 2018 stage 1 training set (BBBC038, community-fixed; 61 images): only its **fluorescence**
  images, grey stored as RGB on a dark background (50 images). The 7 H&E-coloured and 4
  brightfield images (grey, bright background) are left out (``DSB_EXCLUDED``): the model is for
  fluorescent nuclei. DSB images are 8-bit; they are written as 16-bit grey TIFFs (value x 257,
  lossless) so that both collections share one bit depth (``keras-unet fit`` refuses mixed bit
  depths); per-image standardisation, the default normalisation, makes the network input the
  same as from the 8-bit file.
* BBBC039 (U2OS nuclei, Hoechst; 157 images, 16-bit with values in the 12-bit range), used as
  they are.

Fixed held-out images, by file name (``DSB_TEST``: 10 of the 50 fluorescence images,
``BBBC_TEST``: 30 of the 157; a seeded draw, ``numpy.random.default_rng(26)``, written out
here) are never trained or calibrated on; ``DSB_VAL`` and ``BBBC_VAL`` (4 + 8 images) are the
validation images on which the object settings are calibrated after training. Everything else
is trained on.

The script runs, in order (each step is skipped when its result is there):

1. links or converts the images into ``OUT/data/{train,val,test-dsb,test-bbbc}/{images,masks}``;
2. ``keras-unet fit`` with the settings of ``FIT`` (seed, steps) into ``OUT/run``;
3. ``keras-unet evaluate`` zero-shot on each held-out set, into ``OUT/heldout.json``;
4. with ``--package``: copies the model into ``keras_unet/models/nuclei/`` (float16 weights,
   ``info.json`` with the figures; the float16 error is measured on the held-out images).

``--pilot`` trains a small subset for a few hundred steps into ``OUT/run`` (a check that the
whole way works end to end; its figures are a pilot's, not the model's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DSB_TEST = [
    "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd",
    "243443ae303cc09cfbea85bfd22b0c4f026342f3dfc3aa1076f27867910d025b",
    "2cfa857e63be1b418c91ad5ea1f8d136fd1b80fc856e1d4277274c3dea28011c",
    "3bfd6bb152310f93daa6f4e1867c10572946e874b3a30c9ba8e0fcdeb590300b",
    "6af82abb29539000be4696884fc822d3cafcb2105906dc7582c92dccad8948c5",
    "bc115ff727e997a88f7cfe4ce817745731a6c753cb9fab6a36e7e66b415a1d3d",
    "d35f25c8e3f7fca5232fc4d5e3faf14b025b20b3731af77fe971a5e2e9d69d28",
    "d827a7d80fc67487a3237135e0d43ae01b7bbcb135e1a167601fc974a8348c51",
    "f6cb37ebf29c225284c8415962f7287abe7007fae8fe3d8a3899b608b832d7d5",
    "feffce59a1a3eb0a6a05992bb7423c39c7d52865846da36d89e2a72c379e5398",
]
DSB_VAL = [
    "b3b1626f8ad156acb2963d1faa6a368f9378a266c3b90d9321087fdc5b3032b4",
    "b7a86f4968071e0f963fa87ef314fdd1b6c73a66355431cc53a37e193ba6be9b",
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339",
    "dbbfe08a52688d0ac8de9161cbb17cb201e3991aacab8ab8a77fe0e203a69481",
]
# H&E-coloured (3934a094e8, 87ea72894f, 947c0d94c8, a5fe0b7412, a90401357d, c0152b1a26,
# ea94ba4b01) and brightfield (2a1a294e21, 4217e25def, 4e07a65335, c395870ad9): not fluorescence
DSB_EXCLUDED = [
    "2a1a294e21d76efd0399e4eb321b45f44f7510911acd92c988480195c5b4c812",
    "3934a094e8537841e973342c7f8880606f7a2712b14930340d6f6c2afe178c25",
    "4217e25defac94ff465157d53f5a24b8a14045b763d8606ec4a97d71d99ee381",
    "4e07a653352b30bb95b60ebc6c57afbc7215716224af731c51ff8d430788cd40",
    "87ea72894f6534b28e740cc34cf5c9eb75d0d8902687fce5fcc08a92e9f41386",
    "947c0d94c8213ac7aaa41c4efc95d854246550298259cf1bb489654d0e969050",
    "a5fe0b7412dd152c41f7afc34ffdf276d4261b6942fa6d36803648e90f2cfc06",
    "a90401357d50e1376354ae6e5f56a2e4dff3fdb5a4e8d50316673b2b8f1f293b",
    "c0152b1a260e71f9823d17f4fbb4bf7020d5dce62b4a12b3099c1c8e52a1c43a",
    "c395870ad9f5a3ae651b50efab9b20c3e6b9aea15d4c731eb34c0cf9e3800a72",
    "ea94ba4b01d1bd5f7768d10e0ac547743791033df545c71fcec442d0cb5cb5e7",
]
BBBC_TEST = [
    "IXMtest_A06_s6", "IXMtest_A16_s3", "IXMtest_A22_s8", "IXMtest_A24_s9", "IXMtest_B05_s5",
    "IXMtest_C21_s9", "IXMtest_F01_s2", "IXMtest_F03_s5", "IXMtest_F04_s5", "IXMtest_F12_s5",
    "IXMtest_F13_s7", "IXMtest_G12_s6", "IXMtest_H01_s9", "IXMtest_H16_s4", "IXMtest_H24_s6",
    "IXMtest_I03_s4", "IXMtest_I17_s6", "IXMtest_J03_s4", "IXMtest_K01_s3", "IXMtest_K01_s5",
    "IXMtest_K02_s3", "IXMtest_K05_s9", "IXMtest_K12_s1", "IXMtest_L11_s4", "IXMtest_L17_s1",
    "IXMtest_N12_s7", "IXMtest_N15_s8", "IXMtest_N23_s2", "IXMtest_O24_s5", "IXMtest_P23_s9",
]
BBBC_VAL = [
    "IXMtest_A02_s1", "IXMtest_B04_s4", "IXMtest_B24_s9", "IXMtest_C09_s7", "IXMtest_D01_s1",
    "IXMtest_D20_s3", "IXMtest_J08_s2", "IXMtest_N18_s5",
]

SEED = 0
#: keras-unet fit settings of the packaged model (the CLI defaults, with more steps for more data)
FIT = {"seed": SEED, "epochs": 60, "steps-per-epoch": 100}
#: --pilot: a subset and few steps, to check the way end to end
PILOT = {"seed": SEED, "epochs": 6, "steps-per-epoch": 100}
PILOT_IMAGES = 6  # of each collection's training images
VERSION = "1.0"


def fluorescence(dsb: Path) -> list[str]:
    """The DSB image names that are not excluded."""
    names = sorted(p.stem for p in (dsb / "images").glob("*.png"))
    return [n for n in names if n not in DSB_EXCLUDED]


def put_dsb(dsb: Path, names: list[str], out: Path) -> None:
    """DSB fluorescence images as 16-bit grey TIFFs (x 257), their labels linked."""
    import tifffile

    from keras_unet.images import read_image

    for kind in ("images", "masks"):
        (out / kind).mkdir(parents=True, exist_ok=True)
    for name in names:
        image = out / "images" / f"{name}.tif"
        if not image.exists():
            rgb = read_image(dsb / "images" / f"{name}.png")
            if not (rgb[..., :1] == rgb).all():
                raise ValueError(f"{name}: not grey; it cannot be a fluorescence image")
            tifffile.imwrite(image, rgb[..., 0].astype(np.uint16) * 257, compression="zlib")
        mask = out / "masks" / f"{name}.png"
        if not mask.exists():
            mask.symlink_to((dsb / "instance_labels" / f"{name}.png").resolve())


def put_bbbc(bbbc: Path, names: list[str], out: Path) -> None:
    """BBBC039 images and labels, linked."""
    for kind, source, suffix in (("images", "images", ".tif"), ("masks", "instance_labels", ".png")):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = out / kind / f"{name}{suffix}"
            if not target.exists():
                target.symlink_to((bbbc / source / f"{name}{suffix}").resolve())


def prepare(dsb: Path, bbbc: Path, out: Path, pilot: bool) -> dict[str, Path]:
    """The folders of each part; returns {part: folder}."""
    d_all, b_all = fluorescence(dsb), sorted(p.stem for p in (bbbc / "images").glob("*.tif"))
    if len(d_all) != 50 or len(b_all) != 157:
        sys.exit(f"Error: expected 50 DSB fluorescence and 157 BBBC039 images, found "
                 f"{len(d_all)} and {len(b_all)}; point --dsb and --bbbc at the shared data")
    held = set(DSB_TEST + DSB_VAL + BBBC_TEST + BBBC_VAL)
    d_train = [n for n in d_all if n not in held]
    b_train = [n for n in b_all if n not in held]
    if pilot:
        d_train, b_train = d_train[:PILOT_IMAGES], b_train[:PILOT_IMAGES]
    parts = {"train": (d_train, b_train), "val": (DSB_VAL, BBBC_VAL),
             "test-dsb": (DSB_TEST, []), "test-bbbc": ([], BBBC_TEST)}
    folders = {}
    for part, (d, b) in parts.items():
        folders[part] = out / "data" / part
        put_dsb(dsb, d, folders[part])
        put_bbbc(bbbc, b, folders[part])
    print(f"Training on {len(d_train)} DSB + {len(b_train)} BBBC039 images; calibrating on "
          f"{len(DSB_VAL)} + {len(BBBC_VAL)}; held out {len(DSB_TEST)} + {len(BBBC_TEST)}.")
    return folders


def cli() -> list[str]:
    command = Path(sys.executable).with_name("keras-unet")
    return [str(command)] if command.exists() else [shutil.which("keras-unet") or "keras-unet"]


def finished_epochs(run: Path) -> int:
    history = run / "history.csv"
    return max(len(history.read_text().splitlines()) - 1, 0) if history.exists() else 0


def fit(folders: dict[str, Path], run: Path, settings: dict) -> float:
    """Train, or resume a run that stopped; returns the minutes this call took."""
    start = time.time()
    epochs = settings["epochs"]
    if (run / "model.keras").exists() and finished_epochs(run) >= epochs:
        print(f"{run} has finished its {epochs} epochs.")
        return 0.0
    if (run / "checkpoints" / "last.keras").exists():
        command = cli() + ["fit", "--resume", str(run), "--epochs", str(epochs)]
    else:
        command = cli() + ["fit", "--images", str(folders["train"] / "images"),
                           "--masks", str(folders["train"] / "masks"),
                           "--val-images", str(folders["val"] / "images"),
                           "--val-masks", str(folders["val"] / "masks"),
                           "--output", str(run), "--overwrite"]
        for key, value in settings.items():
            command += [f"--{key}", str(value)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return (time.time() - start) / 60


def evaluate(model: str, folders: dict[str, Path]) -> dict:
    """Zero-shot scores of ``model`` on each held-out set."""
    scores = {}
    for part in ("test-dsb", "test-bbbc"):
        done = subprocess.run(cli() + ["evaluate", model, "--images",
                                       str(folders[part] / "images"), "--masks",
                                       str(folders[part] / "masks"), "--json"],
                              check=True, capture_output=True, text=True)
        result = json.loads(done.stdout)
        scores[part] = {k: result["instances"][k] for k in
                        ("ap50", "ap75", "map", "f1", "n_pred", "n_true", "merges", "splits")}
        scores[part]["pixel_iou"] = result["mean"]["iou"]
        print(f"{part}: AP50 {scores[part]['ap50']:.3f}, mAP {scores[part]['map']:.3f} "
              f"({len(result['images'])} images)")
    return scores


SAMPLE = ("IXMtest_A06_s6", 132, 220, 256)  # held-out BBBC039 image (CC0): name, top, left, size


def package(run: Path, folders: dict[str, Path], scores: dict, pilot: bool, minutes: float,
            dest: Path, curve: Path | None = None) -> None:
    import tifffile

    from keras_unet.images import read_image
    from keras_unet.pretrained import package_model

    images = [read_image(p) for part in ("test-dsb", "test-bbbc")
              for p in sorted((folders[part] / "images").glob("*.tif"))[:3]]
    config = json.loads((run / "config.json").read_text())
    info = {"pilot": pilot, "trained_steps": config["epochs"] * config["steps_per_epoch"],
            "training_minutes_last_session": round(minutes or session_minutes(run), 1),
            "trained_images": {"dsb2018": len(list((folders["train"] / "images").glob("[0-9a-f]*"))),
                               "bbbc039": len(list((folders["train"] / "images").glob("IXM*")))},
            "heldout_zero_shot": scores,
            "heldout_images": {"dsb2018": DSB_TEST, "bbbc039": BBBC_TEST},
            "calibration_images": {"dsb2018": DSB_VAL, "bbbc039": BBBC_VAL},
            "trained_on": {"dsb2018": "stage 1 training set, fluorescence images only (CC0)",
                           "bbbc039": "BBBC039v1 (CC0)"}}
    if curve is not None:
        info["finetune_curve"] = json.loads(curve.read_text())
    package_model(run / "model.keras", dest, VERSION + ("-pilot" if pilot else ""), images, info,
                  log=print)
    name, top, left, size = SAMPLE
    crop = read_image(folders["test-bbbc"] / "images" / f"{name}.tif")[top:top + size,
                                                                        left:left + size, 0]
    tifffile.imwrite(dest / "sample.tif", crop, compression="zlib")
    (dest / "MODEL_CARD.md").write_text(model_card(json.loads((dest / "info.json").read_text()),
                                                   config))
    print(f"Model card: {dest / 'MODEL_CARD.md'}")


def session_minutes(run: Path) -> float:
    """Minutes from the run's config.json (written when a session starts) to its model.keras
    (written after training and calibration): the last session's wall time."""
    return ((run / "model.keras").stat().st_mtime - (run / "config.json").stat().st_mtime) / 60


NORMALISATION = {"image": "subtract the mean, divide by the standard deviation",
                 "percentile": "map the 1st and 99.8th percentiles to 0 and 1",
                 "fixed": "divide by a fixed value"}


def _row(name: str, s: dict) -> str:
    return (f"| {name} | {s['ap50']:.3f} | {s['ap75']:.3f} | {s['map']:.3f} | {s['f1']:.3f} | "
            f"{s.get('n_pred', '')} | {s.get('n_true', '')} | {s['merges']} | {s['splits']} |")


def model_card(info: dict, config: dict) -> str:
    """MODEL_CARD.md from the measured figures in info.json (nothing typed by hand)."""
    arch, inst, f16 = info["architecture"], info["instances"], info["float16_storage"]
    z = info["heldout_zero_shot"]
    pilot = info.get("pilot")
    lines = [f"# keras-unet nuclei model, version {info['version']}", ""]
    if pilot:
        lines += ["> **PILOT.** This model was trained for a few hundred steps on a small subset "
                  f"({info['trained_images']['dsb2018']} DSB + {info['trained_images']['bbbc039']} "
                  "BBBC039 images) to check the training, packaging and export end to end. Its "
                  "figures below are what was measured for this pilot; the full training "
                  "(`examples/train_nuclei_model.py` without `--pilot`) replaces it.", ""]
    lines += [
        "A U-Net (Ronneberger et al. 2015) that segments **fluorescent cell nuclei** (one grey "
        "channel, e.g. DAPI or Hoechst) into separate objects, trained with keras-unet.", "",
        "```", "keras-unet predict nuclei IMAGE --instances -o out/      # one id per nucleus",
        "keras-unet fit --init nuclei --images IMGS --masks MASKS  # fine-tune on your images",
        "```", "",
        "In Python: `keras_unet.load_pretrained('nuclei')` (see its docstring for fine-tuning in "
        "Keras code).", "",
        "## The network", "",
        f"Depth {arch['depth']}, {arch['filters']} base filters, {arch['padding']} convolutions, "
        f"{arch['channels']} input channel, {arch['n_classes']} classes (background, nucleus). "
        f"Preprocessing, per image: {NORMALISATION[arch['normalization']]}, so 8- and 16-bit "
        "images work alike. Objects: probability threshold "
        f"{inst['threshold']:g}, cut at necks {inst['split_depth']:g} px deep, smallest object "
        f"{inst['min_size']} px, separating border {inst['border_width']} px (calibrated for AP50 "
        "on the calibration images after training).", "",
        "Stored with float16 weights (model.keras); loaded back as float32. "
        f"Measured on {f16['images']} held-out images: the probabilities move by at most "
        f"{f16['max_abs_probability']:.2e} (tolerance {f16['tolerance']}), and "
        f"{f16['changed_pixels']:.1e} of the pixels change class.", "",
        "## Training data and licences", "",
        f"* **DSB 2018** stage 1 training set (BBBC038, community-fixed labels), the 61-image "
        "subset in keras-unet's shared data: only the fluorescence images (50: grey on a dark "
        "background; the 7 H&E and 4 brightfield images are left out). Licence **CC0 1.0**. "
        f"Trained on {info['trained_images']['dsb2018']}.",
        f"* **BBBC039** v1 (U2OS nuclei, Hoechst, 16-bit), the 157 images that are not also in "
        f"DSB 2018. Licence **CC0 1.0**. Trained on {info['trained_images']['bbbc039']}.",
        "",
        f"Held out (never trained or calibrated on): {len(info['heldout_images']['dsb2018'])} DSB "
        f"and {len(info['heldout_images']['bbbc039'])} BBBC039 images; calibrated on "
        f"{len(info['calibration_images']['dsb2018'])} + "
        f"{len(info['calibration_images']['bbbc039'])}. The file names are in `info.json` and "
        "in `examples/train_nuclei_model.py`.", "",
        "## Training", "",
        f"`python examples/train_nuclei_model.py{' --pilot' if pilot else ''} --package` "
        f"(keras-unet fit, seed {config['seed']}, {info['trained_steps']} steps of "
        f"{config['batch_size']} tiles of {config['tile_size']} px, Adam, lr {config['lr']:g} "
        f"with a cosine decay, the weight map w0 {config['w0']:g}, sigma {config['sigma']:g} px, "
        f"elastic deformation and zoom {config['zoom']:g}; mixed precision "
        f"`{config.get('mixed_precision') or 'off'}`, which is bfloat16 on a CPU with AVX-512 "
        f"BF16, as here). The last session took {info['training_minutes_last_session']} "
        "minutes (training and calibration) on a 2-core CPU shared with other jobs.", "",
        "## Figures on held-out images", "",
        "Zero-shot: the trained model (float32; the float16 copy shipped differs as stated "
        "above) on images it never saw, with its calibrated object settings. AP at IoU t = TP "
        "/ (TP + FP + FN), objects matched at IoU > t (DSB 2018 / StarDist); mAP over t = 0.5 "
        "... 0.95.", "",
        "| held-out set | AP50 | AP75 | mAP | F1 | found | true | merges | splits |",
        "|---|---|---|---|---|---|---|---|---|",
        _row(f"DSB 2018 fluorescence ({len(info['heldout_images']['dsb2018'])} images)",
             z["test-dsb"]),
        _row(f"BBBC039 ({len(info['heldout_images']['bbbc039'])} images)", z["test-bbbc"]), ""]
    curve = info.get("finetune_curve")
    if curve:
        lines += ["Fine-tuning (`examples/finetune_curve.py`): " + (
            f"{curve['model']} fine-tuned against a U-Net trained from random weights, same "
            f"steps and images, scored on {len(curve['test_images'])} other images"
            + (f" of {curve['data']}" if curve.get("data") else "") + ":"), "",
            "| arm | training images | steps | AP50 | mAP |", "|---|---|---|---|---|",
            f"| zero-shot | 0 | 0 | {curve['zero_shot']['ap50']:.3f} | "
            f"{curve['zero_shot']['map']:.3f} |"]
        lines += [f"| {r['arm']} | {r['n_train']} | {r['steps']} | {r['ap50']:.3f} | "
                  f"{r['map']:.3f} |" for r in curve["runs"]]
        lines.append("")
    else:
        lines += ["Fine-tuning on 5 and 10 images: **not measured for this version** "
                  "(`examples/finetune_curve.py` measures it).", ""]
    lines += [
        "## Intended use and limits", "",
        "* For 2-D fluorescence images of nuclei (one channel). Stained tissue (H&E), "
        "brightfield and phase contrast are outside what it was trained on: use it there only "
        "as far as the fine-tuning figures above show, after fine-tuning.",
        "* Nuclei of roughly the training images' size in pixels (about 10 to 60 px across); "
        "resample images of very different magnification first.",
        "* Figures move by about 0.05 AP50 from one training seed to another, and were "
        "measured on two collections only; check it on your own images "
        "(`keras-unet evaluate nuclei --images ... --masks ...`) before relying on it.",
        "* Not a medical device; for research.", "",
        f"`sample.tif`: a {SAMPLE[3]} px crop of the held-out BBBC039 image {SAMPLE[0]} (CC0), "
        "to try the model on and the bioimage.io export's test image.", "",
        "## How to cite", "",
        "* O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation. MICCAI 2015, LNCS 9351, 234-241. doi:10.1007/978-3-319-24574-4_28",
        "* J. C. Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 Data "
        "Science Bowl. Nature Methods 16, 1247-1253 (2019). doi:10.1038/s41592-019-0612-7",
        "* V. Ljosa, K. L. Sokolnicki, A. E. Carpenter. Annotated high-throughput microscopy "
        "image sets for validation. Nature Methods 9, 637 (2012) (the BBBC). "
        "doi:10.1038/nmeth.2083",
        "* J. C. Caicedo et al. Evaluation of Deep Learning Strategies for Nucleus Segmentation "
        "in Fluorescence Images. Cytometry A 95, 952-965 (2019) (BBBC039). "
        "doi:10.1002/cyto.a.23863",
        f"* keras-unet (the software that trained and serves it), model version {info['version']}.",
        "", f"`model.keras` sha256: `{info['sha256']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsb", type=Path, default=Path("../shared/data/dsb2018"))
    parser.add_argument("--bbbc", type=Path, default=Path("../shared/data/bbbc039"))
    parser.add_argument("--out", type=Path, default=Path("runs/nuclei-model"))
    parser.add_argument("--pilot", action="store_true", help="a small subset, few steps")
    parser.add_argument("--package", action="store_true",
                        help="copy the model into keras_unet/models/nuclei/ at the end")
    parser.add_argument("--curve", type=Path,
                        help="curve.json of examples/finetune_curve.py, for the model card")
    parser.add_argument("--update-card", type=Path, metavar="CURVE",
                        help="only add CURVE (a curve.json) to the packaged model's info.json "
                        "and card; model.keras stays as it is (its sha256 too)")
    args = parser.parse_args()
    if args.update_card:
        dest = Path(__file__).resolve().parents[1] / "keras_unet" / "models" / "nuclei"
        info = json.loads((dest / "info.json").read_text())
        info["finetune_curve"] = json.loads(args.update_card.read_text())
        from keras_unet.files import write_json_atomic

        write_json_atomic(dest / "info.json", info)
        (dest / "MODEL_CARD.md").write_text(model_card(info, json.loads(
            (dest / "config.json").read_text())))
        print(f"Model card: {dest / 'MODEL_CARD.md'}")
        return
    folders = prepare(args.dsb, args.bbbc, args.out, args.pilot)
    run = args.out / "run"
    minutes = fit(folders, run, PILOT if args.pilot else FIT)
    scored = args.out / "heldout.json"
    if scored.exists() and scored.stat().st_mtime > (run / "model.keras").stat().st_mtime:
        scores = json.loads(scored.read_text())  # this model's, from an earlier call
    else:
        scores = evaluate(str(run / "model.keras"), folders)
        scored.write_text(json.dumps(scores, indent=2) + "\n")
    if args.package:
        dest = Path(__file__).resolve().parents[1] / "keras_unet" / "models" / "nuclei"
        package(run, folders, scores, args.pilot, minutes, dest, args.curve)


if __name__ == "__main__":
    main()

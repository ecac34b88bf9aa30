"""Export to the BioImage Model Zoo format (bioimage.io, spec 0.5): one zip that Fiji (deepImageJ),
ilastik, napari and QuPath open.

The package holds the network with **built-in Keras layers only** (so it loads without
keras_unet) as a Keras v3 file (the original), a legacy Keras HDF5 file and a TF SavedModel
(both converted from it); raw test tensors cut from a real image with the network's output on
them; a cover (image | object probability | objects); a README; and an ``rdf.yaml`` built and
validated with ``bioimageio.spec``. What the network and the description are, and why the
network pads its input by the halo, is :mod:`keras_unet.bioimage_model`.

:func:`check_bioimageio` tests a package with ``bioimageio.core.test_model`` in a clean process
that cannot import keras_unet.

Needs the optional extra ``pip install "keras-unet[bioimageio]"``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile

from ._compat import keras, tf
from .bioimage_model import (
    INPUT_ID,
    OUTPUT_ID,
    PackageGeometry,
    author_list,
    build_rdf,
    package_geometry,
    package_readme,
    portable_network,
)
from .data import demo_data
from .files import atomic_path, check_writable
from .images import list_images, read_image
from .instances import label_instances
from .model import geometry_of
from .preprocess import instance_settings_of, mirror_pad, normalizer_of
from .pretrained import export_name, model_source, packaged_card, packaged_config
from .runs import run_record
from .visualize import colorize, instance_overlay, write_png

__all__ = ["export_bioimageio", "export_bioimageio_file", "check_bioimageio"]

INSTALL_HINT = 'pip install "keras-unet[bioimageio]"'

# --------------------------------------------------------------------------------------------
# The files


def sample_crop(image: np.ndarray, pg: PackageGeometry, at_most: int = 512) -> np.ndarray:
    """A square, valid-size crop ``(s, s, C)`` of the image's centre (mirror-padded up to
    ``pg.min`` when the image is smaller): the test input and the cover's picture."""
    image = np.asarray(image)
    image = image[..., None] if image.ndim == 2 else image
    h, w = image.shape[:2]
    s = pg.size(min(h, w, at_most))
    if min(h, w) < s:
        image = mirror_pad(image, (0, max(0, s - h), 0, max(0, s - w)))
        h, w = image.shape[:2]
    top, left = (h - s) // 2, (w - s) // 2
    return image[top:top + s, left:left + s]


def cover_image(raw: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8 cover, 2:1: image | object probability | objects over the image."""
    panels = [instance_overlay(raw, np.zeros(labels.shape, np.int32)),
              colorize(1.0 - probabilities[..., 0], 0.0, 1.0),
              instance_overlay(raw, labels)]
    s = labels.shape[0]
    gap = max(2, s // 64)
    row = np.concatenate([np.pad(p, ((0, 0), (0, gap if i < 2 else 0), (0, 0)),
                                 constant_values=32) for i, p in enumerate(panels)], axis=1)
    height = row.shape[1] // 2
    top = (height - s) // 2
    canvas = np.full((height, row.shape[1], 3), 32, np.uint8)
    canvas[top:top + s] = row
    return canvas


def _zip_folder(folder: Path, target: Path) -> None:
    """``target``: a zip of ``folder``'s content (paths relative to it)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def write_weights(net: keras.Model, folder: Path, channels: int) -> dict[str, str]:
    """Write the network in three formats into ``folder``; returns their file names.

    The SavedModel's ``serve`` (and ``serving_default``) signature takes ``raw`` float32
    ``(B, H, W, C)`` network input and returns ``{"probabilities": ...}`` (bioimageio.core calls
    it through ``keras.layers.TFSMLayer`` and reads a dict).
    """
    net.save(folder / "model.keras")
    absl = logging.getLogger("absl")  # quiet Keras's "HDF5 is legacy" warning: we mean it
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        net.save(folder / "model.h5")
    finally:
        absl.setLevel(level)
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(
        "serve", tf.function(lambda x: {OUTPUT_ID: net(x, training=False)}),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32, name=INPUT_ID)])
    archive.write_out(str(folder / "saved_model"), verbose=False)
    _zip_folder(folder / "saved_model", folder / "saved_model.zip")
    shutil.rmtree(folder / "saved_model")
    return {"keras_v3": "model.keras", "keras_hdf5": "model.h5", "saved_model": "saved_model.zip"}


def _default_sample(config: dict) -> np.ndarray:
    """A real image of the run (its first validation or training image), else a demo image."""
    for key in ("val_images", "images"):
        folder = config.get(key)
        if folder and Path(folder).is_dir():
            try:
                return read_image(list_images(folder)[0])
            except ValueError:
                continue
    return demo_data(1, 256, seed=2015)[0][0]


def _spec():
    """bioimageio.spec, or a one-line error that says how to get it."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise ValueError(f"--format bioimageio needs bioimageio.spec: {INSTALL_HINT}") from None
    return spec


def export_bioimageio(
    model: keras.Model,
    output: str | os.PathLike,
    *,
    name: str = "unet",
    description: str = "U-Net segmentation (Ronneberger et al. 2015), trained with keras-unet.",
    authors: str = "keras-unet user",
    license: str = "MIT",
    image: np.ndarray | None = None,
    config: dict | None = None,
    history: dict[str, float] | None = None,
    log: Callable[[str], None] | None = None,
    card: dict | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package ``output/<name>.zip`` (spec 0.5), atomically.

    Args:
        model: a U-Net from :func:`keras_unet.build_unet` (or loaded from ``.keras``).
        output: the folder of the zip (created if needed), or the zip's path (``*.zip``; its
            stem is then the name).
        name: the zip's stem, and the model's name in the description.
        description: one or two sentences for people browsing models.
        authors: author names separated by ``;``.
        license: an SPDX licence identifier (``MIT``, ``CC-BY-4.0``, ...).
        image: a raw ``(H, W)`` / ``(H, W, C)`` image for the test tensors and the cover (default:
            the run's first image from ``config``, else a demo image).
        config: the training configuration (recorded under ``config.keras_unet.training``).
        history: the last epoch's validation figures (``val_*``), for the README.
        log: called with what is done.
        card: a packaged model's card (:func:`keras_unet.pretrained.packaged_card`): its text
            ends the README, and its references join the citations.

    Returns:
        The zip's path.

    Raises:
        ValueError: bad name, authors or licence (the description fails validation), or
            bioimageio.spec missing.
    """
    spec = _spec()  # fail early, before any work, if it is missing
    say = log or (lambda _msg: None)
    config = dict(config or {})
    if Path(output).suffix.lower() == ".zip":
        output, name = Path(output).parent, Path(output).stem
    if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ValueError(f"--name {name!r} cannot be a file name; use letters, digits, '-', '_'")
    author_list(authors)  # refuse an empty list now, not after the weights are written
    check_writable(output, "output folder")
    target = Path(output) / f"{name}.zip"
    pg = package_geometry(geometry_of(model))
    normalizer = normalizer_of(model)
    raw = sample_crop(normalizer.channels_of(
        _default_sample(config) if image is None else image, "sample image"), pg)
    say(f"Building the portable network ({pg.min} + n*{pg.step} px inputs, halo {pg.halo} px)...")
    net = portable_network(model)
    from .predict import Predictor

    probabilities = Predictor(model)(raw)
    labels = label_instances(probabilities, **instance_settings_of(model))
    test_in = raw.astype(np.float32)[None]
    test_out = np.asarray(net(normalizer.apply(raw)[None], training=False), np.float32)
    description = description.strip() or "U-Net segmentation."
    # The files go to a temporary folder; the output folder is made only for the finished zip.
    with tempfile.TemporaryDirectory(prefix="keras-unet-bioimageio-") as tmp:
        folder = Path(tmp)
        say("Writing weights (Keras v3, Keras HDF5, TF SavedModel)...")
        files = write_weights(net, folder, normalizer.channels)
        np.save(folder / "test_input.npy", test_in)
        np.save(folder / "test_output.npy", test_out)
        tifffile.imwrite(folder / "sample_input.tif", test_in[0])
        tifffile.imwrite(folder / "sample_output.tif", test_out[0])
        write_png(folder / "cover.png", cover_image(raw, probabilities, labels))
        (folder / "README.md").write_text(
            package_readme(name, description, model, pg, config, history,
                           card["card"] if card else None))
        files.update(test_input="test_input.npy", test_output="test_output.npy",
                     sample_input="sample_input.tif", sample_output="sample_output.tif",
                     cover="cover.png", documentation="README.md")
        rdf = build_rdf(model, pg, name=name, description=description, authors=authors,
                        license=license, config=config, files=files,
                        cite=card["cite"] if card else ())
        say("Validating the description (bioimageio.spec)...")
        descr = spec.build_description(rdf, context=spec.ValidationContext(root=folder))
        if descr.validation_summary.status == "failed":
            errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}"
                               for e in descr.validation_summary.errors)
            raise ValueError(f"the bioimage.io description is not valid: {errors}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as partial:
            spec.save_bioimageio_package(descr, output_path=partial)
    say(f"bioimage.io package written to {target}")
    return target


CHECK_SCRIPT = """
import json, os, sys
sys.modules["keras_unet"] = None  # the package must work without keras_unet
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
from bioimageio.core import test_model
from bioimageio.spec import load_description
descr = load_description(sys.argv[1])
formats = [f for f in ("keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle")
           if getattr(descr.weights, f, None) is not None]
import bioimageio.core
out = []
for wf in formats:
    s = test_model(sys.argv[1], weight_format=wf)
    out.append({"format": wf, "status": s.status, "report": s.format(),
                "core": bioimageio.core.__version__})
print("@@" + json.dumps(out))
"""


def check_bioimageio(package: str | os.PathLike, python: str | None = None,
                     timeout: float = 900) -> list[dict]:
    """Test a package with ``bioimageio.core.test_model`` in a clean process, once per weight format.

    The process imports no keras_unet (it is blocked), so the test shows the package works
    without it. ``python``: the interpreter of an environment that has bioimageio.core
    (default: ``$KERAS_UNET_BIOIMAGEIO_PYTHON``, else this one).

    Returns:
        ``[{"format", "status", "report", "core"}]``: the weight format, ``"passed"`` or
        ``"failed"``, the full report (text), bioimageio.core's version.
    """
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="bioimageio-check-") as cwd:
        python = python or os.environ.get("KERAS_UNET_BIOIMAGEIO_PYTHON") or sys.executable
        proc = subprocess.run([python, "-c", CHECK_SCRIPT,
                               str(Path(package).resolve())], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not marker:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        if "No module named 'bioimageio" in proc.stderr:
            raise ValueError(f"--check needs bioimageio.core: {INSTALL_HINT}")
        raise RuntimeError(f"the bioimage.io check crashed: {tail[0]}")
    return json.loads(marker[-1][2:])


def last_figures(history: dict[str, list[float]]) -> dict[str, float]:
    """The latest finite value of each ``val_*`` column of a run's history (some figures are
    computed every few epochs only)."""
    figures = {}
    for key, values in history.items():
        finite = [v for v in values if np.isfinite(v)]
        if key.startswith("val_") and finite:
            figures[key] = finite[-1]
    return figures


def export_bioimageio_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike = "exported_models",
    name: str | None = None,
    *,
    overwrite: bool = False,
    check: bool = False,
    image: str | os.PathLike | None = None,
    ignored: dict | None = None,
    log: Callable[[str], None] | None = None,
    **info: str | None,
) -> Path:
    """``keras-unet export MODEL --format bioimageio``: a ``.keras`` file to ``output/name.zip``.

    The run's ``config.json`` and ``history.csv`` (beside the model, or one folder up) give the
    training configuration and validation figures. ``info``: ``description``, ``authors``,
    ``license`` (see :func:`export_bioimageio`; None: the default). ``ignored``: options of the
    SavedModel export, ``{"--option": value}``; one that is set is refused. With ``check``, the
    package is tested by :func:`check_bioimageio`: the report of any format that fails, one
    summary line, and a ``ValueError`` if any fails.
    """
    from .predict import load_model

    say = log or (lambda _msg: None)
    for option, value in (ignored or {}).items():
        if value is not None:
            raise ValueError(f"{option} is an option of --format savedmodel, not of bioimageio")
    name = name or export_name(model_path)  # a packaged model keeps its name, else unet
    target = Path(output) / f"{name}.zip"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    if image is not None and not Path(image).is_file():
        raise FileNotFoundError(f"--image {image} does not exist")
    source = model_source(model_path, say)  # a packaged model's name, a run folder
    model_path = source.path
    unet = load_model(model_path)
    if image is None and (model_path.parent / "sample.tif").is_file():
        image = model_path.parent / "sample.tif"  # a packaged model's own sample image
    info = {k: v for k, v in info.items() if v is not None}
    config, history = run_record(model_path)
    card = packaged_card(source.packaged) if source.packaged else None
    if card:  # its card, not the paths it was trained from on the developers' machine
        info = {"description": card["description"], "authors": "keras-unet developers", **info}
        config = packaged_config(source.packaged, config, card)
    zip_path = export_bioimageio(
        unet, output, name=name, image=None if image is None else read_image(image),
        config=config, history=last_figures(history), log=say, card=card, **info)
    if check:
        say("Testing it with bioimageio.core (clean process, without keras_unet)...")
        results = check_bioimageio(zip_path)
        failed = [r["format"] for r in results if r["status"] != "passed"]
        passed = [r["format"] for r in results if r["status"] == "passed"]
        for r in results:
            if r["status"] != "passed":
                say(r["report"])
        say(f"bioimageio test {zip_path}: " + (f"failed for {', '.join(failed)}; " if failed
                                                else "") +
            (f"passed for {', '.join(passed)}" if passed else "nothing passed") +
            f" (bioimageio.core {results[0]['core']})")
        if failed:
            raise ValueError(f"bioimageio test failed for {', '.join(failed)} (report above); "
                             "the package is kept for inspection")
    return zip_path

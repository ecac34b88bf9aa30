"""SavedModel export for TensorFlow Serving: versions, atomic writes, metadata, the load check.

``export_saved_model`` writes ``<output>/<name>/<version>/`` in TF Serving's layout with Keras 3's
``ExportArchive`` (``tf.saved_model.save`` on a Keras 3 model writes wrong signatures, see
keras-team/keras#19458). Its signatures (:mod:`keras_unet.signatures`) take raw images of any size
and apply the model's own preprocessing; ``assets.extra`` holds the metadata and the warm-up
requests (:mod:`keras_unet.warmup`).

The export is **atomic**: it is written to a hidden sibling folder and renamed to its integer
version only when complete, so a server polling ``<output>/<name>`` never sees half a model. An
existing version is only replaced when asked.

:func:`check_export` loads an export the way TF Serving does, in a clean process that runs
``loader_check.py`` (a script that imports only TensorFlow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ._compat import keras, tf
from .bioimage import export_bioimageio  # noqa: F401  (the bioimage.io format, see there)
from .files import check_writable, write_json_atomic
from .model import geometry_of
from .preprocess import instance_settings_of, normalizer_of
from .pretrained import export_name, model_source, packaged_config
from .runs import run_record
from .signatures import serving_functions
from .tiling import predict_tiled
from .warmup import write_warmup

__all__ = [
    "export_bioimageio",
    "export_saved_model",
    "export_model_file",
    "next_version",
    "export_metadata",
    "check_export",
]


def png_bits(normalizer) -> int:
    """The bit depth of PNGs the export's ``predict_png`` takes: 16 for ``fixed`` normalisation
    on 16-bit training images, else 8 (any depth is taken then)."""
    dtype = np.dtype(normalizer.dtype) if normalizer.dtype else None
    fixed16 = normalizer.mode == "fixed" and dtype is not None and dtype.kind in "ui"
    return 16 if fixed16 and dtype.itemsize == 2 else 8


def check_name(name: str) -> str:
    """A model name TF Serving accepts as a folder: letters, digits, ``-``, ``_``, ``.``."""
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise ValueError(f"model name {name!r} must use letters, digits, '-', '_' or '.'")
    return name


def export_metadata(model: keras.Model, config: dict | None = None,
                    tile_size: int | None = None, batch_size: int = 4) -> dict:
    """What a client needs to know about an export: classes, geometry, preprocessing, training."""
    from ._version import __version__

    geo = geometry_of(model)
    normalizer = normalizer_of(model)
    return {
        "keras_unet_version": __version__,
        "n_classes": int(model.output_shape[-1]),
        "channels": int(model.input_shape[-1]),
        "depth": geo.depth,
        "padding": geo.padding,
        "margin": geo.margin,
        "instances": instance_settings_of(model),
        "normalization": normalizer.mode,
        "input_scale": float(normalizer.scale),
        "input_dtype": normalizer.dtype,
        "input_range": (None if normalizer.high is None
                        else [float(normalizer.low), float(normalizer.high)]),
        "tile_size": tile_size,
        "tile_batch_size": batch_size,
        "signatures": {
            "serving_default": {"inputs": {"images": "float32 [batch, height, width, channels], "
                                           "raw intensities"},
                                "outputs": {"probabilities": "float32 [batch, height, width, classes]",
                                            "mask": "int32 [batch, height, width] class ids"}},
            "predict_png": {"inputs": {"image_bytes": "string [batch]: PNG (8/16-bit), JPEG, BMP"},
                            "outputs": {"mask_png_bytes": "string [batch]: 8-bit PNG, 0/255 for "
                                                          "two classes, class ids otherwise",
                                        "height": "int32 [batch]", "width": "int32 [batch]"}},
        },
        "training_config": config or {},
    }


def _write_metadata(folder: Path, model, config, tile, batch) -> None:
    extra = folder / "assets.extra"
    extra.mkdir(exist_ok=True)
    write_json_atomic(extra / "keras_unet.json", export_metadata(model, config, tile, batch))


def next_version(base: str | os.PathLike) -> int:
    """The next free integer version under ``base`` (1 if there is none)."""
    base = Path(base)
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export_saved_model(
    model: keras.Model,
    output: str | os.PathLike = "exported_models",
    name: str = "unet",
    version: int | None = None,
    overwrite: bool = False,
    config: dict | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    progress=None,
) -> Path:
    """Export ``model`` as a TF Serving SavedModel at ``output/name/version``, atomically.

    Args:
        model: a U-Net from :func:`keras_unet.build_unet` (or loaded from ``.keras``).
        output: the models' base folder.
        name: model name (TF Serving's MODEL_NAME); letters, digits, ``-``, ``_`` and ``.``.
        version: integer version; default the next free one.
        overwrite: replace an existing version instead of refusing.
        config: the training configuration, recorded in the export's metadata.
        tile_size: largest input tile of the in-graph overlap tiling (default: the paper's 572
            px for depth 5, i.e. a 388 px output); memory per request is bounded by
            ``batch_size`` such tiles, whatever the image size.
        batch_size: tiles per forward pass inside the graph.
        progress: called with a short message before slow steps.

    Returns:
        The version folder.

    Raises:
        ValueError: bad name or version; FileExistsError: the version exists and not ``overwrite``.
    """
    check_name(name)
    base = Path(output) / name
    check_writable(output, "export folder")
    if base.exists() and not base.is_dir():
        raise NotADirectoryError(f"{base} is a file, not a folder; choose another --output or --name")
    if version is None:
        version = next_version(base)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    final = base / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"{final} already exists; pick another --version or pass --overwrite to replace it"
        )
    channels = int(model.input_shape[-1])
    serve_images, serve_png, tile = serving_functions(model, tile_size, batch_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        tf.function(serve_images),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32, name="images")],
    )
    archive.add_endpoint(
        "predict_png",
        tf.function(serve_png),
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".partial-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        if progress:
            progress("writing the SavedModel")
        archive.write_out(str(tmp), verbose=False)
        _write_metadata(tmp, model, config, tile, batch_size)
        write_warmup(tmp, name, channels, png_bits(normalizer_of(model)))
        if final.exists():  # overwrite: move the old one aside first, then swap
            old = base / f".old-{version}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------
# Checking an export the way TF Serving loads it


def check_export(
    export_dir: str | os.PathLike,
    model: keras.Model | None = None,
    size: tuple[int, int] = (100, 130),
    atol: float = 1e-4,
) -> dict:
    """Check an export the way TF Serving loads it, in a clean process.

    Loads ``export_dir`` with the TF1 session loader and tag ``serve`` in a fresh Python process
    that imports only TensorFlow, checks that ``variables/variables.index`` exists and that every
    signature uses only dtypes JSON can carry, feeds ``serving_default`` a raw image of ``size``
    and ``predict_png`` the same image as 8-bit and 16-bit PNGs, and replays the warm-up records.
    With ``model``, compares the probabilities with :func:`keras_unet.tiling.predict_tiled`
    after the model's own normalisation.

    Returns:
        A report: signatures with their dtypes, warm-up records replayed, max differences.

    Raises:
        ValueError: naming what is wrong.
    """
    export_dir = Path(export_dir)
    if not (export_dir / "saved_model.pb").is_file():
        raise ValueError(f"{export_dir} is not a SavedModel (no saved_model.pb)")
    if not (export_dir / "variables" / "variables.index").is_file():
        raise ValueError(
            f"{export_dir}/variables/variables.index is missing: TF Serving would load the model "
            "with uninitialised weights; export it again"
        )
    meta_path = export_dir / "assets.extra" / "keras_unet.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    channels = int(meta.get("channels", model.input_shape[-1] if model is not None else 1))
    rng = np.random.default_rng(0)
    h, w = size
    smooth = _smooth_image(rng.random((h, w, channels)))
    raw8 = np.round(smooth * 255).astype(np.uint8)
    trained = np.dtype(meta["input_dtype"]) if meta.get("input_dtype") else None
    fixed = meta.get("normalization") == "fixed" and trained is not None
    # the test image in the training images' dtype, and the PNGs the model takes: those of its
    # training depth under fixed normalisation (none for float training images), else both
    if fixed and trained.kind == "f":
        raw, depths = smooth.astype(np.float32), ()
    elif fixed and trained == np.uint16:
        raw, depths = raw8.astype(np.uint16) * 257, (16,)
    else:
        raw, depths = raw8, ((8,) if fixed else (8, 16))
    pngs = [tf.io.encode_png(raw8 if d == 8 else raw8.astype(np.uint16) * 257).numpy()
            for d in depths]
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        feeds = {"serving_default/images": raw[None].astype(np.float32)}
        if pngs:
            feeds["predict_png/image_bytes"] = np.array(pngs, dtype=object)
        np.savez(inputs, **feeds)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        script = Path(__file__).with_name("loader_check.py")
        proc = subprocess.run(  # -I: a clean interpreter that cannot see keras_unet's folder
            [sys.executable, "-I", str(script), str(export_dir), str(inputs), str(outputs)],
            capture_output=True, text=True, env=env,
        )
        if proc.returncode != 0:
            last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:]
            raise ValueError(
                f"TF Serving's loader path fails on {export_dir}: {last[0] if last else 'unknown error'}"
            )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        results = dict(np.load(outputs, allow_pickle=True))
    for name in ("serving_default", "predict_png"):
        if name not in report["signatures"]:
            raise ValueError(f"{export_dir} has no {name!r} signature")
        if report["signatures"][name]["non_json_dtypes"]:
            raise ValueError(
                f"signature {name} has tensors JSON cannot carry: "
                f"{report['signatures'][name]['non_json_dtypes']}"
            )
    probs = results["serving_default/probabilities"][0]
    mask = results["serving_default/mask"][0]
    if probs.shape[:2] != (h, w):
        raise ValueError(f"serving_default returned {probs.shape[:2]} for a {h}x{w} image")
    for i, data in enumerate(results.get("predict_png/mask_png_bytes", [])):
        png_mask = tf.io.decode_png(data).numpy()[..., 0]
        expected = mask * 255 if probs.shape[-1] == 2 else mask
        if not np.array_equal(png_mask, expected.astype(np.uint8)):
            which = f"{depths[i]}-bit"
            raise ValueError(f"predict_png's mask for a {which} PNG differs from serving_default's")
    report["image_size"] = [h, w]
    if model is not None:
        tile = meta.get("tile_size")
        keras_probs = predict_tiled(model, normalizer_of(model)(raw), tile)
        diff = float(np.abs(keras_probs - probs).max())
        report["max_abs_diff_vs_keras"] = diff
        if diff > atol:
            raise ValueError(
                f"the export's probabilities differ from the Keras model's by {diff:.2e} (> {atol})"
            )
    return report


def _smooth_image(x):
    """A smooth test image in [0, 1] (blurred noise), ``(H, W, C)``."""
    out = np.stack([cv2.GaussianBlur(x[..., c], (0, 0), 3) for c in range(x.shape[2])], axis=-1)
    out = (out - out.min()) / max(out.max() - out.min(), 1e-9)
    return out


def export_model_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike = "exported_models",
    name: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    tile_size: int | None = None,
    batch_size: int = 4,
    check: bool = False,
    log=None,
) -> Path:
    """Export a ``.keras`` file (from ``keras-unet fit``) as a SavedModel, and optionally check it.

    The options are checked before the model is loaded. The run's ``config.json`` (beside the
    model, or one folder up for ``checkpoints/best.keras``) is recorded in the metadata if there
    is one; the preprocessing comes from the model itself. ``log`` (``print``-like) gets what was
    done. Returns the version folder.
    """
    from .predict import load_model

    say = log or (lambda _msg: None)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= 4096:
        raise ValueError(f"--batch-size must be an integer from 1 to 4096, got {batch_size!r}")
    if version is not None and version < 1:
        raise ValueError(f"--version must be a positive integer, got {version!r}")
    name = check_name(name or export_name(model_path))  # a packaged model keeps its name
    check_writable(output, "export folder")
    source = model_source(model_path, say)  # a packaged model's name, a run folder
    model_path, config = source.path, run_record(source.path)[0]
    if source.packaged:  # what it was trained on, not the developers' paths
        config = packaged_config(source.packaged, config)
    unet = load_model(model_path)
    if tile_size is not None:
        geometry_of(unet).check(tile_size, "--tile-size")
    out = export_saved_model(unet, output, name, version, overwrite, config, tile_size,
                             batch_size)
    say(f"SavedModel exported to {out}")
    if check:
        say("Checking it the way TF Serving loads it (clean process, tag 'serve')...")
        report = check_export(out, unet)
        for sig, info in sorted(report["signatures"].items()):
            ins = ", ".join(f"{k}: {v}" for k, v in sorted(info["inputs"].items()))
            outs = ", ".join(f"{k}: {v}" for k, v in sorted(info["outputs"].items()))
            say(f"  {sig}({ins}) -> {outs}")
        say(f"  warm-up records replayed: {report['warmup']}")
        h, w = report["image_size"]
        say(f"  max |difference| to the Keras model on a {h}x{w} image: "
            f"{report['max_abs_diff_vs_keras']:.2e}")
        say("Check passed.")
    return out

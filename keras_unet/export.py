"""SavedModel export for TensorFlow Serving.

``export_saved_model`` writes ``<output>/<name>/<version>/`` in TF Serving's layout with Keras 3's
``ExportArchive`` (``tf.saved_model.save`` on a Keras 3 model writes wrong signatures, see
keras-team/keras#19458). The ``serving_default`` signature takes float32 images
``[batch, height, width, channels]`` of any height and width, in their raw intensity range:
normalisation, mirror padding to a valid size and the crop back run inside the graph, so the named
outputs ``probabilities`` ``[batch, height, width, classes]`` (float32) and ``mask``
``[batch, height, width]`` (int32 class ids) have the input's size.

The export is **atomic**: it is written to a hidden sibling folder and renamed to its integer
version only when complete, so a server polling ``<output>/<name>`` never sees half a model. An
existing version is only replaced when asked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ._compat import keras, tf
from .model import Geometry, geometry_of
from .tiling import tf_mirror_pad

__all__ = ["export_saved_model", "next_version", "tf_normalize", "whole_image_predict_fn"]


def tf_normalize(images, mode: str = "image", scale: float = 255.0):
    """In-graph twin of :func:`keras_unet.data.normalize` for a float batch ``(B, H, W, C)``.

    ``"image"`` standardises each image (independent of the intensity scale, so raw 8- or 16-bit
    values work); ``"fixed"`` divides by ``scale`` (the dtype's maximum of the training images).
    """
    images = tf.cast(images, tf.float32)
    if mode == "fixed":
        return images / scale
    if mode != "image":
        raise ValueError(f"normalization must be 'image' or 'fixed', got {mode!r}")
    mean, var = tf.nn.moments(images, axes=[1, 2, 3], keepdims=True)
    # NumPy's (x/scale - mean) / max(std, 1e-6), written on the raw values x.
    return (images - mean) / tf.maximum(tf.sqrt(var), 1e-6 * scale)


def whole_image_predict_fn(model: keras.Model, normalization: str = "image", scale: float = 255.0):
    """A function ``images (B, H, W, C) float32 -> {"probabilities", "mask"}`` of the input's size.

    Pads each image by mirroring (the network margin plus what makes the size valid), runs the
    network once and crops the output to the input's height and width.
    """
    geo: Geometry = geometry_of(model)
    m, f = geo.margin, geo.factor
    offset = geo.offset
    min_size = geo.min_input_size

    def valid_at_least(n):
        # Smallest valid input size >= n: offset + f * k, and at least the smallest valid size.
        k = tf.math.floordiv(tf.maximum(n, min_size) - offset + f - 1, f)
        return offset + f * k

    def predict(images):
        shape = tf.shape(images)
        h, w = shape[1], shape[2]
        x = tf_normalize(images, normalization, scale)
        in_h, in_w = valid_at_least(h + 2 * m), valid_at_least(w + 2 * m)
        x = tf_mirror_pad(x, m, in_h - h - m, m, in_w - w - m)
        probabilities = tf.cast(model(x, training=False), tf.float32)[:, :h, :w, :]
        mask = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "mask": mask}

    return predict


def export_metadata(model: keras.Model, normalization: str, scale: float,
                    config: dict | None = None) -> dict:
    """What a client needs to know about an export: classes, geometry, preprocessing, training."""
    from ._version import __version__

    geo = geometry_of(model)
    return {
        "keras_unet_version": __version__,
        "n_classes": int(model.output_shape[-1]),
        "channels": int(model.input_shape[-1]),
        "depth": geo.depth,
        "padding": geo.padding,
        "margin": geo.margin,
        "normalization": normalization,
        "input_scale": float(scale),
        "training_config": config or {},
    }


def _write_metadata(folder: Path, model, normalization, scale, config) -> None:
    import json

    extra = folder / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "keras_unet.json").write_text(
        json.dumps(export_metadata(model, normalization, scale, config), indent=2, sort_keys=True)
    )


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
    normalization: str = "image",
    scale: float = 255.0,
    config: dict | None = None,
) -> Path:
    """Export ``model`` as a TF Serving SavedModel at ``output/name/version``, atomically.

    Args:
        model: a U-Net from :func:`keras_unet.build_unet` (or loaded from ``.keras``).
        output: the models' base folder.
        name: model name (TF Serving's MODEL_NAME); letters, digits, ``-``, ``_`` and ``.``.
        version: integer version; default the next free one.
        overwrite: replace an existing version instead of refusing.
        normalization, scale: the intensity normalisation used in training.
        config: the training configuration, recorded in the export's metadata.

    Returns:
        The version folder.

    Raises:
        ValueError: bad name or version; FileExistsError: the version exists and not ``overwrite``.
    """
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise ValueError(f"model name {name!r} must use letters, digits, '-', '_' or '.'")
    base = Path(output) / name
    if version is None:
        version = next_version(base)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    final = base / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"{final} already exists; pick another --version or pass --overwrite to replace it"
        )
    channels = model.input_shape[-1]
    predict = whole_image_predict_fn(model, normalization, scale)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        tf.function(predict),
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32, name="images")],
    )
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".partial-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        archive.write_out(str(tmp), verbose=False)
        _write_metadata(tmp, model, normalization, scale, config)
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

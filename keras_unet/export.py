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

__all__ = [
    "export_saved_model",
    "next_version",
    "tf_normalize",
    "tiled_predict_fn",
    "serving_functions",
    "whole_image_predict_fn",
    "export_metadata",
    "write_warmup",
    "prediction_log",
    "check_export",
]


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


def _valid_at_least(geo: Geometry, n):
    """Smallest valid input size >= ``n`` (a tensor): ``offset + factor * k``, at least the minimum."""
    f = geo.factor
    k = tf.math.floordiv(tf.maximum(n, geo.min_input_size) - geo.offset + f - 1, f)
    return geo.offset + f * k


def tiled_predict_fn(model: keras.Model, tile_size: int, batch_size: int = 4):
    """In-graph overlap-tile prediction of one normalised image ``(H, W, C)`` -> ``(H, W, K)``.

    The graph twin of :func:`keras_unet.tiling.predict_tiled` for valid-padding networks: the image
    is mirror-padded by the margin, cut into tiles of at most ``tile_size`` px (smaller for small
    images) that start every ``stride`` px, ``batch_size`` tiles per forward pass in a
    ``tf.while_loop``, and each tile's first ``stride`` x ``stride`` output block is stitched in
    place. The stride is the tile's output rounded down to the down-sampling factor, so the result
    equals one pass over the whole image, while memory stays bounded by one batch of tiles.
    Same-padding networks are run once over the image padded to a multiple of the factor.
    """
    geo: Geometry = geometry_of(model)
    geo.check(tile_size, "tile size")
    m, f = geo.margin, geo.factor
    n_classes = int(model.output_shape[-1])

    def forward(tiles):
        return tf.cast(model(tiles, training=False), tf.float32)

    if geo.padding == "same":
        def predict_same(x):
            shape = tf.shape(x)
            h, w = shape[0], shape[1]
            ph, pw = _valid_at_least(geo, h), _valid_at_least(geo, w)
            padded = tf_mirror_pad(x[None], 0, ph - h, 0, pw - w)
            return forward(padded)[0, :h, :w, :]

        return predict_same

    def axis(n):
        tile = tf.minimum(tile_size, _valid_at_least(geo, n + 2 * m))
        out = tile - 2 * m
        stride = out - out % f
        count = (n + stride - 1) // stride
        return tile, stride, count, (count - 1) * stride + tile

    def predict(x):
        shape = tf.shape(x)
        h, w, c = shape[0], shape[1], shape[2]
        th, sh, ny, total_h = axis(h)
        tw, sw, nx, total_w = axis(w)
        padded = tf_mirror_pad(x[None], m, total_h - h - m, m, total_w - w - m)[0]
        n = ny * nx

        def cut(k):
            return tf.slice(padded, tf.stack([(k // nx) * sh, (k % nx) * sw, 0]),
                            tf.stack([th, tw, c]))

        def body(i, blocks):
            ks = tf.range(i, tf.minimum(i + batch_size, n))
            tiles = tf.map_fn(cut, ks, fn_output_signature=tf.TensorSpec([None, None, None],
                                                                          x.dtype))
            probs = forward(tiles)[:, :sh, :sw, :]
            return i + batch_size, blocks.write(i // batch_size, probs)

        blocks = tf.TensorArray(tf.float32, size=(n + batch_size - 1) // batch_size,
                                element_shape=tf.TensorShape([None, None, None, n_classes]),
                                infer_shape=False)
        _, blocks = tf.while_loop(lambda i, _: i < n, body, [tf.constant(0), blocks])
        grid = tf.reshape(blocks.concat(), tf.stack([ny, nx, sh, sw, n_classes]))
        full = tf.reshape(tf.transpose(grid, [0, 2, 1, 3, 4]), tf.stack([ny * sh, nx * sw, n_classes]))
        return full[:h, :w, :]

    return predict


def serving_functions(
    model: keras.Model, normalization: str = "image", scale: float = 255.0,
    tile_size: int | None = None, batch_size: int = 4,
):
    """The two serving functions of an export.

    * ``images (B, H, W, C) float32`` (raw intensities) -> ``probabilities (B, H, W, K)`` float32
      and ``mask (B, H, W)`` int32;
    * ``image_bytes (B,) string`` (PNG 8/16-bit, JPEG, BMP) -> ``mask_png_bytes (B,)`` string
      (an 8-bit PNG: 0/255 for two classes, class ids otherwise), ``height``/``width`` (B,) int32.
    """
    geo = geometry_of(model)
    tile = tile_size or (geo.input_size_for_output(388) if geo.padding == "valid" else 512)
    one = tiled_predict_fn(model, tile, batch_size)
    channels = int(model.input_shape[-1])
    n_classes = int(model.output_shape[-1])

    def serve_images(images):
        x = tf_normalize(images, normalization, scale)
        probabilities = tf.map_fn(one, x, fn_output_signature=tf.TensorSpec(
            [None, None, n_classes], tf.float32))
        return {"probabilities": probabilities,
                "mask": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

    def serve_png(image_bytes):
        def decode_one(data):
            # float32 in [0, 1] whatever the bit depth: 8-bit / 255, 16-bit / 65535
            x01 = tf.io.decode_image(data, channels=channels, dtype=tf.float32,
                                     expand_animations=False)
            x = tf_normalize(x01[None], normalization, 1.0)[0]
            mask = tf.argmax(one(x), axis=-1, output_type=tf.int32)
            pixels = mask * 255 if n_classes == 2 else mask
            png = tf.io.encode_png(tf.cast(pixels, tf.uint8)[..., None])
            return png, tf.shape(mask)[0], tf.shape(mask)[1]

        png, h, w = tf.map_fn(decode_one, image_bytes, fn_output_signature=(
            tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)))
        return {"mask_png_bytes": png, "height": h, "width": w}

    return serve_images, serve_png, tile


def whole_image_predict_fn(model: keras.Model, normalization: str = "image", scale: float = 255.0,
                           tile_size: int | None = None, batch_size: int = 4):
    """``images (B, H, W, C) float32 -> {"probabilities", "mask"}`` of the input's size
    (``serving_default`` of an export), with in-graph overlap tiling."""
    return serving_functions(model, normalization, scale, tile_size, batch_size)[0]


def export_metadata(model: keras.Model, normalization: str, scale: float,
                    config: dict | None = None, tile_size: int | None = None,
                    batch_size: int = 4) -> dict:
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


def _write_metadata(folder: Path, model, normalization, scale, config, tile, batch) -> None:
    import json

    extra = folder / "assets.extra"
    extra.mkdir(exist_ok=True)
    meta = export_metadata(model, normalization, scale, config, tile, batch)
    (extra / "keras_unet.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Warm-up requests (assets.extra/tf_serving_warmup_requests)
#
# A TFRecord of serialized tensorflow.serving.PredictionLog messages. The few fields needed are
# written here by hand in protobuf's wire format, so exporting needs no tensorflow-serving-api;
# the tests parse the file with tensorflow-serving-api's own classes. Field numbers (from
# tensorflow_serving/apis): PredictionLog.predict_log = 6; PredictLog.request = 1;
# PredictRequest.model_spec = 1, .inputs = 2 (map entry: key = 1, value = 2);
# ModelSpec.name = 1, .signature_name = 3.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(model_name: str, signature: str, inputs: dict) -> bytes:
    """A serialized PredictionLog holding one PredictRequest of ``inputs`` (name -> array)."""
    spec = _field(1, model_name.encode()) + _field(3, signature.encode())
    request = _field(1, spec)
    for key, value in inputs.items():
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


WARMUP_SIZE = 64  # px: small, so warm-up is quick, yet it runs every signature's whole graph


def write_warmup(folder: Path, model_name: str, channels: int) -> Path:
    """Write one warm-up request per signature so TF Serving runs them before the first client."""
    import numpy as np

    extra = Path(folder) / "assets.extra"
    extra.mkdir(exist_ok=True)
    image = np.zeros((1, WARMUP_SIZE, WARMUP_SIZE, channels), np.float32)
    png = tf.io.encode_png(tf.zeros([WARMUP_SIZE, WARMUP_SIZE, channels], tf.uint8)).numpy()
    path = extra / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(prediction_log(model_name, "serving_default", {"images": image}))
        writer.write(prediction_log(model_name, "predict_png",
                                    {"image_bytes": np.array([png], dtype=object)}))
    return path


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
        normalization, scale: the intensity normalisation used in training.
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
    channels = int(model.input_shape[-1])
    serve_images, serve_png, tile = serving_functions(
        model, normalization, scale, tile_size, batch_size
    )
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
        _write_metadata(tmp, model, normalization, scale, config, tile, batch_size)
        write_warmup(tmp, name, channels)
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

# Runs in a fresh interpreter that imports only TensorFlow: the TF1 session loader with the exact
# tag set {serve} (the path of TF Serving's C++ LoadSavedModel), every signature fed from
# in.npz, the warm-up records replayed. Prints a JSON report; writes outputs to out.npz.
_CHECK_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

export_dir, inputs_path, outputs_path = sys.argv[1:4]
JSON_DTYPES = {tf.float32.as_datatype_enum, tf.float64.as_datatype_enum,
               tf.int32.as_datatype_enum, tf.int64.as_datatype_enum, tf.int16.as_datatype_enum,
               tf.int8.as_datatype_enum, tf.uint8.as_datatype_enum, tf.bool.as_datatype_enum,
               tf.string.as_datatype_enum}

def fields(buf):
    # protobuf wire format: (field number, bytes) of the length-delimited fields
    i, out = 0, []
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]; i += 1; key |= (b & 0x7F) << shift; shift += 7
            if b < 0x80: break
        if key & 7 != 2:
            raise ValueError("unexpected wire type in warm-up record")
        n, shift = 0, 0
        while True:
            b = buf[i]; i += 1; n |= (b & 0x7F) << shift; shift += 7
            if b < 0x80: break
        out.append((key >> 3, buf[i:i + n])); i += n
    return out

report = {"signatures": {}, "warmup": 0}
warmup = export_dir + "/assets.extra/tf_serving_warmup_requests"
records = list(tf.data.TFRecordDataset(warmup).as_numpy_iterator()) if tf.io.gfile.exists(warmup) else []
inputs = np.load(inputs_path, allow_pickle=True)
results = {}
with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
    sigs = meta.signature_def
    for name, sig in sigs.items():
        if name.startswith("__"):
            continue
        bad = [k for k, t in list(sig.inputs.items()) + list(sig.outputs.items())
               if t.dtype not in JSON_DTYPES]
        report["signatures"][name] = {
            "inputs": {k: tf.dtypes.as_dtype(t.dtype).name for k, t in sig.inputs.items()},
            "outputs": {k: tf.dtypes.as_dtype(t.dtype).name for k, t in sig.outputs.items()},
            "non_json_dtypes": bad,
        }
    def run(signature, feeds):
        sig = sigs[signature]
        fetch = {k: t.name for k, t in sig.outputs.items()}
        return sess.run(fetch, feed_dict={sig.inputs[k].name: v for k, v in feeds.items()})
    for key in inputs.files:
        signature, alias = key.split("/")
        for out_key, value in run(signature, {alias: inputs[key]}).items():
            results[f"{signature}/{out_key}"] = value
    for record in records:
        (_, predict_log), = [f for f in fields(record) if f[0] == 6]
        (_, request), = fields(predict_log)
        spec, feeds = None, {}
        for number, payload in fields(request):
            if number == 1:
                spec = dict(fields(payload))
            elif number == 2:
                entry = dict(fields(payload))
                feeds[entry[1].decode()] = tf.make_ndarray(tensor_pb2.TensorProto.FromString(entry[2]))
        run(spec[3].decode(), feeds)
        report["warmup"] += 1
np.savez(outputs_path, **results)
print(json.dumps(report))
"""


def check_export(
    export_dir: str | os.PathLike,
    model: keras.Model | None = None,
    normalization: str = "image",
    scale: float = 255.0,
    size: tuple[int, int] = (100, 130),
    atol: float = 1e-4,
) -> dict:
    """Check an export the way TF Serving loads it, in a clean process.

    Loads ``export_dir`` with the TF1 session loader and tag ``serve`` in a fresh Python process
    that imports only TensorFlow, checks that ``variables/variables.index`` exists and that every
    signature uses only dtypes JSON can carry, feeds ``serving_default`` a raw image of ``size``
    and ``predict_png`` the same image as 8-bit and 16-bit PNGs, and replays the warm-up records.
    With ``model``, compares the probabilities with :func:`keras_unet.tiling.predict_tiled`.

    Returns:
        A report: signatures with their dtypes, warm-up records replayed, max differences.

    Raises:
        ValueError: naming what is wrong.
    """
    import json
    import subprocess
    import sys
    import tempfile

    import numpy as np

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
    png8 = tf.io.encode_png(raw8).numpy()
    png16 = tf.io.encode_png((raw8.astype(np.uint16) * 257)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, **{"serving_default/images": raw8[None].astype(np.float32),
                            "predict_png/image_bytes": np.array([png8, png16], dtype=object)})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(
            [sys.executable, "-c", _CHECK_SCRIPT, str(export_dir), str(inputs), str(outputs)],
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
    for i, data in enumerate(results["predict_png/mask_png_bytes"]):
        png_mask = tf.io.decode_png(data).numpy()[..., 0]
        expected = mask * 255 if probs.shape[-1] == 2 else mask
        if not np.array_equal(png_mask, expected.astype(np.uint8)):
            which = ("8-bit", "16-bit")[i]
            raise ValueError(f"predict_png's mask for a {which} PNG differs from serving_default's")
    report["image_size"] = [h, w]
    if model is not None:
        from .data import normalize
        from .tiling import predict_tiled

        tile = meta.get("tile_size")
        keras_probs = predict_tiled(model, normalize(raw8, normalization) if normalization == "image"
                                    else raw8.astype(np.float32) / scale, tile)
        diff = float(np.abs(keras_probs - probs).max())
        report["max_abs_diff_vs_keras"] = diff
        if diff > atol:
            raise ValueError(
                f"the export's probabilities differ from the Keras model's by {diff:.2e} (> {atol})"
            )
    return report


def _smooth_image(x):
    """A smooth test image in [0, 1] (blurred noise), ``(H, W, C)``."""
    import cv2
    import numpy as np

    out = np.stack([cv2.GaussianBlur(x[..., c], (0, 0), 3) for c in range(x.shape[2])], axis=-1)
    out = (out - out.min()) / max(out.max() - out.min(), 1e-9)
    return out

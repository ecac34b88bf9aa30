"""Warm-up requests (``assets.extra/tf_serving_warmup_requests``) so TF Serving runs every
signature before its first client.

The file is a TFRecord of serialized ``tensorflow.serving.PredictionLog`` messages. The few fields
needed are written here by hand in protobuf's wire format, so exporting needs no
tensorflow-serving-api; the tests parse the file with tensorflow-serving-api's own classes. Field
numbers (from tensorflow_serving/apis): PredictionLog.predict_log = 6; PredictLog.request = 1;
PredictRequest.model_spec = 1, .inputs = 2 (map entry: key = 1, value = 2); ModelSpec.name = 1,
.signature_name = 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._compat import tf

__all__ = ["prediction_log", "write_warmup", "WARMUP_SIZE"]


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


def write_warmup(folder: Path, model_name: str, channels: int, png_bits: int = 8) -> Path:
    """Write one warm-up request per signature so TF Serving runs them before the first client.

    ``png_bits``: the bit depth of the warm-up PNG (16 for a model that takes 16-bit PNGs only:
    ``fixed`` normalisation on 16-bit training images)."""
    extra = Path(folder) / "assets.extra"
    extra.mkdir(exist_ok=True)
    image = np.zeros((1, WARMUP_SIZE, WARMUP_SIZE, channels), np.float32)
    png = tf.io.encode_png(tf.zeros([WARMUP_SIZE, WARMUP_SIZE, channels],
                                    tf.uint16 if png_bits == 16 else tf.uint8)).numpy()
    path = extra / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(prediction_log(model_name, "serving_default", {"images": image}))
        writer.write(prediction_log(model_name, "predict_png",
                                    {"image_bytes": np.array([png], dtype=object)}))
    return path

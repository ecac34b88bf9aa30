"""Load an export the way TF Serving does, in a clean process: ``python -I loader_check.py``.

Run by :func:`keras_unet.export.check_export` as a script, in a fresh interpreter that imports
only TensorFlow and NumPy (never ``keras_unet``): the TF1 session loader with the exact tag set
``{serve}`` (the path of TF Serving's C++ ``LoadSavedModel``), every signature fed from
``in.npz``, the warm-up records replayed. Prints a JSON report; writes the outputs to ``out.npz``.

Usage: ``python -I loader_check.py EXPORT_DIR IN_NPZ OUT_NPZ``
"""

import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

JSON_DTYPES = {tf.float32.as_datatype_enum, tf.float64.as_datatype_enum,
               tf.int32.as_datatype_enum, tf.int64.as_datatype_enum, tf.int16.as_datatype_enum,
               tf.int8.as_datatype_enum, tf.uint8.as_datatype_enum, tf.bool.as_datatype_enum,
               tf.string.as_datatype_enum}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at ``buf[i:]`` and the index after it."""
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) of the length-delimited fields of a protobuf message."""
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 != 2:
            raise ValueError("unexpected wire type in warm-up record")
        n, i = _varint(buf, i)
        out.append((key >> 3, buf[i:i + n]))
        i += n
    return out


def main(export_dir: str, inputs_path: str, outputs_path: str) -> None:
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


if __name__ == "__main__":
    main(*sys.argv[1:4])

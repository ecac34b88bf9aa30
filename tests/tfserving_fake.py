"""A test-only stand-in for TensorFlow Serving's REST API (TF Serving is not installable here).

It applies TF Serving's JSON rules as ../shared/docs/tfserving-rest.md describes them (from
tensorflow_serving/util/json_tensor.cc and model_servers/http_rest_api_handler.cc): URL patterns,
row ("instances") and columnar ("inputs") requests typed by the *signature's* dtypes, ``{"b64"}``
strings, ``_bytes`` outputs written as base64, float formatting, ``{"error": ...}`` bodies and
their HTTP codes. Models are loaded the way the C++ server does it: the TF1 session loader with
tag ``serve``. Users serve with the real tensorflow/serving image; this file is for tests only.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------
# JSON -> tensors (json_tensor.cc FillPredictRequestFromJson)


class ServingFailure(Exception):
    """A failed request: HTTP status and TF Serving's error message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def bad(message: str) -> ServingFailure:
    return ServingFailure(400, message)


FLOATS, INTS, STRINGS, BOOLS = ("float32", "float64"), ("int32", "int16", "int8", "uint8", "int64"), ("string",), ("bool",)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _shape(value, level=0) -> list[int]:
    """Shape from the first element at each nesting level (GetDenseTensorShape)."""
    if isinstance(value, list):
        return [len(value)] + (_shape(value[0], level + 1) if value else [])
    return []


def _flatten(value, shape, dtype, out, level=0):
    if level == len(shape):
        if isinstance(value, list):
            raise bad("Encountered list at unexpected size or found at incorrect level")
        out.append(_convert(value, dtype))
        return
    if not isinstance(value, list) or len(value) != shape[level]:
        raise bad("Encountered list at unexpected size or found at incorrect level")
    for v in value:
        _flatten(v, shape, dtype, out, level + 1)


def _convert(value, dtype: str):
    if dtype in FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"JSON Value: {json.dumps(value)} not of expected type: float")
        return float(value)
    if dtype in INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"JSON Value: {json.dumps(value)} not of expected type: {dtype}")
        return value
    if dtype in BOOLS:
        if not isinstance(value, bool):
            raise bad(f"JSON Value: {json.dumps(value)} not of expected type: bool")
        return value
    if dtype in STRINGS:
        if _is_b64(value):
            if not isinstance(value["b64"], str):
                raise bad("'b64' value must be a string")
            return base64.b64decode(value["b64"])
        if not isinstance(value, str):
            raise bad(f"JSON Value: {json.dumps(value)} not of expected type: string")
        return value.encode()
    raise ServingFailure(501, f"Conversion of JSON Value: {json.dumps(value)} to type: {dtype}")


def _tensor(value, dtype: str) -> np.ndarray:
    shape = _shape(value)
    flat: list = []
    _flatten(value, shape, dtype, flat)
    np_dtype = object if dtype == "string" else np.dtype(dtype)
    return np.array(flat, dtype=np_dtype).reshape(shape)


def parse_predict_request(text: str, inputs: dict[str, str]):
    """``(signature_name, {alias: array}, row_format)`` for a request body.

    ``inputs`` maps the signature's input aliases to dtype names ("float32", "int32", "string").
    """
    if not text.strip():
        raise bad("JSON Parse error: The document is empty")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise bad("JSON Parse error: Invalid value") from None
    if not isinstance(body, dict):
        raise bad("Is not object")
    signature = body.get("signature_name", "")
    if not isinstance(signature, str):
        raise bad("'signature_name' key must be a string value.")
    if "instances" in body and "inputs" in body:
        raise bad("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" not in body and "inputs" not in body:
        raise bad("Missing 'inputs' or 'instances' key")
    return signature, inputs


def tensors_from_request(text: str, inputs: dict[str, str]):
    """Parse a predict body into tensors typed by ``inputs`` (see :func:`parse_predict_request`)."""
    signature, _ = parse_predict_request(text, inputs)
    body = json.loads(text)
    if "instances" in body:
        return signature, _row(body["instances"], inputs), True
    return signature, _columnar(body["inputs"], inputs), False


def _row(instances, inputs):
    if not isinstance(instances, list):
        raise bad("Expecting 'instances' to be an list/array")
    if not instances:
        raise bad("No values in 'instances' array")
    names = sorted(inputs)
    columns: dict[str, list] = {n: [] for n in names}
    if len(names) == 1:
        (name,) = names
        first_is_object = isinstance(instances[0], dict) and not _is_b64(instances[0])
        for i, item in enumerate(instances):
            is_object = isinstance(item, dict) and not _is_b64(item)
            if is_object != first_is_object:
                raise bad(f"Expecting object but got list at item {i}" if first_is_object
                          else f"Expecting value/list but got object at item {i}")
            if is_object and set(item) != {name}:
                raise bad(f"JSON object: does not have named input: {name}")
            columns[name].append(item[name] if is_object else item)
    else:
        for i, item in enumerate(instances):
            if not isinstance(item, dict) or _is_b64(item):
                if i == 0:
                    raise bad("instances is a plain list, but expecting list of objects as multiple "
                              "input tensors required as per tensorinfo_map")
                raise bad(f"Expecting object but got list at item {i}")
            if set(item) != set(names):
                raise bad(f"Failed to process element: {i} key count doesn't match with number of "
                          f"inputs. Input keys must be equal to: {','.join(names)}")
            for n in names:
                columns[n].append(item[n])
    out = {}
    for name, values in columns.items():
        first = _tensor(values[0], inputs[name])
        rows = [first]
        for v in values[1:]:
            t = _tensor(v, inputs[name])
            if t.size != first.size:
                raise bad(f"Expecting tensor size: {first.size} but got: {t.size}")
            if t.shape != first.shape:
                raise bad(f"Expecting shape {list(first.shape)} but got: {list(t.shape)}")
            rows.append(t)
        out[name] = np.stack(rows)
    return out


def _columnar(value, inputs):
    names = sorted(inputs)
    if isinstance(value, dict) and not _is_b64(value):
        missing = [n for n in names if n not in value]
        if missing:
            raise bad(f"Missing named input: {missing[0]} in 'inputs' object.")
        return {n: _tensor(value[n], inputs[n]) for n in names}  # extra keys are ignored
    if len(names) != 1:
        raise bad("inputs is a plain value/list, but expecting an object as multiple input "
                  "tensors required as per tensorinfo_map")
    return {names[0]: _tensor(value, inputs[names[0]])}


# --------------------------------------------------------------------------------------------
# tensors -> JSON (json_tensor.cc MakeJsonFromTensors)


def format_float(x: float, single: bool = True) -> str:
    """absl::StrCat ("%g", 6 digits), reprinted with %.9g/%.17g when it does not round-trip."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if single:
        x = float(np.float32(x))  # the value the float32 tensor holds
    text = "%g" % x
    back = float(np.float32(text)) if single else float(text)
    if back != x:
        text = ("%.9g" if single else "%.17g") % x
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _value_json(v, dtype: str, as_bytes: bool) -> str:
    if dtype == "string":
        data = v if isinstance(v, bytes) else str(v).encode()
        if as_bytes:
            return json.dumps({"b64": base64.b64encode(data).decode()})
        return json.dumps(data.decode())
    if dtype in FLOATS:
        return format_float(float(v), dtype == "float32")
    if dtype in BOOLS:
        return "true" if v else "false"
    if dtype in INTS:
        return str(int(v))
    raise bad(f"Failed to write JSON value for tensor type: {dtype}")


def _array_json(a, dtype: str, as_bytes: bool) -> str:
    if not isinstance(a, np.ndarray):  # an element of an object (string) array
        return _value_json(a, dtype, as_bytes)
    if a.ndim == 0:
        return _value_json(a.item(), dtype, as_bytes)
    return "[" + ",".join(_array_json(x, dtype, as_bytes) for x in a) + "]"


def _dtype_name(a: np.ndarray) -> str:
    if a.dtype == object or a.dtype.kind in "SU":
        return "string"
    return a.dtype.name


def response_json(outputs: dict[str, np.ndarray], row: bool) -> str:
    """The response body for named output tensors, in row or columnar format."""
    if not outputs:
        raise bad("empty tensor map")
    names = sorted(outputs)
    dtypes = {n: _dtype_name(np.asarray(outputs[n])) for n in names}
    arrays = {n: np.asarray(outputs[n]) for n in names}
    if row:
        for n in names:
            if arrays[n].ndim == 0:
                raise bad(f"Tensor name: {n} has no shape information ")
        batch = {arrays[n].shape[0] for n in names}
        if len(batch) > 1:
            raise bad("Tensor name: has inconsistent batch size")
        (b,) = batch
        if len(names) == 1:
            n = names[0]
            rows = [_array_json(arrays[n][i], dtypes[n], n.endswith("_bytes")) for i in range(b)]
        else:
            rows = ["{" + ",".join(
                f"{json.dumps(n)}:{_array_json(arrays[n][i], dtypes[n], n.endswith('_bytes'))}"
                for n in names) + "}" for i in range(b)]
        return '{"predictions":[' + ",".join(rows) + "]}"
    if len(names) == 1:
        n = names[0]
        return '{"outputs":' + _array_json(arrays[n], dtypes[n], n.endswith("_bytes")) + "}"
    return '{"outputs":{' + ",".join(
        f"{json.dumps(n)}:{_array_json(arrays[n], dtypes[n], n.endswith('_bytes'))}" for n in names
    ) + "}}"


# --------------------------------------------------------------------------------------------
# The server: TF1 session loader, URL dispatch, status codes

PREDICT = re.compile(r"(?i)^/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)$")
GET = re.compile(r"(?i)^/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?$")


class LoadedVersion:
    """One SavedModel version loaded with the TF1 session loader and tag 'serve'."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signatures = {k: v for k, v in meta.signature_def.items()}
        self.lock = threading.Lock()

    def input_dtypes(self, signature: str) -> dict[str, str]:
        import tensorflow as tf

        sig = self.signatures[signature]
        return {k: tf.dtypes.as_dtype(t.dtype).name for k, t in sig.inputs.items()}

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sig = self.signatures[signature]
        fetch = {k: t.name for k, t in sig.outputs.items()}
        with self.lock:
            return self.session.run(fetch, {sig.inputs[k].name: v for k, v in feeds.items()})


class FakeServing:
    """Serves ``base_path/<version>`` SavedModels as model ``name`` on 127.0.0.1.

    ``fail_next`` is a list of ``(status, message)`` answers given before the real ones (e.g. a
    503 while "loading"); ``requests`` records ``(method, path, body)``.
    """

    def __init__(self, name: str, base_path: Path):
        self.name, self.base_path = name, Path(base_path)
        self.versions = {
            int(p.name): LoadedVersion(p) for p in self.base_path.iterdir() if p.name.isdigit()
        }
        self.fail_next: list[tuple[int, str]] = []
        self.requests: list[tuple[str, str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                fake.requests.append((method, self.path, body))
                try:
                    if fake.fail_next:
                        status, message = fake.fail_next.pop(0)
                        raise ServingFailure(status, message)
                    self._answer(200, fake.dispatch(method, self.path, body))
                except ServingFailure as exc:
                    self._answer(exc.status, json.dumps({"error": exc.message}, indent=1))
                except Exception as exc:  # a bug here should show up as a 500, like the server's
                    self._answer(500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}))

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServing":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _version(self, model: str, version: str | None) -> tuple[int, LoadedVersion]:
        if model != self.name or not self.versions:
            spec = f"Latest({model})" if version is None else f"Specific({model}, {version})"
            raise ServingFailure(404, f"Servable not found for request: {spec}")
        if version is None:
            v = max(self.versions)
        else:
            v = int(version)
            if v not in self.versions:
                raise ServingFailure(404, f"Servable not found for request: Specific({model}, {v})")
        return v, self.versions[v]

    def dispatch(self, method: str, path: str, body: str) -> str:
        if not path.lower().startswith("/v1/"):
            raise ServingFailure(404, "Not found")
        if method == "POST":
            match = PREDICT.match(path)
            if not match:
                raise bad(f"Malformed request: POST {path}")
            model, version, verb = match.groups()
            if verb != "predict":
                raise bad("Expected classification signature method_name to be "
                          "tensorflow/serving/classify")
            _, loaded = self._version(model, version)
            signature, _ = parse_predict_request(body, {})
            signature = signature or "serving_default"
            if signature not in loaded.signatures:
                raise bad(f'Serving signature name: "{signature}" not found in signature def')
            _, tensors, row = tensors_from_request(body, loaded.input_dtypes(signature))
            try:
                outputs = loaded.run(signature, tensors)
            except Exception as exc:  # TF runtime errors pass through as 400, with the
                # Status message TF Serving gives (not Python's "Graph execution error" frame)
                raise bad(_status_message(str(exc))) from None
            return response_json(outputs, row)
        match = GET.match(path)
        if not match:
            raise bad(f"Malformed request: GET {path}")
        model, version, metadata = match.groups()
        if model is None:
            raise bad("Missing model name in request.")
        if metadata:
            v, loaded = self._version(model, version)
            sigs = {}
            for name, sig in loaded.signatures.items():
                def info(tensors):
                    return {k: {"dtype": _dtype_enum_name(t.dtype),
                                "tensor_shape": {"dim": [{"size": str(d.size), "name": ""}
                                                         for d in t.tensor_shape.dim],
                                                 "unknown_rank": t.tensor_shape.unknown_rank},
                                "name": t.name} for k, t in tensors.items()}
                sigs[name] = {"inputs": info(sig.inputs), "outputs": info(sig.outputs),
                              "method_name": sig.method_name, "defaults": {}}
            return json.dumps({"model_spec": {"name": model, "signature_name": "",
                                              "version": str(v)},
                               "metadata": {"signature_def": {"signature_def": sigs}}})
        if model != self.name:
            raise ServingFailure(404, f"Could not find any versions of model {model}")
        versions = [int(version)] if version else sorted(self.versions, reverse=True)
        if version and int(version) not in self.versions:
            raise ServingFailure(404, f"Could not find version {version} of model {model}")
        return json.dumps({"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for v in versions]})


def _status_message(text: str) -> str:
    """The failing node's own status line of a TF runtime error (an assertion's, a numerics
    check's), as TF Serving returns it; else the first line."""
    lines = [m for m in text.splitlines() if "assertion failed" in m or "Tensor had" in m]
    return lines[0].strip() if lines else text.splitlines()[0]


def _dtype_enum_name(enum: int) -> str:
    """``DT_FLOAT`` etc., as TF Serving's proto3 JSON prints DataType."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum)

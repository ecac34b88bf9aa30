"""The TF Serving path: signatures, PNG round trips, warm-up, the session-loader check, the REST
client against a stand-in that applies TF Serving's JSON rules (tests/tfserving_fake.py)."""

import base64
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keras_unet._compat import tf
from keras_unet.cli import main
from keras_unet.preprocess import normalize
from keras_unet.export import check_export, export_saved_model
from keras_unet.model import build_unet
from keras_unet.serving import ServingClient, ServingError
from keras_unet.tiling import predict_tiled
from tfserving_fake import (
    FakeServing,
    ServingFailure,
    format_float,
    response_json,
    tensors_from_request,
)

TILE = 124  # depth 3: a 84 px output per tile, so a 500x700 image needs 6 x 9 tiles


@pytest.fixture(scope="module")
def unet():
    keras_model = build_unet(depth=3, filters=4)
    # non-trivial weights so the mask has both classes
    keras_model.get_layer("logits").bias.assign([0.0, 0.02])
    return keras_model


@pytest.fixture(scope="module")
def exported(unet, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return export_saved_model(unet, base, "unet", tile_size=TILE, batch_size=3)


def session_run(export_dir, signature, feeds):
    """Run a signature through the TF1 session loader, as TF Serving does."""
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(export_dir))
        sig = meta.signature_def[signature]
        fetch = {k: t.name for k, t in sig.outputs.items()}
        return sess.run(fetch, {sig.inputs[k].name: v for k, v in feeds.items()})


# --------------------------------------------------------------------------------------------
# The export


def test_any_size_input_equals_predict_tiled(unet, exported, rng):
    image = rng.integers(0, 256, (500, 700, 1)).astype(np.float32)
    out = session_run(exported, "serving_default", {"images": image[None]})
    assert out["probabilities"].shape == (1, 500, 700, 2)
    assert out["mask"].shape == (1, 500, 700) and out["mask"].dtype == np.int32
    expected = predict_tiled(unet, normalize(image.astype(np.uint8)), TILE)
    np.testing.assert_allclose(out["probabilities"][0], expected, atol=1e-5)
    clear = np.abs(expected[..., 1] - expected[..., 0]) > 1e-4  # not a tie within float rounding
    np.testing.assert_array_equal(out["mask"][0][clear], expected.argmax(-1)[clear])
    assert clear.mean() > 0.99


def test_batches_of_images_are_tiled_each(unet, exported, rng):
    images = rng.integers(0, 256, (2, 90, 61, 1)).astype(np.float32)
    out = session_run(exported, "serving_default", {"images": images})
    for i in range(2):
        expected = predict_tiled(unet, normalize(images[i].astype(np.uint8)), TILE)
        np.testing.assert_allclose(out["probabilities"][i], expected, atol=1e-5)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_signature_round_trips(unet, exported, rng, bits):
    raw = rng.integers(0, 256, (77, 93)).astype(np.uint8)
    pixels = raw if bits == 8 else raw.astype(np.uint16) * 257
    ok, png = cv2.imencode(".png", pixels)
    assert ok
    out = session_run(exported, "predict_png", {"image_bytes": np.array([png.tobytes()], object)})
    assert out["height"].tolist() == [77] and out["width"].tolist() == [93]
    mask = cv2.imdecode(np.frombuffer(out["mask_png_bytes"][0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == (77, 93)
    expected = predict_tiled(unet, normalize(raw), TILE).argmax(-1)
    np.testing.assert_array_equal(mask, expected * 255)
    assert set(np.unique(mask)) <= {0, 255}


def test_jpeg_is_accepted(exported, rng):
    ok, jpg = cv2.imencode(".jpg", rng.integers(0, 256, (40, 50)).astype(np.uint8))
    out = session_run(exported, "predict_png", {"image_bytes": np.array([jpg.tobytes()], object)})
    assert out["height"].tolist() == [40] and out["width"].tolist() == [50]


def test_warmup_file_parses_as_prediction_log(exported):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    path = exported / "assets.extra" / "tf_serving_warmup_requests"
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert len(records) == 2
    signatures = set()
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "unet"
        signatures.add(request.model_spec.signature_name)
        for alias, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            # replay it the way TF Serving's warm-up does
            out = session_run(exported, request.model_spec.signature_name, {alias: value})
            assert all(v.shape[0] == 1 for v in out.values())
    assert signatures == {"serving_default", "predict_png"}


def test_metadata_travels_with_the_export(exported):
    meta = json.loads((exported / "assets.extra" / "keras_unet.json").read_text())
    assert meta["n_classes"] == 2 and meta["margin"] == 20 and meta["tile_size"] == TILE
    assert set(meta["signatures"]) == {"serving_default", "predict_png"}


def test_saved_model_cli_lists_named_signatures(exported):
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
           str(exported), "--all"]
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    for needle in ("signature_def['serving_default']", "signature_def['predict_png']",
                   "inputs['images']", "outputs['probabilities']", "outputs['mask']",
                   "inputs['image_bytes']", "outputs['mask_png_bytes']"):
        assert needle in text
    assert "output_0" not in text and "DT_HALF" not in text


def test_session_loader_check_in_a_clean_process(unet, exported):
    report = check_export(exported, unet)
    assert report["warmup"] == 2
    assert report["max_abs_diff_vs_keras"] < 1e-4
    assert report["signatures"]["predict_png"]["outputs"]["mask_png_bytes"] == "string"


def test_check_catches_missing_variables(exported, tmp_path):
    import shutil

    broken = tmp_path / "1"
    shutil.copytree(exported, broken)
    (broken / "variables" / "variables.index").unlink()
    with pytest.raises(ValueError, match="variables.index is missing"):
        check_export(broken)


def test_export_check_command(tmp_path):
    from keras_unet.callbacks import save_model_atomic

    model = save_model_atomic(build_unet(depth=2, filters=2), tmp_path / "model.keras")
    result = CliRunner().invoke(main, ["export", str(model), "--output", str(tmp_path / "ex"),
                                       "--check"])
    assert result.exit_code == 0, result.output
    assert "Check passed." in result.output and "warm-up records replayed: 2" in result.output


# --------------------------------------------------------------------------------------------
# TF Serving's JSON rules (vectors from the contract document, section 2)


def parse(body, sig):
    return tensors_from_request(json.dumps(body) if not isinstance(body, str) else body, sig)


def test_request_vectors():
    _, t, row = parse({"instances": [[1, 2], [3, 4], [5, 6]]}, {"x": "int32"})  # R1
    assert row and t["x"].shape == (3, 2) and t["x"].ravel().tolist() == [1, 2, 3, 4, 5, 6]
    _, t, _ = parse({"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}, {"x": "float32"})  # R2
    assert t["x"].shape == (7,)
    _, t, _ = parse({"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}, {"x": "string"})
    assert t["x"].tolist() == [b"hello", b"world"]  # R6
    _, t, _ = parse({"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}, {"x": "string"})
    assert t["x"].shape == (2, 1)  # R7
    _, t, _ = parse({"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]},
                    {"default": "string"})
    assert t["default"].shape == (1, 2, 1)  # R8
    sig, t, _ = parse({"signature_name": "predict_images", "instances": [[1, 2]]}, {"x": "int32"})
    assert sig == "predict_images" and t["x"].shape == (1, 2)  # R5
    text = ('{"instances":[{"int_tensor":[[1,2],[3,4],[5,6]],"str_tensor":["foo","bar"],'
            '"float_tensor":[1.0,NaN],"dbl_tensor":[NaN]},{"int_tensor":[[7,8],[9,0],[1,2]],'
            '"str_tensor":["baz","bat"],"float_tensor":[2.0,Infinity],"dbl_tensor":[2.0]}]}')
    _, t, _ = tensors_from_request(text, {"int_tensor": "int32", "str_tensor": "string",
                                          "float_tensor": "float32", "dbl_tensor": "float64"})
    assert t["int_tensor"].shape == (2, 3, 2) and t["str_tensor"].shape == (2, 2)  # R9
    assert np.isnan(t["float_tensor"][0, 1]) and np.isinf(t["float_tensor"][1, 1])
    assert t["dbl_tensor"].shape == (2, 1)
    for body in ({"inputs": {"int_tensor": [[[1, 2], [3, 4], [5, 6]]]}},
                 {"inputs": [[[1, 2], [3, 4], [5, 6]]]}):  # R10
        _, t, row = parse(body, {"int_tensor": "int32"})
        assert not row and t["int_tensor"].shape == (1, 3, 2)
    _, t, _ = parse({"inputs": {"int_tensor": [[[1, 2], [3, 4], [5, 6]]], "str_tensor": ["foo", "bar"],
                                "bin_tensor": {"b64": "aGVsbG8="}}},
                    {"int_tensor": "int32", "str_tensor": "string", "bin_tensor": "string"})
    assert t["bin_tensor"].shape == () and t["bin_tensor"].item() == b"hello"  # R11


@pytest.mark.parametrize("body,message", [  # R12, R13
    ("", "document is empty"),
    ('{"signature_name": 5, "instances": [[1]]}', "must be a string value"),
    ('{"instances": [[1]], "inputs": [[1]]}', "Not formatted correctly"),
    ('{"instances": [[1, 2], [3, 4], [5, 6, 7]]}', "Expecting tensor size"),
    ('{"instances": [[1, 2], [3, 4], [[5, 6]]]}', "Expecting shape"),
    ('{"instances": [1, [1]]}', "Expecting shape"),
    ('{"instances": [[1, 2], ["a", "b"]]}', "not of expected type"),
    ('{"instances": [[1.5]]}', "not of expected type: int32"),
    ('{"instances": []}', "No values in 'instances' array"),
    ('{"nothing": 1}', "Missing 'inputs' or 'instances' key"),
])
def test_request_errors(body, message):
    with pytest.raises(ServingFailure, match=message) as info:
        tensors_from_request(body, {"x": "int32"})
    assert info.value.status == 400


def test_mixed_rows_are_rejected():
    sig = {"str_tensor": "string"}
    with pytest.raises(ServingFailure, match="Expecting value/list but got object"):
        parse({"instances": [["baz", "bar"], {"str_tensor": ["a", "b"]}]}, sig)
    two = {"a": "int32", "b": "int32"}
    with pytest.raises(ServingFailure, match="Expecting object but got list"):
        parse({"instances": [{"a": 1, "b": 2}, [1, 20, 30]]}, two)
    with pytest.raises(ServingFailure, match="Input keys must be equal to: a,b"):
        parse({"instances": [{"a": 1}]}, two)
    with pytest.raises(ServingFailure) as info:
        parse({"instances": [1]}, {"x": "float16"})
    assert info.value.status == 501


def test_response_vectors():
    ints = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], np.int32).reshape(2, 3, 2)
    assert json.loads(response_json({"int_tensor": ints}, True)) == \
        {"predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}  # P1
    assert json.loads(response_json({"int_tensor": np.arange(1, 6, dtype=np.int32)}, False)) == \
        {"outputs": [1, 2, 3, 4, 5]}  # P2
    words = np.array([[b"hello", b"world"], [b"tf", b"serving"]], object)
    assert json.loads(response_json({"str_tensor_bytes": words}, True)) == {"predictions": [
        [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}  # P3
    floats = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], np.float32)
    assert response_json({"f": floats}, True) == \
        '{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}'  # P4, as a string
    special = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    assert response_json({"f": special}, True) == '{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'
    out = json.loads(response_json({"float_tensor": np.array([[1.0], [2.0]], np.float32),
                                    "double_scalar_tensor": np.array([8.0, 9.0])}, True))
    assert out == {"predictions": [{"double_scalar_tensor": 8.0, "float_tensor": [1.0]},
                                   {"double_scalar_tensor": 9.0, "float_tensor": [2.0]}]}  # P6
    with pytest.raises(ServingFailure, match="inconsistent batch size"):  # P8
        response_json({"a": np.zeros((2, 3), np.int32), "b": np.zeros((1, 3), object)}, True)
    assert json.loads(response_json({"a": np.zeros((0, 2), np.int32)}, True)) == {"predictions": []}
    assert format_float(1435774380.0) == "1.43577434e+09"


# --------------------------------------------------------------------------------------------
# The client against the stand-in server


@pytest.fixture(scope="module")
def server(exported):
    with FakeServing("unet", exported.parent) as fake:
        yield fake


def image_png(rng, h=60, w=70):
    raw = rng.integers(0, 256, (h, w)).astype(np.uint8)
    return raw, cv2.imencode(".png", raw)[1].tobytes()


def test_client_predict_png(unet, server, rng):
    raw, png = image_png(rng)
    client = ServingClient(server.url, "unet")
    (mask_png,) = client.predict_png([png])
    mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, predict_tiled(unet, normalize(raw), TILE).argmax(-1) * 255)
    body = json.loads(server.requests[-1][2])
    assert body["signature_name"] == "predict_png"
    assert base64.b64decode(body["instances"][0]["b64"]) == png


def test_client_shows_the_error_body_of_a_400(server):
    client = ServingClient(server.url, "unet")
    with pytest.raises(ServingError, match="400.*not found in signature def") as info:
        client.predict({"signature_name": "nope", "instances": [1]})
    assert info.value.status == 400


def test_client_404_for_an_unknown_model(server):
    with pytest.raises(ServingError, match="404.*Servable not found.*serving-status") as info:
        ServingClient(server.url, "other").predict_png([b"x"])
    assert info.value.status == 404


def test_client_retries_503_then_succeeds(server, rng):
    waits = []
    client = ServingClient(server.url, "unet", retries=3, backoff=0.25, sleep=waits.append)
    server.fail_next = [(503, "model is loading"), (503, "model is loading")]
    _, png = image_png(rng, 30, 30)
    (mask_png,) = client.predict_png([png])
    assert mask_png.startswith(b"\x89PNG")
    assert waits == [0.25, 0.5]
    server.fail_next = [(503, "still loading")] * 3
    with pytest.raises(ServingError, match="503"):
        ServingClient(server.url, "unet", retries=2, sleep=lambda s: None).status()
    server.fail_next = []


def test_client_connection_refused_is_one_line():
    with pytest.raises(ServingError, match="cannot reach TF Serving"):
        ServingClient("http://127.0.0.1:9", "unet", retries=1, sleep=lambda s: None).status()


def test_end_to_end_rest_vectors_with_half_plus_two(tmp_path):
    """E1-E4, E8-E10 of the contract on a y = 0.5 x + 2 model in the stand-in server."""
    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 0.5 * x + 2.0}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(tmp_path / "hp2" / "123"),
                        signatures={"serving_default": module.serve})
    import urllib.request

    with FakeServing("M", tmp_path / "hp2") as fake:
        def call(path, body=None):
            req = urllib.request.Request(fake.url + path, data=None if body is None else body.encode(),
                                         method="GET" if body is None else "POST")
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert call("/v1/models/M/versions/123:predict", '{"instances": [1.0, 2.0]}') == \
            (200, {"predictions": [2.5, 3.0]})  # E2
        assert call("/v1/models/M/versions/123:predict",
                    '{"signature_name":"serving_default","instances":[3.0,4.0]}') == \
            (200, {"predictions": [3.5, 4.0]})  # E3
        assert call("/v1/models/M:predict", '{"inputs":[3.0,4.0]}') == (200, {"outputs": [3.5, 4.0]})
        assert call("/v1/models/foo:predict", '{"instances":[1.0]}')[0] == 404  # E8
        assert call("/v1/models/M/versions/50:predict", '{"instances":[1.0]}')[0] == 404
        status, body = call("/v1/models/M:predict", '{"instances":["x","y"]}')  # E9
        assert status == 400 and "not of expected type: float" in body["error"]
        status, body = call("/v1/models/M:predict", "")
        assert status == 400 and "The document is empty" in body["error"]
        assert call("/v1/models", None)[1] == {"error": "Missing model name in request."}  # E10
        assert call("/v1/models/M", None) == (200, {"model_version_status": [
            {"version": "123", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}]})  # E7


def test_cli_predict_server_and_serving_status(unet, server, tmp_path, rng):
    raw, png = image_png(rng, 50, 64)
    cv2.imwrite(str(tmp_path / "a.png"), raw)
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "--server", server.url, "--model", "unet",
                                  str(tmp_path / "a.png"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    mask = cv2.imread(str(tmp_path / "out" / "a_mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, predict_tiled(unet, normalize(raw), TILE).argmax(-1) * 255)
    status = runner.invoke(main, ["serving-status", "--server", server.url, "--model", "unet"])
    assert status.exit_code == 0, status.output
    assert "version 1: AVAILABLE" in status.output
    assert "predict_png(image_bytes: string[-1]) -> height: int32[-1]" in status.output
    missing = runner.invoke(main, ["predict", "--server", server.url, "--model", "nope",
                                   str(tmp_path / "a.png"), "-o", str(tmp_path / "out2")])
    assert missing.exit_code == 1 and "404" in missing.output and "Traceback" not in missing.output
    assert len(missing.output.strip().splitlines()) <= 2


def test_export_killed_halfway_leaves_no_version(tmp_path):
    """SIGKILL while the SavedModel is being written: no numeric folder for TF Serving to load."""
    import signal
    import time

    script = (
        "import sys\n"
        "from keras_unet import build_unet, export_saved_model\n"
        "export_saved_model(build_unet(filters=64), sys.argv[1], 'big')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = tmp_path / "big"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if base.is_dir() and any(p.name.startswith(".partial") for p in base.iterdir()):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the export finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [p.name for p in base.iterdir() if p.name.isdigit()] == []


# --------------------------------------------------------------------------------------------
# predict_png reads a PNG as keras_unet.images.read_stack does (issue 23)


def test_png_signature_drops_a_constant_alpha_and_refuses_what_the_reader_refuses(
        unet, exported, rng):
    raw = rng.integers(0, 256, (40, 52)).astype(np.uint8)
    expected = predict_tiled(unet, normalize(raw), TILE).argmax(-1) * 255

    def mask(png_pixels):
        png = cv2.imencode(".png", png_pixels)[1].tobytes()
        out = session_run(exported, "predict_png", {"image_bytes": np.array([png], object)})
        return cv2.imdecode(np.frombuffer(out["mask_png_bytes"][0], np.uint8),
                            cv2.IMREAD_UNCHANGED)

    opaque = np.dstack([raw, raw, raw, np.full_like(raw, 255)])  # grey stored as RGBA
    np.testing.assert_array_equal(mask(opaque), expected)
    varying = opaque.copy()
    varying[0, 0, 3] = 7
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha"):
        mask(varying)
    colour = np.dstack([raw, raw // 2, raw])
    with pytest.raises(tf.errors.InvalidArgumentError, match="takes 1-channel images"):
        mask(colour)


def test_png_signature_of_an_rgb_model_takes_grey_as_three_equal_channels(tmp_path, rng):
    rgb_unet = build_unet((None, None, 3), depth=3, filters=2)
    rgb_unet.get_layer("logits").bias.assign([0.0, 0.02])
    export = export_saved_model(rgb_unet, tmp_path, "rgb", tile_size=TILE, batch_size=2)
    raw = rng.integers(0, 256, (30, 36)).astype(np.uint8)
    png = cv2.imencode(".png", raw)[1].tobytes()  # a 1-channel PNG
    out = session_run(export, "predict_png", {"image_bytes": np.array([png], object)})
    mask = cv2.imdecode(np.frombuffer(out["mask_png_bytes"][0], np.uint8), cv2.IMREAD_UNCHANGED)
    rgb = np.dstack([raw] * 3)  # what predict does with it
    expected = predict_tiled(rgb_unet, normalize(rgb), TILE).argmax(-1) * 255
    np.testing.assert_array_equal(mask, expected)

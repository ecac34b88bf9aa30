import os

import numpy as np
import pytest

from keras_unet._compat import tf
from keras_unet.preprocess import Normalizer, normalize
from keras_unet.export import export_saved_model, next_version
from keras_unet.model import Geometry, build_unet
from keras_unet.preprocess import mirror_pad


@pytest.fixture(scope="module")
def unet():
    return build_unet(depth=3, filters=4)


def reference(model, image, geo):
    """Whole-image prediction in NumPy/Keras: normalise, mirror-pad to a valid size, crop."""
    h, w = image.shape[:2]
    m = geo.margin
    in_h, in_w = (geo.nearest(n + 2 * m)[1] for n in (h, w))
    padded = mirror_pad(normalize(image), (m, in_h - h - m, m, in_w - w - m))
    return model(padded[None]).numpy()[0, :h, :w]


def test_export_loads_and_matches_keras(unet, tmp_path, rng):
    path = export_saved_model(unet, tmp_path, "unet")
    assert path == tmp_path / "unet" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables" / "variables.index").is_file()
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    assert set(serve.structured_outputs) == {"probabilities", "mask"}
    geo = Geometry(3)
    for h, w in [(52, 52), (37, 61), (100, 20)]:  # valid size, odd sizes, tall and thin
        image = (rng.random((h, w, 1)) * 255).astype(np.float32)
        out = serve(images=tf.constant(image[None]))
        assert out["probabilities"].shape == (1, h, w, 2)
        assert out["mask"].shape == (1, h, w) and out["mask"].dtype == tf.int32
        expected = reference(unet, image, geo)
        np.testing.assert_allclose(out["probabilities"].numpy()[0], expected, atol=1e-5)
        np.testing.assert_array_equal(out["mask"].numpy()[0], expected.argmax(-1))


def test_versions_are_atomic_and_not_overwritten(unet, tmp_path):
    first = export_saved_model(unet, tmp_path, "m")
    second = export_saved_model(unet, tmp_path, "m")
    assert (first.name, second.name) == ("1", "2")
    assert next_version(tmp_path / "m") == 3
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_saved_model(unet, tmp_path, "m", version=1)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    export_saved_model(unet, tmp_path, "m", version=1, overwrite=True)
    assert (first / "saved_model.pb").stat().st_mtime_ns != stamp
    # nothing but the integer versions is left behind
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]


def test_failed_export_leaves_no_version(unet, tmp_path, monkeypatch):
    """An export that dies halfway leaves neither a numeric version nor a partial folder."""
    import keras_unet.export as export_module

    real_archive = export_module.keras.export.ExportArchive

    class HalfWritten:  # the real archive, but writing dies after the variables folder
        def __init__(self):
            self.inner = real_archive()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def write_out(self, path, **kwargs):
            (tmp_path / "partial_seen").write_text(path)
            os.makedirs(os.path.join(path, "variables"))
            raise RuntimeError("killed while writing variables")

    monkeypatch.setattr(export_module.keras.export, "ExportArchive", HalfWritten)
    with pytest.raises(RuntimeError, match="killed"):
        export_saved_model(unet, tmp_path, "m")
    assert "partial" in (tmp_path / "partial_seen").read_text()
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "sp ace"])
def test_bad_names(unet, tmp_path, name):
    with pytest.raises(ValueError, match="model name"):
        export_saved_model(unet, tmp_path, name)


def test_bad_version(unet, tmp_path):
    with pytest.raises(ValueError, match="positive integer"):
        export_saved_model(unet, tmp_path, "m", version=0)


def test_fixed_normalisation_uses_the_training_scale(tmp_path, rng):
    """A model trained on 16-bit images with "fixed" normalisation gets raw 16-bit values."""
    net = build_unet(depth=2, filters=2, normalizer=Normalizer("fixed", 65535.0))
    path = export_saved_model(net, tmp_path, "m16")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    image = rng.integers(0, 65535, (26, 26, 1)).astype(np.uint16)
    out = serve(images=tf.constant(image[None].astype(np.float32)))["probabilities"].numpy()[0]
    m = Geometry(2).margin
    expected = net(mirror_pad(normalize(image, "fixed"), m)[None]).numpy()[0]
    np.testing.assert_allclose(out, expected, atol=1e-5)

import numpy as np
import pytest

import keras_unet
from keras_unet._compat import keras
from keras_unet.model import Geometry, build_unet, geometry_of, nearest_valid_sizes, output_size


def test_paper_network():
    model = build_unet()
    assert model.count_params() == 31_030_658
    convs = [layer for layer in model.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    kinds = [(type(c).__name__, c.kernel_size) for c in convs]
    assert len(convs) == 23
    assert kinds.count(("Conv2D", (3, 3))) == 18
    assert kinds.count(("Conv2DTranspose", (2, 2))) == 4
    assert kinds.count(("Conv2D", (1, 1))) == 1
    assert output_size(572) == 388
    assert Geometry().margin == 92
    assert build_unet((572, 572, 1)).output_shape == (None, 388, 388, 2)


def test_paper_crops_and_lowest_resolution():
    geo = Geometry()
    assert [geo.skip_crop(level) for level in range(4)] == [88, 40, 16, 4]
    model = build_unet((572, 572, 1), filters=4)
    assert model.get_layer("bottleneck_relu2").output.shape[1:3] == (28, 28)
    assert model.get_layer("down3_pool").output.shape[1:3] == (32, 32)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("filters", [2, 4])
def test_output_shape_matches_arithmetic(depth, padding, filters):
    geo = Geometry(depth, padding)
    model = build_unet((None, None, 2), n_classes=3, depth=depth, filters=filters, padding=padding)
    for size in geo.valid_sizes(max_size=200)[:3]:
        x = np.zeros((1, size, size + geo.factor, 2), np.float32)
        y = model(x)
        expected = (1, geo.output_size(size), geo.output_size(size + geo.factor), 3)
        assert tuple(y.shape) == expected
        if padding == "same":
            assert expected[1] == size


def test_geometry_closed_forms():
    for depth in range(1, 7):
        geo = Geometry(depth)
        assert geo.margin == 6 * 2 ** (depth - 1) - 4
        for size in geo.valid_sizes(max_size=600):
            assert size - geo.output_size(size) == 2 * geo.margin


@pytest.mark.parametrize("depth,padding", [(5, "valid"), (3, "valid"), (4, "same")])
def test_nearest_valid_sizes_bracket(depth, padding, rng):
    geo = Geometry(depth, padding)
    valid = set(geo.valid_sizes(max_size=2000))
    for size in rng.integers(1, 1500, 50):
        lower, upper = nearest_valid_sizes(int(size), depth, padding)
        assert upper in valid and upper >= size
        assert lower is None or (lower in valid and lower <= size)
        between = [v for v in valid if (lower or 0) < v < upper]
        assert between == []


def test_invalid_size_names_nearest():
    with pytest.raises(ValueError, match="556 or 572"):
        output_size(570)
    with pytest.raises(ValueError, match="nearest valid sizes: 188 \\(the smallest\\)"):
        output_size(100)
    with pytest.raises(ValueError, match="input height 570"):
        build_unet((570, 572, 1))


def test_invalid_size_at_call_time_is_a_value_error_not_negative_dimension():
    model = build_unet(depth=3, filters=2)
    with pytest.raises(ValueError, match="nearest valid sizes: 44 or 48") as info:
        model(np.zeros((1, 45, 44, 1), np.float32))
    assert "Negative dimension" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"padding": "full"}, "padding"),
        ({"depth": 0}, "depth"),
        ({"filters": 0}, "filters"),
        ({"dropout": 1.0}, "dropout"),
        ({"input_shape": (64, 64)}, "input_shape"),
        ({"input_shape": (None, None, 0)}, "channels"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_unet(**kwargs)


def test_he_init_and_dropout():
    model = build_unet(filters=64, depth=3)
    kernel = model.get_layer("down1_conv2").kernel.numpy()  # fan-in 9 * 128
    assert kernel.std() == pytest.approx(np.sqrt(2 / (9 * 128)), rel=0.1)
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert names == ["down1_dropout", "bottleneck_dropout"]
    assert [layer for layer in build_unet(dropout=0, depth=2, filters=2).layers
            if isinstance(layer, keras.layers.Dropout)] == []


def test_batch_norm_option():
    model = build_unet(depth=2, filters=4, batch_norm=True)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_probabilities_sum_to_one(rng):
    model = build_unet(depth=2, filters=4, n_classes=3)
    y = model(rng.random((2, 26, 34, 1)).astype(np.float32)).numpy()
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_keras_round_trip_without_custom_objects(tmp_path, rng):
    model = build_unet(depth=3, filters=4)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.random((1, 52, 60, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert geometry_of(loaded) == Geometry(3, "valid")


def test_keras_file_loads_in_a_clean_process(tmp_path):
    """Only `import keras_unet` is needed before keras.models.load_model, no custom_objects."""
    import subprocess
    import sys

    path = tmp_path / "unet.keras"
    build_unet(depth=2, filters=2).save(path)
    code = (
        "import keras_unet, keras; m = keras.models.load_model(%r); "
        "print(type(m.get_layer('size_guard')).__name__)" % str(path)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("InputSizeGuard")


def test_public_api():
    for name in keras_unet.__all__:
        assert getattr(keras_unet, name) is not None

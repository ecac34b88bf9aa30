import numpy as np
import pytest

from keras_unet.preprocess import mirror_indices, mirror_pad, tf_mirror_pad


@pytest.mark.parametrize("n,pad", [(5, 3), (5, 4), (5, 12), (2, 7), (100, 92), (3, 0)])
def test_mirror_pad_matches_numpy_reflect(n, pad, rng):
    image = rng.random((n, n + 1, 2))
    ref = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(mirror_pad(image, pad), ref)


def test_single_pixel_axis_repeats():
    assert mirror_indices(1, 3, 2).tolist() == [0] * 6


@pytest.mark.parametrize("pads", [(3, 5, 0, 9), (92, 100, 92, 7), (1, 1, 1, 1)])
def test_tf_mirror_pad_matches_numpy(pads, rng):
    image = rng.random((7, 11, 3)).astype(np.float32)
    ours = tf_mirror_pad(image[None], *pads).numpy()[0]
    np.testing.assert_array_equal(ours, mirror_pad(image, pads))


# ---- overlap-tile prediction ----------------------------------------------------------------

from keras_unet.model import Geometry, build_unet  # noqa: E402
from keras_unet.predict import Predictor  # noqa: E402
from keras_unet.tiling import default_tile_size, plan_axis, predict_tiled  # noqa: E402


@pytest.fixture(scope="module")
def valid_net():
    return build_unet((None, None, 2), depth=3, filters=4, n_classes=3)


@pytest.mark.parametrize("shape,tile", [((70, 90), 44), ((37, 100), 52), ((100, 37), 60),
                                        ((130, 61), None), ((2, 2), None), ((1, 7), None)])
def test_tiled_equals_whole_image_for_valid_padding(valid_net, shape, tile, rng):
    geo = Geometry(3)
    image = rng.random(shape + (2,)).astype(np.float32)
    tiled = predict_tiled(valid_net, image, tile_size=tile, batch_size=3)
    assert tiled.shape == shape + (3,)
    t = tile or default_tile_size(geo, shape)
    py, px = plan_axis(shape[0], t, geo), plan_axis(shape[1], t, geo)
    assert py.stride % geo.factor == 0
    padded = mirror_pad(image, (py.pad_before, py.pad_after, px.pad_before, px.pad_after))
    whole = valid_net(padded[None]).numpy()[0, : shape[0], : shape[1]]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_paper_net_tiles_stride_384():
    plan = plan_axis(1000, 572, Geometry())
    assert (plan.stride, plan.count, plan.pad_before) == (384, 3, 92)
    assert Geometry().is_valid((plan.count - 1) * plan.stride + plan.tile)


def seam_ratio(pred, starts):
    """Mean jump across tile boundaries over the mean jump between neighbouring rows elsewhere."""
    jumps = np.abs(np.diff(pred, axis=0)).mean(axis=(1, 2))
    at = [s - 1 for s in starts if 0 < s < pred.shape[0]]
    rest = np.delete(jumps, at)
    return jumps[at].mean() / rest.mean()


def tile_edges(plan):
    """Rows (image coordinates) where a same-padding tile starts or ends."""
    starts = [i * plan.stride - plan.pad_before for i in range(1, plan.count)]
    ends = [i * plan.stride + plan.tile - plan.pad_before for i in range(plan.count - 1)]
    return sorted(set(starts + ends))


def test_same_padding_blends_without_seams():
    from keras_unet._compat import keras

    keras.utils.set_random_seed(0)  # a fixed random network; at seed 0 hard seams show clearly
    net = build_unet(depth=3, filters=4, padding="same")
    image = np.random.default_rng(0).random((160, 96, 1)).astype(np.float32)
    geo = Geometry(3, "same")
    blended = predict_tiled(net, image, tile_size=48, overlap=16)
    assert blended.shape == (160, 96, 2)
    hard = predict_tiled(net, image, tile_size=48, overlap=0)  # for contrast: no blending
    assert seam_ratio(hard, tile_edges(plan_axis(160, 48, geo, 0))) > 1.5
    assert seam_ratio(blended, tile_edges(plan_axis(160, 48, geo, 16))) < 1.1


def test_tta_with_a_symmetric_model_equals_no_tta(rng):
    """A network of 1x1 convolutions commutes with flips and rotations: TTA must not change it."""
    from keras_unet._compat import keras

    inputs = keras.Input((None, None, 1))
    x = keras.layers.MaxPooling2D(1)(inputs)  # geometry_of needs a pool count: depth 2
    x = keras.layers.UpSampling2D(1)(x)
    x = keras.layers.Conv2D(4, 1, activation="relu", padding="same")(x)
    out = keras.layers.Conv2D(2, 1, activation="softmax", padding="same")(x)
    model = keras.Model(inputs, out)
    image = rng.random((30, 41, 1)).astype(np.float32)
    np.testing.assert_allclose(predict_tiled(model, image, tta=True),
                               predict_tiled(model, image, tta=False), atol=1e-6)


def test_tta_averages_the_eight_transforms(valid_net, rng):
    image = rng.random((40, 40, 2)).astype(np.float32)
    plain = predict_tiled(valid_net, image)
    averaged = predict_tiled(valid_net, image, tta=True)
    assert averaged.shape == plain.shape
    assert not np.allclose(averaged, plain)  # a random net is not symmetric
    np.testing.assert_allclose(averaged.sum(-1), 1, rtol=1e-5)


def test_tiling_bad_input(valid_net):
    with pytest.raises(ValueError, match="takes 2-channel images, but this image has 1"):
        predict_tiled(valid_net, np.zeros((50, 50), np.float32))
    with pytest.raises(ValueError, match="tile size 45 .* 44 or 48"):
        predict_tiled(valid_net, np.zeros((50, 50, 2), np.float32), tile_size=45)


def test_predictor_reads_keras_and_rejects_others(tmp_path, rng):
    net = build_unet(depth=2, filters=2)
    net.save(tmp_path / "m.keras")
    predictor = Predictor(tmp_path / "m.keras")
    image = (rng.random((33, 47)) * 255).astype(np.uint8)
    assert predictor(image).shape == (33, 47, 2)
    with pytest.raises(FileNotFoundError, match="neither a .keras model nor a SavedModel"):
        Predictor(tmp_path / "nothing")
    with pytest.raises(ValueError, match="tile size"):
        Predictor(tmp_path / "m.keras", tile_size=35)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 40), (15, 15)])
def test_the_default_tile_fits_an_image_of_a_few_pixels(depth, shape):
    """An image smaller than the network's stride still gets a tile it can be predicted with."""
    geo = Geometry(depth)
    tile = default_tile_size(geo, shape)
    for size in shape:
        plan = plan_axis(size, tile, geo)
        assert plan.count >= 1 and (plan.count - 1) * plan.stride + plan.tile >= size

import numpy as np
import pytest
from scipy import ndimage as ndi

from keras_unet import augment
from keras_unet._compat import tf
from keras_unet.augment import (
    Augmentation,
    cubic_weights,
    dense_field,
    elastic_deform,
    random_grid,
    warp,
)
from keras_unet.data import (
    TrainingSet,
    demo_data,
    split_validation,
    training_dataset,
    validation_tiles,
)
from keras_unet.model import Geometry


def smooth_field(shape, amplitude, seed):
    """A smooth random displacement field (H, W, 2) in px, from the public pieces."""
    return dense_field(random_grid(seed, (4, 5), amplitude), *shape).numpy()


def scipy_warp(source, field, order):
    yy, xx = np.mgrid[: field.shape[0], : field.shape[1]].astype(np.float64)
    coords = [yy + field[..., 0], xx + field[..., 1]]
    return ndi.map_coordinates(source, coords, order=order, mode="nearest")


@pytest.mark.parametrize("shape,amplitude,seed", [((64, 80), 3.0, 0), ((100, 100), 10.0, 1),
                                                  ((57, 33), 6.0, 2)])
def test_bilinear_warp_matches_scipy_away_from_borders(rng, shape, amplitude, seed):
    image = rng.random(shape).astype(np.float32)
    field = smooth_field(shape, amplitude, seed)
    ours = warp(image, field, order=1).numpy()
    ref = scipy_warp(image.astype(np.float64), field.astype(np.float64), 1)
    # away from the borders: where no sampling point needs clamping
    b = int(np.ceil(np.abs(field).max())) + 1
    interior = np.zeros(shape, bool)
    interior[b:-b, b:-b] = True
    assert interior.sum() > 100
    np.testing.assert_allclose(ours[interior], ref[interior], atol=1e-4)


def test_nearest_warp_matches_scipy_order_0(rng):
    labels = rng.integers(0, 50, (70, 90)).astype(np.int32)
    field = smooth_field((70, 90), 8.0, 3)
    ours = warp(labels, field, order=0).numpy()
    ref = scipy_warp(labels, field.astype(np.float64), 0)
    b = int(np.ceil(np.abs(field).max())) + 1
    np.testing.assert_array_equal(ours[b:-b, b:-b], ref[b:-b, b:-b])
    assert ours.dtype == np.int32


def test_multichannel_warp_is_per_channel(rng):
    image = rng.random((40, 50, 3)).astype(np.float32)
    field = smooth_field((40, 50), 4.0, 4)
    ours = warp(image, field).numpy()
    for ch in range(3):
        np.testing.assert_allclose(ours[..., ch], warp(image[..., ch], field).numpy(), atol=1e-6)


def test_zero_field_is_identity(rng):
    image = rng.random((31, 45, 2)).astype(np.float32)
    labels = rng.integers(0, 9, (31, 45)).astype(np.int32)
    zero = np.zeros((31, 45, 2), np.float32)
    np.testing.assert_array_equal(warp(image, zero, 1).numpy(), image)
    np.testing.assert_array_equal(warp(labels, zero, 0).numpy(), labels)


def test_deformed_labels_keep_only_their_ids():
    _, labels = demo_data(1, 96, seed=5)
    labels = labels[0] * 7  # sparse ids: an interpolating warp would invent new ones
    image = labels.astype(np.float32)[..., None]
    _, out, wt = elastic_deform(image, labels, labels.astype(np.float32), seed=11)
    assert set(np.unique(out.numpy())) <= set(np.unique(labels))
    # weights were resampled with the very same nearest-neighbour lookups as the labels
    np.testing.assert_array_equal(wt.numpy(), out.numpy().astype(np.float32))
    assert not np.array_equal(out.numpy(), labels)


def test_grid_statistics_and_seeds():
    grids = np.stack([random_grid(i, (3, 3), 10.0).numpy() for i in range(300)])
    assert grids.shape == (300, 3, 3, 2)
    assert abs(grids.std() - 10.0) < 0.6 and abs(grids.mean()) < 0.6
    np.testing.assert_array_equal(random_grid(5).numpy(), random_grid(5).numpy())
    assert not np.array_equal(random_grid(5).numpy(), random_grid(6).numpy())
    with pytest.raises(ValueError, match="at least 2 x 2"):
        random_grid(0, (1, 3))


def keys_reference(n_points, size):
    """NumPy bicubic (Keys, a = -0.5) interpolation matrix with edge-repeated control points."""
    def kernel(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        if t < 2:
            return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
        return 0.0

    m = np.zeros((size, n_points))
    for y in range(size):
        t = y * (n_points - 1) / (size - 1)
        base = int(np.floor(t))
        for k in (-1, 0, 1, 2):
            m[y, min(max(base + k, 0), n_points - 1)] += kernel(t - base - k)
    return m


@pytest.mark.parametrize("n_points,size", [(3, 572), (3, 10), (5, 101), (2, 7)])
def test_bicubic_weights_match_numpy_reference(n_points, size):
    ours = cubic_weights(n_points, size).numpy()
    np.testing.assert_allclose(ours, keys_reference(n_points, size), atol=1e-5)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)


def test_dense_field_passes_through_the_control_points():
    grid = random_grid(3).numpy()
    field = dense_field(grid, 101, 61).numpy()
    for i, y in enumerate((0, 50, 100)):
        for j, x in enumerate((0, 30, 60)):
            np.testing.assert_allclose(field[y, x], grid[i, j], atol=1e-4)
    const = dense_field(np.full((3, 3, 2), 2.5, np.float32), 20, 30).numpy()
    np.testing.assert_allclose(const, 2.5, atol=1e-5)


def position_set(h=70, w=90, channels=2):
    """Image channels hold y and x; labels and weights hold the pixel's id y * w + x."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    image = np.stack([yy, xx][:channels], axis=-1)
    ids = (np.arange(h * w).reshape(h, w)).astype(np.int32)
    return TrainingSet([image], [ids], [ids.astype(np.float32)])


@pytest.mark.parametrize("padding,depth,tile,zoom", [("valid", 2, 44, 0.0), ("valid", 3, 60, 0.0),
                                                     ("same", 3, 40, 0.0), ("valid", 2, 44, 0.5)])
def test_augmented_tiles_line_up_with_the_network_output(padding, depth, tile, zoom):
    geo = Geometry(depth, padding)
    aug = Augmentation(brightness=0, contrast=0, rotation=15, shift=5, zoom=zoom)
    w = 90
    batch = next(iter(training_dataset(position_set(w=w), geo, tile, 4, seed=2, augmentation=aug)))
    m, out = geo.margin, geo.output_size(tile)
    labels = batch["labels"].numpy()
    np.testing.assert_array_equal(labels.astype(np.float32), batch["weights"].numpy())
    centre = batch["image"].numpy()[:, m:m + out, m:m + out]
    # bilinear image vs nearest labels at the same sampling point: within half a pixel
    inside = batch["weights"].numpy() > 0
    assert np.all(np.abs(centre[..., 0] - labels // w)[inside] <= 0.5 + 1e-3)
    assert np.all(np.abs(centre[..., 1] - labels % w)[inside] <= 0.5 + 1e-3)
    # and it was really deformed: not a plain cut of the image
    grid_like = np.diff(centre[..., 1], axis=2)
    assert not np.allclose(grid_like, 1.0, atol=1e-3)


@pytest.mark.parametrize("zoom", [0.25, 0.6])
def test_zoom_scales_the_sampling_grid_about_the_tile_centre(zoom):
    """Zoom only: the tile samples a square grid whose spacing (the zoom factor) lies in
    [1/(1+zoom), 1+zoom], centred where the plain tile is centred."""
    aug = Augmentation(elastic=False, flips=False, rotation=0, shift=0, brightness=0,
                       contrast=0, zoom=zoom)
    assert aug.geometric
    factors = []
    for seed in range(40):
        yy, xx = (t.numpy() for t in augment.coordinates(aug, seed, 33))
        step = np.diff(xx, axis=1)
        np.testing.assert_allclose(step, step[0, 0], rtol=1e-4)  # uniform, no rotation
        np.testing.assert_allclose(np.diff(yy, axis=0), step[0, 0], rtol=1e-4)
        np.testing.assert_allclose([yy[16, 16], xx[16, 16]], [16, 16], atol=1e-4)  # centre fixed
        factors.append(step[0, 0])
        # every point read lies within the context the tiles are padded with
        reach = aug.reach(33)
        assert min(yy.min(), xx.min()) >= -reach and max(yy.max(), xx.max()) <= 32 + reach
    factors = np.array(factors, np.float64)
    assert factors.min() >= 1 / (1 + zoom) - 1e-5 and factors.max() <= 1 + zoom + 1e-5
    assert factors.min() < 1 < factors.max()  # both ways


def test_zoom_off_keeps_the_tiles():
    """Without zoom, the tiles are those of the rotation-and-shift formula alone (the zoom has its
    own random draw, so runs without it keep their tiles); with it, they differ."""
    aug = Augmentation(elastic=False, rotation=20, shift=5, zoom=0.0)
    yy, xx = (t.numpy() for t in augment.coordinates(aug, 7, 40))
    u = tf.random.stateless_uniform([3], tf.constant([7, 0], tf.int64) + [0, 11], -1.0, 1.0).numpy()
    angle, c = u[0] * np.radians(20), 19.5
    gy, gx = np.mgrid[:40, :40].astype(np.float64) - c
    np.testing.assert_allclose(yy, c + np.cos(angle) * gy - np.sin(angle) * gx + u[1] * 5, atol=1e-4)
    np.testing.assert_allclose(xx, c + np.sin(angle) * gy + np.cos(angle) * gx + u[2] * 5, atol=1e-4)
    zoomed = augment.coordinates(Augmentation(elastic=False, rotation=20, shift=5, zoom=0.3), 7, 40)
    assert not np.allclose(yy, zoomed[0].numpy())


def test_augmented_tiles_same_seed_same_tiles():
    geo = Geometry(2)
    data = position_set()
    aug = Augmentation()

    def tiles(seed):
        ds = training_dataset(data, geo, 44, 2, seed=seed, augmentation=aug)
        return np.stack([b["image"].numpy() for b in ds.take(2)])

    np.testing.assert_array_equal(tiles(3), tiles(3))
    assert not np.array_equal(tiles(3), tiles(4))


def test_each_augmentation_can_be_switched_off():
    geo = Geometry(2)
    data = position_set(channels=1)
    plain = next(iter(training_dataset(data, geo, 44, 8, seed=1)))
    off = next(iter(training_dataset(data, geo, 44, 8, seed=1, augmentation=Augmentation.off())))
    np.testing.assert_array_equal(plain["image"].numpy(), off["image"].numpy())
    assert not Augmentation.off().geometric
    only_flips = Augmentation(elastic=False, rotation=0, shift=0, zoom=0, brightness=0, contrast=0)
    flipped = next(iter(training_dataset(data, geo, 44, 8, seed=1, augmentation=only_flips)))
    # flips only permute pixels of the plain tile: same values, other places
    for a, b in zip(plain["image"].numpy(), flipped["image"].numpy()):
        np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
    only_grey = Augmentation(elastic=False, flips=False, rotation=0, shift=0, zoom=0)
    grey = next(iter(training_dataset(data, geo, 44, 8, seed=1, augmentation=only_grey)))
    np.testing.assert_array_equal(grey["labels"].numpy(), plain["labels"].numpy())
    assert not np.allclose(grey["image"].numpy(), plain["image"].numpy())


@pytest.mark.parametrize("field,value,match", [("elastic_grid", 1, "grid"), ("shift", -1, "shift"),
                                               ("contrast", 1.5, "contrast"),
                                               ("zoom", -0.1, "zoom"), ("zoom", 1.5, "zoom")])
def test_bad_augmentation_settings(field, value, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**{field: value}).validate()
    with pytest.raises(ValueError, match="unknown augment key"):
        Augmentation.from_dict({"elastik": True})


def test_validation_tiles_cover_every_pixel_once_unaugmented():
    geo = Geometry(2)
    data = position_set(50, 61)
    tiles = validation_tiles(data, geo, 44)
    out, m = geo.output_size(44), geo.margin
    assert tiles["labels"].shape[1:] == (out, out)
    # every pixel id appears with weight > 0 exactly once
    counted = tiles["labels"][tiles["weights"] > 0]
    assert sorted(counted.tolist()) == list(range(1, 50 * 61))  # id 0 has weight 0 itself
    # the tiles are plain cuts: the image centre equals the labels' positions
    centre = tiles["image"][:, m:m + out, m:m + out]
    inside = tiles["weights"] > 0
    np.testing.assert_array_equal(centre[..., 0][inside], (tiles["labels"] // 61)[inside])


def test_split_validation():
    train, val = split_validation(10, 0.2, seed=1)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_validation(10, 0.2, seed=1) == (train, val)
    assert split_validation(3, 0.01) [1] != []  # at least one validation image
    with pytest.raises(ValueError, match="at least 2 images"):
        split_validation(1, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_validation(5, 1.0)


# --------------------------------------------------------------------------------------------
# Colour: stains, polarity, channels

COLOUR_ONLY = dict(elastic=False, flips=False, rotation=0, shift=0, zoom=0, brightness=0,
                   contrast=0)


def he_like(rng, shape=(20, 24)):
    """RGB colours in (0, 1] mixed from haematoxylin and eosin, as stained tissue is."""
    from skimage.color import hed2rgb

    hed = np.zeros(shape + (3,))
    hed[..., 0] = rng.uniform(0.0, 0.15, shape)
    hed[..., 1] = rng.uniform(0.0, 0.1, shape)
    return np.clip(hed2rgb(hed), 1e-3, 1).astype(np.float32)


def test_rgb_to_hed_is_skimage_rgb2hed(rng):
    from skimage.color import hed2rgb, rgb2hed

    rgb = he_like(rng)
    ours = augment.rgb_to_hed(rgb).numpy()
    assert ours.shape == rgb.shape and ours.dtype == np.float32
    np.testing.assert_allclose(np.maximum(ours, 0), rgb2hed(rgb), atol=2e-5)
    np.testing.assert_allclose(augment.hed_to_rgb(ours).numpy(), rgb, atol=2e-5)
    np.testing.assert_allclose(augment.hed_to_rgb(np.maximum(ours, 0)).numpy(),
                               hed2rgb(rgb2hed(rgb)), atol=2e-5)


def test_hed_jitter_scales_and_shifts_each_stain(rng):
    from skimage.color import hed2rgb

    rgb = he_like(rng)
    scale, shift = np.float32([1.2, 0.9, 1.0]), np.float32([0.02, -0.01, 0.0])
    ours = augment.hed_jitter(rgb, scale, shift).numpy()
    hed = augment.rgb_to_hed(rgb).numpy()
    np.testing.assert_allclose(ours, hed2rgb(hed * scale + shift), atol=2e-5)
    np.testing.assert_allclose(augment.hed_jitter(rgb, np.ones(3, np.float32),
                                                  np.zeros(3, np.float32)).numpy(), rgb,
                               atol=2e-5)


@pytest.mark.parametrize("mode", ["image", "fixed", "percentile"])
def test_inversion_in_normalised_units(rng, mode):
    from keras_unet.preprocess import Normalizer

    raw = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    norm = Normalizer(mode, 255.0, 3)
    aug = Augmentation(**COLOUR_ONLY, invert=1.0)
    ours = augment.colour(aug, 3, tf.constant(norm(raw)), mode=mode).numpy()
    assert ours.dtype == np.float32
    if mode == "percentile":  # the 1st and 99.8th percentiles swap ends: 1 - x
        np.testing.assert_allclose(ours, 1 - norm(raw), atol=1e-6)
    else:  # exact: the inverted raw image, normalised
        np.testing.assert_allclose(ours, norm(255 - raw), atol=1e-4)
    kept = augment.colour(Augmentation(**COLOUR_ONLY, invert=0.0), 3, tf.constant(norm(raw)),
                          mode=mode).numpy()
    np.testing.assert_array_equal(kept, norm(raw))


def test_channel_shuffle_and_greyscale(rng):
    x = rng.normal(size=(12, 12, 3)).astype(np.float32)
    shuffled = augment.colour(Augmentation(**COLOUR_ONLY, channel_shuffle=True), 5,
                              tf.constant(x)).numpy()
    assert shuffled.shape == x.shape
    order = [int(np.argmin([np.abs(shuffled[..., i] - x[..., j]).max() for j in range(3)]))
             for i in range(3)]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_array_equal(shuffled, x[..., order])
    grey = augment.colour(Augmentation(**COLOUR_ONLY, greyscale=1.0), 5, tf.constant(x)).numpy()
    np.testing.assert_allclose(grey, np.repeat(x.mean(-1, keepdims=True), 3, -1), atol=1e-6)
    # per-image normalisation: the image's statistics move as the tile's did
    grey = augment.colour(Augmentation(**COLOUR_ONLY, greyscale=1.0), 5, tf.constant(x),
                          mode="image").numpy()
    y = np.repeat(x.mean(-1, keepdims=True), 3, -1)
    np.testing.assert_allclose(grey, (y - y.mean() + x.mean()) * x.std() / y.std(), atol=1e-4)
    assert grey.std() == pytest.approx(x.std(), rel=1e-4)
    assert np.ptp(grey, axis=-1).max() < 1e-5


def test_stain_shift_is_in_optical_density_units(rng):
    """--hed-jitter S shifts each density by at most S in optical density (natural log, as in
    Tellez et al.'s code), not S in skimage's units (13.8 times as much)."""
    s = 0.2
    rgb = np.broadcast_to(np.float32([0.8, 0.5, 0.7]), (8, 8, 3))  # fixed: x = raw / 1
    before = augment.rgb_to_hed(rgb).numpy()[0, 0] * augment.OD_PER_SKIMAGE_UNIT
    changes = []
    for i in range(200):
        out = augment.colour(Augmentation(**COLOUR_ONLY, hed_jitter=s), [i, 7], rgb,
                             mode="fixed").numpy()
        after = augment.rgb_to_hed(out).numpy()[0, 0] * augment.OD_PER_SKIMAGE_UNIT
        changes.append(after - before)
    changes = np.abs(np.array(changes))
    assert (changes <= s * np.abs(before) + s + 1e-4).all()
    assert changes.max() > 0.5 * s  # the shift is used
    assert changes.max() < 2 * s  # and not 13.8 times too strong


def test_stain_augmentation_in_the_tile_pipeline(rng):
    """Tiles of an H&E-like image, normalised per image: with --hed-jitter they differ from the
    plain ones only in colour, and undoing their normalisation gives colours that
    :func:`hed_jitter` can make from the plain tile's."""
    from keras_unet.config import TrainConfig
    from keras_unet.prepare import prepare_training_set

    raw = (he_like(rng, (64, 64)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.int32)
    mask[10:30, 10:30], mask[35:60, 30:55] = 1, 2
    config = TrainConfig(depth=2, tile_size=44)
    data = prepare_training_set([raw], [mask], config)
    assert data.stats and data.scale == 255.0 and data.normalization == "image"
    geo = Geometry(2)
    plain = next(iter(training_dataset(data, geo, 44, 4, 1, Augmentation(**COLOUR_ONLY))))
    stained = next(iter(training_dataset(data, geo, 44, 4, 1,
                                         Augmentation(**COLOUR_ONLY, hed_jitter=0.2))))
    np.testing.assert_array_equal(plain["labels"].numpy(), stained["labels"].numpy())
    a, b = plain["image"].numpy(), stained["image"].numpy()
    assert a.shape == b.shape == (4, 44, 44, 3) and b.dtype == np.float32
    assert not np.allclose(a, b, atol=1e-3)
    assert np.isfinite(b).all()
    # each tile keeps its spread (restandardised) while its colours change
    np.testing.assert_allclose(b.std((1, 2, 3)), a.std((1, 2, 3)), rtol=1e-3)


def test_restandardize_leaves_a_tile_whose_contrast_a_change_took_away(rng):
    """A change that all but flattens a tile (a strong stain shift saturating a dark
    fluorescence tile) is not applied: renormalising it blew its last differences up (DSB 2018
    tiles reached values of 143,000 and the training loss the hundreds)."""
    from keras_unet.augment import MAX_GAIN, restandardize

    before = rng.normal(0.3, 1.0, (16, 16, 3)).astype(np.float32)
    after = before * 0.5 + 2.0  # contrast halved: renormalised as the image would be
    np.testing.assert_allclose(restandardize(before, after).numpy(),
                               (after - after.mean() + before.mean()) * before.std() / after.std(),
                               atol=1e-5)
    for flat in (before / (MAX_GAIN * 1.01), before * 1e-6, np.zeros_like(before)):
        np.testing.assert_array_equal(restandardize(before, flat).numpy(), before)


@pytest.mark.parametrize("field,value,match", [
    ("hed_jitter", 1.0, "hed_jitter must be a number from 0 to 0.999, got 1.0"),
    ("hed_jitter", 2.0, "hed_jitter must be a number from 0 to 0.999, got 2.0"),  # one message
    ("hed_jitter", -0.1, "hed_jitter"),
    ("invert", 1.5, "invert must be a number from 0 to 1, got 1.5"),
    ("greyscale", float("nan"), "greyscale")])
def test_bad_colour_settings(field, value, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**{field: value}).validate()


def test_colour_options_need_colour_images():
    data = position_set(channels=1)
    for option, aug in (("--hed-jitter", Augmentation(hed_jitter=0.05)),
                        ("--channel-shuffle", Augmentation(channel_shuffle=True)),
                        ("--greyscale", Augmentation(greyscale=0.5))):
        with pytest.raises(ValueError, match=option):
            training_dataset(data, Geometry(2), 44, 2, augmentation=aug)

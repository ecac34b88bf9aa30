import cv2
import numpy as np
import pytest

from keras_unet.data import TrainingSet, demo_data, training_dataset
from keras_unet.images import load_pairs, read_image
from keras_unet.preprocess import normalize
from keras_unet.targets import targets_from_mask
from keras_unet.model import Geometry


def test_demo_data_is_deterministic_with_touching_cells():
    images, labels = demo_data(2, (64, 80), seed=5)
    assert images.shape == (2, 64, 80, 1) and images.dtype == np.float32
    assert labels.shape == (2, 64, 80) and labels.dtype == np.int32
    assert 0 <= images.min() and images.max() <= 1
    again = demo_data(2, (64, 80), seed=5)
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(labels, again[1])
    assert not np.array_equal(labels, demo_data(2, (64, 80), seed=6)[1])
    ids = np.unique(labels[0])
    assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))  # consecutive ids
    # touching cells: many cells have a 1 px background line to another cell
    lab = labels[0]
    gap = (lab[:, :-2] > 0) & (lab[:, 1:-1] == 0) & (lab[:, 2:] > 0) & (lab[:, :-2] != lab[:, 2:])
    assert gap.sum() > 10


def test_normalize_modes():
    image = np.array([[0, 255], [255, 0]], np.uint8)
    fixed = normalize(image, "fixed")
    assert fixed.shape == (2, 2, 1) and fixed.max() == 1.0
    per_image = normalize(image)
    assert per_image.mean() == pytest.approx(0) and per_image.std() == pytest.approx(1)
    sixteen = normalize(image.astype(np.uint16) * 257)
    np.testing.assert_allclose(sixteen, per_image, atol=1e-6)
    assert normalize(np.full((3, 3), 7, np.uint8)).max() == 0  # flat image: no division by 0
    with pytest.raises(ValueError, match="normalization"):
        normalize(image, "quantile")


def write_pairs(folder, n=3, size=(40, 48), mask_values=(0, 255)):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"s{i}.png"), rng.integers(0, 255, size, np.uint8))
        mask = np.where(rng.random(size) > 0.5, mask_values[1], mask_values[0]).astype(np.uint8)
        cv2.imwrite(str(folder / "masks" / f"s{i}.png"), mask)
    return folder / "images", folder / "masks"


def test_load_pairs_from_folders(tmp_path):
    images, masks = write_pairs(tmp_path)
    xs, ys, names = load_pairs(images, masks)
    assert names == ["s0.png", "s1.png", "s2.png"]
    assert xs[0].shape == (40, 48, 1) and ys[0].shape == (40, 48)


def test_load_pairs_from_lists_of_paths(tmp_path):
    images, masks = write_pairs(tmp_path)
    xs, ys, names = load_pairs([images / "s2.png", images / "s0.png"],
                               [masks / "s2.png", masks / "s0.png"])
    assert names == ["s2.png", "s0.png"] and len(ys) == 2
    np.testing.assert_array_equal(xs[1], load_pairs(images, masks)[0][0])
    with pytest.raises(ValueError, match="2 image files but 1 mask files"):
        load_pairs([images / "s2.png", images / "s0.png"], [masks / "s2.png"])


def test_load_pairs_lists_unmatched_files(tmp_path):
    images, masks = write_pairs(tmp_path)
    (masks / "s1.png").rename(masks / "other.png")
    with pytest.raises(ValueError, match="images without a mask: s1; masks without an image: other"):
        load_pairs(images, masks)


def test_load_pairs_from_tiff_stacks(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "volume.tif", rng.integers(0, 255, (4, 30, 30), np.uint8))
    tifffile.imwrite(tmp_path / "labels.tif", (rng.random((4, 30, 30)) > 0.5).astype(np.uint8) * 255)
    xs, ys, names = load_pairs(tmp_path / "volume.tif", tmp_path / "labels.tif")
    assert len(xs) == 4 and xs[0].shape == (30, 30, 1) and ys[0].shape == (30, 30)
    assert names[2] == "volume.tif[2]"


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pairs(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_pairs(tmp_path / "empty", tmp_path / "empty")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        read_image(broken)


def test_targets_from_binary_instance_and_class_masks():
    binary = np.zeros((20, 20), np.uint8)
    binary[2:8, 2:8] = 255
    binary[2:8, 9:15] = 255
    classes, weights = targets_from_mask(binary)
    assert set(np.unique(classes)) == {0, 1}
    assert weights[4, 8] > 5  # the 1 px gap between the two objects is heavy
    inst = binary.astype(np.int32) // 255
    inst[2:8, 9:15] = 2
    inst[12:18, 2:8] = 3
    classes, _ = targets_from_mask(inst, mask_type="instance")
    assert classes.max() == 1
    three = np.zeros((20, 20), np.uint8)
    three[2:8, 2:8], three[10:15, 10:15] = 1, 2
    classes, weights = targets_from_mask(three, n_classes=3)
    assert set(np.unique(classes)) == {0, 1, 2}
    with pytest.raises(ValueError, match=r"may hold 0..2, found values \[0, 1, 2, 7\]"):
        three[0, 0] = 7
        targets_from_mask(three, n_classes=3, mask_type="class", source="m.png")
    with pytest.raises(ValueError, match="m.png: expected a 2-D mask"):
        targets_from_mask(np.zeros((3, 3, 3)), source="m.png")


@pytest.mark.parametrize("padding,depth,tile", [("valid", 2, 34), ("valid", 3, 60), ("same", 3, 32)])
def test_tiles_line_up_with_the_network_output(padding, depth, tile):
    """Image pixels encode their position; the labels under the output must be the same positions."""
    geo = Geometry(depth, padding)
    h, w = 70, 90
    pos = np.arange(h * w).reshape(h, w)
    data = TrainingSet([pos[..., None].astype(np.float32)], [pos.astype(np.int32)],
                       [pos.astype(np.float32)])
    ds = training_dataset(data, geo, tile, batch_size=3, seed=1)
    batch = next(iter(ds))
    m, out = geo.margin, geo.output_size(tile)
    assert batch["image"].shape == (3, tile, tile, 1)
    assert batch["labels"].shape == (3, out, out) and batch["weights"].shape == (3, out, out)
    centre = batch["image"].numpy()[:, m:m + out, m:m + out, 0]
    np.testing.assert_array_equal(centre, batch["labels"].numpy())
    np.testing.assert_array_equal(centre, batch["weights"].numpy())


def test_same_seed_same_tiles_and_small_images():
    geo = Geometry(2)
    images, labels = demo_data(2, 12, seed=0)  # smaller than the 18 px output of a 34 px tile
    data = TrainingSet(list(images), list(labels), [np.ones((12, 12), np.float32)] * 2)
    a = [b["image"].numpy() for b in training_dataset(data, geo, 34, seed=7).take(3)]
    b = [b["image"].numpy() for b in training_dataset(data, geo, 34, seed=7).take(3)]
    c = [b["image"].numpy() for b in training_dataset(data, geo, 34, seed=8).take(3)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(a), np.stack(c))
    batch = next(iter(training_dataset(data, geo, 34, batch_size=4)))
    # outside the 12x12 image the labels pad with class 0 and weight 0
    assert batch["weights"].shape == (4, 18, 18)
    assert (batch["weights"].numpy() == 0).sum(axis=(1, 2)).tolist() == [18 * 18 - 144] * 4


def test_invalid_tile_size():
    data = TrainingSet([np.zeros((40, 40, 1), np.float32)], [np.zeros((40, 40), np.int32)],
                       [np.ones((40, 40), np.float32)])
    with pytest.raises(ValueError, match="tile size 35 .* nearest valid sizes: 34 or 36"):
        training_dataset(data, Geometry(2), 35)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (5, 1), (2, 3), (9, 14), (40, 33)])
def test_cut_window_mirrors_and_pads_like_the_padded_image(h, w, rng):
    """Windows anywhere (inside, across one or both edges, far outside) against indexing the
    mirror-padded image of :func:`mirror_indices` (mirrored) or a zero-padded one (labels)."""
    from keras_unet.data import cut_window
    from keras_unet.preprocess import mirror_indices

    image = rng.integers(0, 255, (h, w, 2)).astype(np.uint8)
    for _ in range(40):
        size = int(rng.integers(1, 3 * max(h, w) + 4))
        top, left = (int(v) for v in rng.integers(-2 * size, max(h, w) + size, 2))
        rows = mirror_indices(h, -top, top + size - h)[:size] if top <= 0 else \
            mirror_indices(h, 0, max(0, top + size - h))[top:top + size]
        cols = mirror_indices(w, -left, left + size - w)[:size] if left <= 0 else \
            mirror_indices(w, 0, max(0, left + size - w))[left:left + size]
        np.testing.assert_array_equal(cut_window(image, top, left, size, True),
                                      image[rows[:, None], cols[None, :]])
        zeros = np.zeros((h + 4 * size + 2 * max(h, w), w + 4 * size + 2 * max(h, w), 2),
                         np.uint8)
        o = 2 * size + max(h, w)
        zeros[o:o + h, o:o + w] = image
        np.testing.assert_array_equal(cut_window(image, top, left, size, False),
                                      zeros[o + top:o + top + size, o + left:o + left + size])

"""Same seed, same tiles: the training pipeline against tiles saved from the pipeline as it was
before images were held at their own size (commit 3bc57bd, which padded every image to the
largest and stacked them).

``python tests/test_pipeline_tiles.py`` rewrites ``tests/data/pipeline_tiles.npz`` from the
current code; do that only when a change of the tiles is intended.
"""

from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "pipeline_tiles.npz"

# Each case: settings of the run, raw input sizes (some smaller than an output tile, so padding
# matters), and how many batches to draw.
CASES = {
    "image_augmented": dict(
        config=dict(depth=2, tile_size=44, batch_size=2, seed=5, normalization="image"),
        sizes=[(40, 52), (70, 48), (20, 24)], channels=1, dtype="uint8", steps=3, start=0),
    "fixed_plain_rgb": dict(
        config=dict(depth=2, tile_size=44, batch_size=2, seed=2, normalization="fixed",
                    elastic=False, flips=False, rotation=0.0, shift=0.0, zoom=0.0,
                    brightness=0.0, contrast=0.0, class_weights="balanced"),
        sizes=[(30, 60), (50, 36)], channels=3, dtype="uint16", steps=2, start=7),
    "percentile_zoomed": dict(
        config=dict(depth=2, tile_size=44, batch_size=1, seed=9, normalization="percentile",
                    elastic=False, rotation=30.0, zoom=0.3, w0=5.0, sigma=3.0),
        sizes=[(64, 40), (26, 90)], channels=1, dtype="uint16", steps=3, start=0),
}


def raw_inputs(case: dict, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random images and instance masks of random discs (some touching)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(case["dtype"]).max
    images, masks = [], []
    for h, w in case["sizes"]:
        image = rng.integers(0, top // 3, (h, w, case["channels"])).astype(case["dtype"])
        mask = np.zeros((h, w), np.uint16)
        yy, xx = np.mgrid[:h, :w]
        for k in range(1, 7):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 8)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            mask[disc] = k
            image[disc] += np.asarray(top // 2, case["dtype"])
        images.append(image)
        masks.append(mask)
    return images, masks


def draw(case: dict, images, masks) -> dict[str, np.ndarray]:
    """The tiles today's code draws for ``case`` from the raw inputs."""
    from keras_unet.config import TrainConfig
    from keras_unet.data import training_dataset
    from keras_unet.prepare import prepare_training_set

    config = TrainConfig(**case["config"])
    data = prepare_training_set([x.copy() for x in images], [m.copy() for m in masks], config)
    batches = list(training_dataset(data, config.geometry, config.tile_size, config.batch_size,
                                    config.seed, config.augmentation, case["start"])
                   .take(case["steps"]))
    return {key: np.concatenate([b[key].numpy() for b in batches])
            for key in ("image", "labels", "weights")}


def saved() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return dict(f)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_same_tiles_as_before(name):
    fixture = saved()
    case = CASES[name]
    n = len(case["sizes"])
    images = [fixture[f"{name}/input_image{i}"] for i in range(n)]
    masks = [fixture[f"{name}/input_mask{i}"] for i in range(n)]
    tiles = draw(case, images, masks)
    np.testing.assert_array_equal(tiles["labels"], fixture[f"{name}/labels"])
    np.testing.assert_array_equal(tiles["weights"], fixture[f"{name}/weights"])
    # bit-exact: each tile is normalised with the same float32 arithmetic as the whole image was
    np.testing.assert_array_equal(tiles["image"], fixture[f"{name}/image"])
    assert tiles["labels"].any() and (tiles["weights"] > 1).any()  # the fixture is not trivial


def write_fixture() -> None:
    arrays = {}
    for seed, (name, case) in enumerate(sorted(CASES.items())):
        images, masks = raw_inputs(case, seed)
        for i, (x, m) in enumerate(zip(images, masks)):
            arrays[f"{name}/input_image{i}"] = x
            arrays[f"{name}/input_mask{i}"] = m
        for key, value in draw(case, images, masks).items():
            arrays[f"{name}/{key}"] = value
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **arrays)


if __name__ == "__main__":
    write_fixture()
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")

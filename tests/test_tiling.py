import numpy as np
import pytest

from keras_unet.tiling import mirror_indices, mirror_pad, tf_mirror_pad


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

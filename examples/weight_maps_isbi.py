"""Weight maps of ISBI 2012 masks, side by side with the mask, as PNG.

    python examples/weight_maps_isbi.py ../shared/data/isbi2012 out/

For each of the first three training masks it writes ``out/NN_weights.png``: the mask (white =
cell interior) next to the colour-mapped weight map, where the thin membranes between touching
cells are the brightest pixels.
"""

import sys
from pathlib import Path

import numpy as np

from keras_unet.images import read_mask
from keras_unet.visualize import weight_map_image, write_png
from keras_unet.weights import instances_from_mask, unet_weight_map


def main(isbi: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((isbi / "train" / "masks").glob("*.png"))[:3]:
        mask = read_mask(path)
        weights = unet_weight_map(instances_from_mask(mask), w0=10, sigma=5)
        picture = weight_map_image(weights)
        grey = np.repeat(mask[..., None], 3, axis=2).astype(np.uint8)
        side_by_side = np.concatenate([grey, np.full((mask.shape[0], 8, 3), 255, np.uint8), picture], 1)
        target = write_png(out / f"{path.stem}_weights.png", side_by_side)
        print(f"{target}: weights {weights.min():.2f}..{weights.max():.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))

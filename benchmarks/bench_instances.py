"""The step from probabilities to objects against the network, on a 1024x1024 image.

    python benchmarks/bench_instances.py [--model RUN/model.keras]

Times, side by side in one run: the network's overlap-tile prediction of a 1024x1024 image
(``predict_tiled``; a trained model if given, else the ``fit`` default network: depth 4, 32
filters) and
``label_instances`` on its probabilities (components, small objects, holes, growing back into the
separating borders), cutting at necks 1.5 px deep (``--split-depth``), and with ``--watershed``
splitting. The image is the built-in demo data
(about 1,500 touching cells); an untrained network gives noise, so its object probability is
mixed half and half with the true cells, which gives the instance step real objects to cut.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _timing import median_time  # noqa: E402

from keras_unet.data import demo_data  # noqa: E402
from keras_unet.instances import label_instances  # noqa: E402
from keras_unet.model import build_unet  # noqa: E402
from keras_unet.predict import load_model  # noqa: E402
from keras_unet.preprocess import normalizer_of  # noqa: E402
from keras_unet.tiling import predict_tiled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained .keras model (1 channel)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    unet = load_model(args.model) if args.model else build_unet(depth=4, filters=32, border_width=1)
    image = demo_data(1, 1024, seed=7)[0][0]
    normalizer = normalizer_of(unet)
    x = normalizer(np.repeat(image, normalizer.channels, axis=-1))  # grey as the model's channels
    network = median_time(lambda: predict_tiled(unet, x), args.repeat)
    probs = predict_tiled(unet, x)
    probs[..., 1] = 0.5 * probs[..., 1] + 0.5 * (demo_data(1, 1024, seed=7)[1][0] > 0)
    n = int(label_instances(probs, 0.5, 10, 1).max())
    plain = median_time(lambda: label_instances(probs, 0.5, 10, 1), args.repeat)
    split = median_time(lambda: label_instances(probs, 0.5, 10, 1, watershed_split=True),
                        args.repeat)
    necks = median_time(lambda: label_instances(probs, 0.5, 10, 1, split_depth=1.5), args.repeat)
    print(f"1024x1024, {n} objects (median of {args.repeat}):")
    print(f"  network (predict_tiled)            {network:7.3f} s")
    print(f"  label_instances                    {plain:7.3f} s   {plain / network:6.1%} of the network")
    print(f"  label_instances, cut at necks      {necks:7.3f} s   {necks / network:6.1%} of the network")
    print(f"  label_instances, watershed split   {split:7.3f} s   {split / network:6.1%} of the network")


if __name__ == "__main__":
    main()

"""Weight-map speed: our truncated per-object method against the naive exact one, side by side.

    python benchmarks/bench_weights.py [--isbi ../shared/data/isbi2012] [--dsb ../shared/data/dsb2018]

Prints, per data set, the median time per map of both methods, the speed-up, and the largest
difference between them (must stay below 1e-3). Also a synthetic 1024x1024 image with ~500 nuclei.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from keras_unet.data import demo_data
from keras_unet.images import read_mask
from keras_unet.weights import border_weights, to_instances


def naive_border(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The exact formula: one Euclidean distance transform of the whole image per object."""
    ids = [i for i in np.unique(labels) if i != 0]
    if len(ids) < 2:
        return np.zeros(labels.shape, np.float32)
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for i in ids:
        d = ndi.distance_transform_edt(labels != i)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    out = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    out[labels > 0] = 0
    return out.astype(np.float32)


def timed(fn, labels, repeat: int) -> tuple[float, np.ndarray]:
    result = fn(labels)  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(labels)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def bench(name: str, masks: list[np.ndarray], naive_limit: int) -> None:
    ours_t, naive_t, errs, objects = [], [], [], []
    for i, labels in enumerate(masks):
        t, ours = timed(border_weights, labels, 5)
        ours_t.append(t)
        objects.append(len(np.unique(labels)) - 1)
        if i < naive_limit:
            t, ref = timed(naive_border, labels, 1)
            naive_t.append(t)
            errs.append(float(np.abs(ours - ref).max()))
    ours_med, naive_med = statistics.median(ours_t), statistics.median(naive_t)
    print(
        f"{name:32s} {len(masks):3d} maps  {statistics.median(objects):6.0f} objects (median)  "
        f"ours {ours_med * 1e3:7.1f} ms  naive {naive_med * 1e3:8.1f} ms  "
        f"speed-up {naive_med / ours_med:6.1f}x  max |diff| {max(errs):.1e}"
    )


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi", type=Path, default=here.parent / "shared/data/isbi2012")
    parser.add_argument("--dsb", type=Path, default=here.parent / "shared/data/dsb2018")
    parser.add_argument("--naive-limit", type=int, default=6,
                        help="maps per data set also timed with the (slow) naive method")
    args = parser.parse_args()
    print("median time per map; naive = one exact EDT per object (scipy)")
    isbi = sorted((args.isbi / "train/masks").glob("*.png"))
    if isbi:
        bench("ISBI 2012 train masks 512x512", [to_instances(read_mask(p)) for p in isbi],
              args.naive_limit)
    else:
        print(f"(no ISBI 2012 masks under {args.isbi})")
    dsb = sorted((args.dsb / "instance_labels").glob("*.png"))
    if dsb:
        bench("DSB 2018 instance labels", [to_instances(read_mask(p), "instance") for p in dsb],
              args.naive_limit)
    else:
        print(f"(no DSB 2018 labels under {args.dsb})")
    _, synthetic = demo_data(3, 1024, seed=1, cell_radius=(8, 14), density=0.18)
    bench("synthetic 1024x1024 nuclei", list(synthetic), 1)


if __name__ == "__main__":
    main()

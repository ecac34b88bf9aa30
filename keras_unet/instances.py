"""From class probabilities to objects: a label image with one id per cell.

The network is trained on labels where separating borders between touching objects are background
(:func:`keras_unet.targets.separate_touching`), so its foreground falls apart into one connected
piece per object. :func:`label_instances` turns that into an instance label image:

1. foreground: probability of the object class above ``threshold`` (or the argmax over classes);
2. 4-connected components, one id each;
3. objects under ``min_size`` px removed, holes inside objects filled;
4. objects split at necks (``split_depth`` px, :func:`split_at_necks`): two touching nuclei that
   the network drew as one blob still show the waist where they meet. A watershed on the
   object's distance to the background (smoothed by ``SPLIT_SMOOTHING`` px), seeded by its
   h-maxima of height ``split_depth``, cuts the blob there; an object whose waist is less than
   ``split_depth`` px narrower than its parts stays whole. ``fit`` chooses the depth (or 0, off)
   with the threshold and the smallest object size on the validation images;
5. the separating borders given back (:func:`grow_into_gaps`): each object grows by
   ``border_width`` px, but only into pixels that lie between two objects, so the cells regain the
   contact area their labels gave up without growing into the background elsewhere;
6. optionally (``watershed_split=True``) a seeded watershed on the foreground probability splits
   blobs that still touch: seeds are the components of the confident core (probability above
   ``seed_threshold``), the flooding fills the foreground.

Everything is vectorised SciPy / scikit-image work on the whole image; its time next to the
network's is measured by ``benchmarks/bench_instances.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import expand_labels, watershed

__all__ = ["label_instances", "grow_into_gaps", "fill_object_holes", "relabel_sequential",
           "label_dtype", "split_at_necks", "SPLIT_SMOOTHING"]

FOUR = ndi.generate_binary_structure(2, 1)
#: Standard deviation (px) of the Gaussian that smooths the distance map before the neck search:
#: it keeps the one-pixel steps of a digital outline from counting as necks.
SPLIT_SMOOTHING = 1.5


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """The same objects with ids 1..N in raster order of first appearance (0 stays 0)."""
    labels = np.asarray(labels)
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids > 0
    order = ids[keep][np.argsort(first[keep])]
    lut = np.zeros(int(ids.max()) + 1 if ids.size else 1, np.int64)
    lut[order] = np.arange(1, order.size + 1)
    return lut[labels].astype(label_dtype(order.size))


def label_dtype(n_objects: int) -> np.dtype:
    """uint16 up to 65,535 objects, uint32 beyond (what TIFF readers take)."""
    return np.dtype(np.uint16 if n_objects <= np.iinfo(np.uint16).max else np.uint32)


def grow_into_gaps(labels: np.ndarray, border_width: int) -> np.ndarray:
    """Give objects back the separating borders they gave up in training.

    Each object grows by ``border_width`` px (nearest object wins, as
    ``skimage.segmentation.expand_labels`` decides), keeping only the grown pixels that have a
    *different* object within ``border_width`` px, i.e. pixels in a gap between two objects.
    """
    labels = np.asarray(labels)
    if border_width <= 0 or labels.max() == 0:
        return labels
    grown = expand_labels(labels, distance=border_width)
    size = 2 * border_width + 1
    highest = ndi.maximum_filter(grown, size=size)
    # background counts as an id above all others (max + 1: no overflow, whatever the dtype)
    lowest = ndi.minimum_filter(np.where(grown > 0, grown, grown.max() + 1), size=size)
    between = (grown > 0) & ((highest > grown) | (lowest < grown))
    return np.where((labels == 0) & between, grown, labels)


def split_at_necks(labels: np.ndarray, depth: float) -> np.ndarray:
    """Cut objects where their outline narrows: a distance-transform watershed.

    Args:
        labels: ``(H, W)`` integer labels, 0 = background.
        depth: how much (px) the smoothed distance to the background must rise from a neck to
            the middle of the parts on both sides for the object to be cut there; 0 returns
            ``labels`` unchanged.

    Returns:
        ``(H, W)`` int64 labels (not sequential); every input object keeps at least one id, and no
        output object spans two input objects. An object's cuts depend on its own pixels and on
        the distances within ``4 * SPLIT_SMOOTHING`` px of it (the smoothing), nothing farther.
    """
    labels = np.asarray(labels)
    if depth < 0:
        raise ValueError(f"split depth must be >= 0 px, got {depth!r}")
    if depth == 0 or labels.max() == 0:
        return labels
    mask = labels > 0
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), SPLIT_SMOOTHING)
    # Each object's necks are its own: with the background below every object's search depth
    # and the objects' own 4-connectivity, no h-maximum depends on a neighbouring object, so
    # an image cut into blocks (keras_unet.large) gets the same cuts as the whole.
    floor = np.where(mask, distance, -(float(depth) + 1.0))
    markers, n = ndi.label(h_maxima(floor, depth, footprint=FOUR).astype(bool) & mask, FOUR)
    parts = watershed(-distance, markers, mask=mask, connectivity=1).astype(np.int64)
    # an object without a marker of its own keeps its whole area under one new id
    parts = np.where(mask & (parts == 0), n + 1, parts)
    # pieces are (object, part) pairs: a flood never joins two objects
    _, pieces = np.unique(labels.astype(np.int64) * (n + 2) + parts, return_inverse=True)
    # + 1: with no background pixel the first piece would otherwise take id 0
    return np.where(mask, pieces.reshape(labels.shape) + 1, 0)


def label_instances(
    probabilities: np.ndarray,
    threshold: float | None = 0.5,
    min_size: int = 10,
    border_width: int = 1,
    split_depth: float = 0.0,
    fill_holes: bool = True,
    watershed_split: bool = False,
    seed_threshold: float = 0.8,
    foreground_class: int = 1,
) -> np.ndarray:
    """An instance label image from the network's class probabilities.

    Args:
        probabilities: float ``(H, W, K)`` softmax output (or ``(H, W)``: the object class's
            probability).
        threshold: foreground where the object class's probability exceeds it; None: where the
            object class wins the argmax.
        min_size: objects smaller than this many px are removed (0 keeps all).
        border_width: the separating border width the model was trained with (px per object);
            objects grow back into those gaps. 0: no growing.
        split_depth: cut objects at necks this many px deep (:func:`split_at_necks`); 0: off.
        fill_holes: fill holes inside objects.
        watershed_split: split touching objects by a seeded watershed on the probability.
        seed_threshold: with ``watershed_split``, the probability of an object's confident core.
        foreground_class: the class whose pixels are objects.

    Returns:
        ``(H, W)`` labels, 0 = background, 1..N in raster order; uint16, or uint32 for more than
        65,535 objects.
    """
    p = np.asarray(probabilities, np.float32)
    if p.ndim == 3:
        if not 0 < foreground_class < p.shape[2]:
            raise ValueError(f"foreground class {foreground_class} is not one of the model's "
                             f"{p.shape[2]} classes (0 is background)")
        fg_prob = p[..., foreground_class]
        foreground = (fg_prob > threshold) if threshold is not None else (
            p.argmax(-1) == foreground_class)
    elif p.ndim == 2:
        fg_prob = p
        foreground = fg_prob > (0.5 if threshold is None else threshold)
    else:
        raise ValueError(f"probabilities must be (H, W, K) or (H, W), got shape {p.shape}")
    if threshold is not None and not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if min_size < 0 or border_width < 0:
        raise ValueError(f"min_size and border_width must be >= 0, got {min_size}, {border_width}")
    if watershed_split:
        seeds, _ = ndi.label(foreground & (fg_prob > seed_threshold), FOUR)
        labels = watershed(-fg_prob, seeds, mask=foreground, connectivity=1)
    else:
        labels, _ = ndi.label(foreground, FOUR)
    if min_size > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    if fill_holes:
        labels = fill_object_holes(labels)
    labels = split_at_necks(labels, split_depth)
    labels = grow_into_gaps(labels, border_width)
    return relabel_sequential(labels)


def fill_object_holes(labels: np.ndarray) -> np.ndarray:
    """Holes take the id of the object around them.

    A hole is a 4-connected background region that does not touch the image's edge; it takes the
    largest id among the object pixels next to it (the one object around it, in all but the
    rare hole bordered by two objects). Linear in the image size: two labellings and a 3x3
    dilation, no distance transform.
    """
    background, n = ndi.label(labels == 0, FOUR)
    if n == 0:
        return labels
    edge = np.unique(np.concatenate([background[0], background[-1], background[:, 0],
                                     background[:, -1]]))
    is_hole = np.ones(n + 1, bool)
    is_hole[edge] = False
    is_hole[0] = False
    holes = is_hole[background]
    if not holes.any():
        return labels
    # each hole pixel next to an object sees the object's id; spread it over the hole's region
    around = ndi.grey_dilation(labels, size=(3, 3))
    touching = holes & (around > 0)
    owner = np.zeros(n + 1, labels.dtype)
    np.maximum.at(owner, background[touching], around[touching])
    return np.where(holes, owner[background], labels)

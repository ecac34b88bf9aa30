"""Reading images and masks, the built-in demo data, and the tf.data pipeline of training tiles.

Conventions:

* images are float32 ``(H, W, C)`` after :func:`normalize`; masks are integer ``(H, W)``;
* **class masks** hold class ids ``0..K-1`` (0 = background); **instance masks** hold object ids
  ``0..N`` (0 = background), which become class 1 ("object") and feed the weight map's border term;
* **normalisation** (:func:`normalize`): integer images are first divided by their dtype's maximum
  (255 for 8-bit, 65535 for 16-bit) so they lie in [0, 1]; then ``"image"`` (the default)
  standardises each image to zero mean and unit variance, ``"fixed"`` leaves the [0, 1] range.
  Prediction and exported models use the same function.

Training tiles follow the paper's overlap-tile strategy: the image is mirror-padded by the network
margin, a random output window is chosen inside the image, and the input tile is that window grown
by the margin; labels and weight maps are cut to the output window directly (never by running the
model). Images smaller than a tile work: labels are padded with class 0 and weight 0, so the padding
adds nothing to the loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi

from ._compat import tf
from . import augment
from .augment import Augmentation
from .model import Geometry
from .tiling import mirror_pad
from .weights import instances_from_mask, looks_binary, to_instances, unet_weight_map

__all__ = [
    "demo_data",
    "normalize",
    "read_image",
    "read_mask",
    "read_pages",
    "dtype_scale",
    "list_images",
    "load_pairs",
    "TrainingSet",
    "training_dataset",
    "validation_dataset",
    "validation_tiles",
    "split_validation",
    "crop_to_output",
    "mask_kind",
    "targets_from_mask",
    "labels_from_mask",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
NORMALIZATIONS = ("image", "fixed")


# --------------------------------------------------------------------------------------------
# Demo data


def demo_data(
    n_images: int = 8,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    cell_radius: tuple[float, float] = (9.0, 16.0),
    density: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic microscopy-like images of touching cells, with their instance labels.

    Cells are grown from random seeds as a noisy Voronoi tessellation limited by a per-cell radius,
    so many cells touch their neighbours; a 1 px background line (like the membranes of ISBI 2012)
    separates touching cells in the labels and shows as a faint dark line in the image. Interiors
    have per-cell brightness and texture, the image is blurred and noisy. Deterministic for a seed.

    Args:
        n_images: number of images.
        size: image size in px, ``int`` or ``(height, width)``.
        seed: random seed.
        cell_radius: range of cell radii in px.
        density: fraction of the area seeded with cells (about; 0..1).

    Returns:
        ``images`` float32 ``(n, H, W, 1)`` in [0, 1] and ``labels`` int32 ``(n, H, W)``
        (0 = background, 1..N = cells).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if n_images < 1 or h < 8 or w < 8:
        raise ValueError(f"need n_images >= 1 and size >= 8 px, got {n_images} and {(h, w)}")
    rng = np.random.default_rng(seed)
    images = np.empty((n_images, h, w, 1), np.float32)
    labels = np.empty((n_images, h, w), np.int32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n_images):
        r_mean = float(np.mean(cell_radius))
        n_cells = max(2, int(density * h * w / (np.pi * r_mean**2)))
        cy = rng.uniform(0, h, n_cells).astype(np.float32)
        cx = rng.uniform(0, w, n_cells).astype(np.float32)
        radius = rng.uniform(*cell_radius, n_cells).astype(np.float32)
        # Noisy distance so borders are wavy, not straight Voronoi edges.
        wobble = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 3).astype(np.float32)
        wobble *= 2.5 / (wobble.std() + 1e-6)
        seeds = np.ones((h, w), np.uint8)
        seeds[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = 0
        _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
        owner_map = np.full((h, w), -1, np.int64)
        owner_map[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = np.arange(
            n_cells
        )
        owner = owner_map[iy, ix]
        dist = np.hypot(yy - cy[owner], xx - cx[owner]) + wobble
        lab = np.where(dist < radius[owner], owner + 1, 0).astype(np.int32)
        # 1 px background line where two cells touch (4-neighbourhood).
        border = np.zeros((h, w), bool)
        for axis in (0, 1):
            a = np.moveaxis(lab, axis, 0)
            diff = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
            np.moveaxis(border, axis, 0)[1:] |= diff
        lab[border] = 0
        lab = _relabel(lab)

        brightness = rng.uniform(0.55, 0.9, n_cells + 1).astype(np.float32)
        brightness[0] = 0.25
        texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 1.5).astype(np.float32)
        img = brightness[np.where(lab > 0, owner + 1, 0)] + 0.05 * texture
        img[border] = 0.4  # faint membrane between touching cells
        img = ndi.gaussian_filter(img, 1.0) + rng.normal(0, 0.03, (h, w)).astype(np.float32)
        images[i, ..., 0] = np.clip(img, 0, 1)
        labels[i] = lab
    return images, labels


def _relabel(lab: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N, in order of first appearance in raster order."""
    ids, first = np.unique(lab, return_index=True)
    order = ids[np.argsort(first)]
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    fg = order[order > 0]
    lut[fg] = np.arange(1, len(fg) + 1)
    return lut[lab]


# --------------------------------------------------------------------------------------------
# Reading and normalising


def dtype_scale(image: np.ndarray) -> float:
    """The value that maps an image's dtype to [0, 1]: 255 for 8-bit, 65535 for 16-bit, 1 for float."""
    dtype = np.asarray(image).dtype
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def normalize(image: np.ndarray, mode: str = "image") -> np.ndarray:
    """float32 ``(H, W, C)`` image normalised as described in the module docstring.

    ``image`` may be ``(H, W)`` or ``(H, W, C)``, of any integer or float dtype.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (height, width[, channels]), got shape {image.shape}")
    x = image.astype(np.float32) / np.float32(dtype_scale(image))
    if mode == "image":
        x = (x - x.mean()) / max(float(x.std()), 1e-6)
    return x.astype(np.float32, copy=False)


def _imread(path: str | os.PathLike, what: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            data = tifffile.imread(str(path))
        except Exception as exc:  # tifffile raises many types for broken files
            raise ValueError(f"cannot read {what} {path}: not a readable TIFF ({exc})") from None
    else:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise ValueError(
                f"cannot read {what} {path}: not an image OpenCV can decode (PNG, TIFF, JPEG, BMP)"
            )
        if data.ndim == 3:
            data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return data


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one 2-D image as ``(H, W, C)`` in its own dtype (8/16-bit grey or RGB; PNG, TIFF, ...).

    An alpha channel is dropped.
    """
    data = _imread(path, "image")
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ValueError(
            f"image {path} has shape {data.shape}; expected a 2-D image (a stack? use it as a "
            "TIFF stack)"
        )
    if data.shape[2] == 4:
        data = data[..., :3]
    return data


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read one 2-D mask ``(H, W)`` as stored (8/16-bit PNG or TIFF)."""
    data = _imread(path, "mask")
    if data.ndim == 3 and data.shape[2] in (3, 4) and np.all(data[..., :3] == data[..., :1]):
        data = data[..., 0]  # grey mask stored as RGB
    if data.ndim != 2:
        raise ValueError(
            f"mask {path} has shape {data.shape}; expected a 2-D single-channel mask"
        )
    return data


def read_pages(path: str | os.PathLike, what: str = "image") -> list[np.ndarray]:
    """Pages of a multi-page TIFF (or the one page of any image) as 2-D/3-D arrays."""
    path = Path(path)
    data = _imread(path, what)
    if path.suffix.lower() in (".tif", ".tiff") and data.ndim == 3 and data.shape[2] not in (3, 4):
        return [page for page in data]  # (pages, H, W)
    if path.suffix.lower() in (".tif", ".tiff") and data.ndim == 4:
        return [page for page in data]  # (pages, H, W, C)
    return [data]


def list_images(folder: str | os.PathLike, what: str = "images") -> list[Path]:
    """Image files in ``folder`` (sorted), or a clear error if it is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"{what} folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def load_pairs(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    masks: str | os.PathLike | Sequence[str | os.PathLike],
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Read training pairs from two folders (matched by file stem), two TIFF stacks, or two
    lists of paths (matched by position).

    Args:
        images: a folder of images, a multi-page TIFF stack (ISBI 2012's train-volume.tif), or a
            list of image files.
        masks: the matching folder of masks (same stems; suffixes may differ), TIFF stack, or
            list of mask files (the i-th mask belongs to the i-th image).

    Returns:
        ``images`` (each ``(H, W, C)``, own dtype), ``masks`` (each ``(H, W)``) and their names.

    Raises:
        ValueError / FileNotFoundError naming the unmatched or unreadable files.
    """
    if not isinstance(images, (str, os.PathLike)) or not isinstance(masks, (str, os.PathLike)):
        image_list, mask_list = [Path(p) for p in images], [Path(p) for p in masks]
        if len(image_list) != len(mask_list):
            raise ValueError(
                f"got {len(image_list)} image files but {len(mask_list)} mask files; "
                "give one mask per image, in the same order"
            )
        if not image_list:
            raise ValueError("the lists of images and masks are empty")
        return ([read_image(p) for p in image_list], [read_mask(p) for p in mask_list],
                [p.name for p in image_list])
    images, masks = Path(images), Path(masks)
    if images.is_file() or masks.is_file():
        if not (images.is_file() and masks.is_file()):
            raise ValueError(
                f"give two folders or two TIFF stacks; got {images} and {masks}"
            )
        xs, ys = read_pages(images, "image stack"), read_pages(masks, "mask stack")
        if len(xs) != len(ys):
            raise ValueError(
                f"{images} has {len(xs)} pages but {masks} has {len(ys)}; they must match"
            )
        names = [f"{images.name}[{i}]" for i in range(len(xs))]
        xs = [x[..., None] if x.ndim == 2 else x for x in xs]
        for y, name in zip(ys, names):
            if y.ndim != 2:
                raise ValueError(f"{name}: mask page has shape {y.shape}; expected 2-D")
        return xs, ys, names
    image_files = {p.stem: p for p in list_images(images, "images")}
    mask_files = {p.stem: p for p in list_images(masks, "masks")}
    only_images = sorted(set(image_files) - set(mask_files))
    only_masks = sorted(set(mask_files) - set(image_files))
    if only_images or only_masks:
        parts = []
        if only_images:
            parts.append(f"images without a mask: {', '.join(only_images[:10])}")
        if only_masks:
            parts.append(f"masks without an image: {', '.join(only_masks[:10])}")
        raise ValueError(
            f"images in {images} and masks in {masks} must match by file name; "
            + "; ".join(parts)
        )
    stems = sorted(image_files)
    xs = [read_image(image_files[s]) for s in stems]
    ys = [read_mask(mask_files[s]) for s in stems]
    return xs, ys, [image_files[s].name for s in stems]


# --------------------------------------------------------------------------------------------
# Masks to training targets

MASK_TYPES = ("auto", "instance", "binary", "class")


def mask_kind(mask: np.ndarray, n_classes: int = 2, mask_type: str = "auto") -> str:
    """Resolve ``mask_type`` "auto" to "binary", "class" or "instance".

    bool masks and masks whose values are within {0, 1} or {0, 255} are binary; with more than two
    classes, masks whose values are class ids ``< n_classes`` are class masks; anything else is a
    mask of instance ids.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask type must be one of {MASK_TYPES}, got {mask_type!r}")
    if mask_type != "auto":
        return mask_type
    if looks_binary(mask):
        return "binary"
    if n_classes > 2 and np.max(mask) < n_classes:
        return "class"
    return "instance"


def labels_from_mask(
    mask: np.ndarray, n_classes: int = 2, mask_type: str = "auto", source: str = "mask"
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and instance ids for one mask.

    * ``binary``: 0 = background, any other value (1 or 255) = class 1; objects are its
      4-connected components;
    * ``instance``: ids 0..N; class 1 = any object; the ids are the objects;
    * ``class``: class ids 0..n_classes-1; objects are the connected components of each class.

    Returns:
        int32 class labels ``(H, W)`` and int32 instance ids ``(H, W)``.

    Raises:
        ValueError: naming ``source`` for a mask that is not 2-D, or whose values do not fit.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D mask, got shape {mask.shape}")
    kind = mask_kind(mask, n_classes, mask_type)
    if kind == "binary":
        values = np.unique(mask)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            raise ValueError(
                f"{source}: a binary mask must hold 0 and one other value, found {values.tolist()}"
            )
        return (mask != 0).astype(np.int32), instances_from_mask(mask)
    if kind == "instance":
        if n_classes != 2:
            raise ValueError(
                f"{source}: instance masks give 2 classes (background, object), but "
                f"{n_classes} classes were asked for; use class masks or --classes 2"
            )
        instances = to_instances(mask, "instance")
        return (instances > 0).astype(np.int32), instances
    values = np.unique(mask)
    if values.min() < 0 or values.max() >= n_classes or mask.dtype.kind == "f" and np.any(
        values != np.round(values)
    ):
        raise ValueError(
            f"{source}: a class mask for {n_classes} classes may hold 0..{n_classes - 1}, "
            f"found values {values.tolist()[:20]}"
        )
    classes = mask.astype(np.int32)
    instances = np.zeros(mask.shape, np.int32)
    for c in values[values > 0]:
        comp = instances_from_mask(classes == c)
        instances = np.where(comp > 0, comp + instances.max(), instances)
    return classes, instances


def targets_from_mask(
    mask: np.ndarray,
    n_classes: int = 2,
    mask_type: str = "auto",
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | dict | None = "balanced",
    source: str = "mask",
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and the paper's weight map for one mask (see :func:`labels_from_mask`).

    ``w0 = 0`` turns the border term off; ``class_weights=None`` turns class balancing off.

    Returns:
        int32 class labels ``(H, W)`` and float32 weights ``(H, W)``.
    """
    classes, instances = labels_from_mask(mask, n_classes, mask_type, source)
    return classes, unet_weight_map(instances, w0, sigma, class_weights, classes=classes)


# --------------------------------------------------------------------------------------------
# Training tiles


def crop_to_output(array, geometry: Geometry):
    """Centre-crop ``(..., H, W)`` labels or weights cut at the input tile to the output tile.

    Works on NumPy arrays and tensors; the crop is the network margin, known analytically.
    """
    m = geometry.margin
    if m == 0:
        return array
    return array[..., m:-m, m:-m]


@dataclass
class TrainingSet:
    """Images with their per-pixel targets, ready to cut training tiles from.

    Attributes:
        images: list of float32 ``(H_i, W_i, C)`` normalised images.
        labels: list of int32 ``(H_i, W_i)`` class ids.
        weights: list of float32 ``(H_i, W_i)`` weight maps.
    """

    images: list[np.ndarray]
    labels: list[np.ndarray]
    weights: list[np.ndarray]

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("the training set is empty")
        if not (len(self.images) == len(self.labels) == len(self.weights)):
            raise ValueError("images, labels and weights must have the same length")
        channels = {im.shape[2] for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"all images must have the same number of channels, got {channels}")
        for i, (im, lb, wt) in enumerate(zip(self.images, self.labels, self.weights)):
            if im.shape[:2] != lb.shape or lb.shape != wt.shape:
                raise ValueError(
                    f"item {i}: image {im.shape[:2]}, labels {lb.shape} and weights {wt.shape} "
                    "must have the same height and width"
                )

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[2])


def _stack(data: TrainingSet, out: int, pad: int):
    """All images in one array, mirror-padded by ``pad`` px and out to a common extent.

    Each image's label extent is at least one output tile; labels and weights pad with class 0 and
    weight 0, so padding adds nothing to the loss. Returns the arrays and the label extents.
    """
    n = len(data.images)
    ext_h = [max(im.shape[0], out) for im in data.images]
    ext_w = [max(im.shape[1], out) for im in data.images]
    H, W = max(ext_h) + 2 * pad, max(ext_w) + 2 * pad
    images = np.zeros((n, H, W, data.channels), np.float32)
    labels = np.zeros((n, H, W), np.int32)
    weights = np.zeros((n, H, W), np.float32)
    for i, (im, lb, wt) in enumerate(zip(data.images, data.labels, data.weights)):
        h, w = im.shape[:2]
        images[i] = mirror_pad(im, (pad, H - h - pad, pad, W - w - pad))
        labels[i, pad : pad + h, pad : pad + w] = lb
        weights[i, pad : pad + h, pad : pad + w] = wt
    return images, labels, weights, ext_h, ext_w


def training_dataset(
    data: TrainingSet,
    geometry: Geometry,
    tile_size: int,
    batch_size: int = 1,
    seed: int = 0,
    augmentation: Augmentation | None = None,
    start: int = 0,
) -> tf.data.Dataset:
    """An endless, deterministic ``tf.data.Dataset`` of random, augmented training tiles.

    Each step picks an image and an output window inside it (stateless RNG from the step number
    and ``seed``), cuts the input tile around it from the mirror-padded image, and, with
    ``augmentation``, resamples it (rotation, shift, the paper's elastic deformation; the image
    bilinearly, labels and weights by nearest neighbour, all reading real context around the
    tile), flips/rotates it by 90 degrees and changes grey values. Labels and weights are then
    cropped to the output window (the margin is known analytically).

    Args:
        data: the images, class labels and weight maps (weights computed once, beforehand).
        geometry: the network's :class:`~keras_unet.model.Geometry`.
        tile_size: input tile size in px (validated; the error names the nearest valid sizes).
        batch_size: tiles per batch.
        seed: the same seed gives the same tiles.
        augmentation: what to apply; ``None`` cuts plain tiles.
        start: index of the first tile (a resumed run starts where it stopped).

    Returns:
        Batches of ``{"image": (B, T, T, C) float32, "labels": (B, O, O) int32,
        "weights": (B, O, O) float32}``, ``O = geometry.output_size(T)``: the input of
        :func:`keras_unet.build_training_model`.
    """
    out = geometry.check(tile_size, "tile size")
    aug = (augmentation or Augmentation.off()).validate()
    m = geometry.margin
    reach = aug.reach(tile_size)
    pad = m + reach
    n = len(data.images)
    c = data.channels
    images, labels, weights, ext_h, ext_w = _stack(data, out, pad)
    # Output windows start anywhere inside the label extent.
    max_y = tf.constant(np.array(ext_h) - out + 1, tf.int32)
    max_x = tf.constant(np.array(ext_w) - out + 1, tf.int32)
    images_t, labels_t, weights_t = (tf.constant(a) for a in (images, labels, weights))
    span = tile_size + 2 * reach  # the tile plus the context resampling may read

    def sample(step):
        s = tf.stack([tf.cast(seed, tf.int64), step])
        idx = tf.random.stateless_uniform([], s, 0, n, dtype=tf.int32)
        yx = tf.random.stateless_uniform([2], s + [0, 1 << 40], 0, 1 << 30, dtype=tf.int32)
        y, x = yx[0] % max_y[idx], yx[1] % max_x[idx]
        # The input tile's top-left corner in the padded stack is (y + reach, x + reach).
        image = images_t[idx, y : y + span, x : x + span]
        lab = labels_t[idx, y : y + span, x : x + span]
        wt = weights_t[idx, y : y + span, x : x + span]
        if aug.geometric:
            yy, xx = aug.coordinates(s + [0, 2 << 40], tile_size)
            yy, xx = yy + reach, xx + reach
            image = augment.sample(image, yy, xx, 1)
            lab = augment.sample(lab, yy, xx, 0)
            wt = augment.sample(wt, yy, xx, 0)
        image = tf.ensure_shape(image, [tile_size, tile_size, c])
        lab = tf.ensure_shape(lab, [tile_size, tile_size])
        wt = tf.ensure_shape(wt, [tile_size, tile_size])
        image, lab, wt = aug.flip(s + [0, 3 << 40], image, lab, wt)
        image = aug.grey(s + [0, 4 << 40], image)
        return {
            "image": image,
            "labels": crop_to_output(lab, geometry),
            "weights": crop_to_output(wt, geometry),
        }

    ds = tf.data.Dataset.counter(start).map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_tiles(
    data: TrainingSet, geometry: Geometry, tile_size: int
) -> dict[str, np.ndarray]:
    """Every output pixel of every image exactly once, as non-augmented tiles.

    Output windows step by the output size over each image (the last one flush with the border,
    overlapping its neighbour; the overlap is counted once, its weight set to 0 in the earlier
    tile). Returns ``{"image": (N, T, T, C), "labels": (N, O, O), "weights": (N, O, O),
    "valid": (N, O, O) bool}``; ``valid`` marks each image pixel in exactly one tile.
    """
    out = geometry.check(tile_size, "tile size")
    m = geometry.margin
    images, labels, weights, ext_h, ext_w = _stack(data, out, m)
    tiles = {"image": [], "labels": [], "weights": [], "valid": []}

    def starts(extent):
        s = list(range(0, extent - out + 1, out))
        return s if s[-1] == extent - out else s + [extent - out]

    for i in range(len(data.images)):
        seen = np.zeros((ext_h[i], ext_w[i]), bool)
        for y in starts(ext_h[i]):
            for x in starts(ext_w[i]):
                tiles["image"].append(images[i, y : y + tile_size, x : x + tile_size])
                wt = weights[i, y + m : y + m + out, x + m : x + m + out].copy()
                valid = ~seen[y : y + out, x : x + out]
                valid[data.labels[i].shape[0] - y :, :] = False  # label padding, not image
                valid[:, data.labels[i].shape[1] - x :] = False
                wt[~valid] = 0  # counted once: not again where an earlier tile covered it
                seen[y : y + out, x : x + out] = True
                tiles["valid"].append(valid)
                tiles["labels"].append(labels[i, y + m : y + m + out, x + m : x + m + out])
                tiles["weights"].append(wt)
    return {k: np.stack(v) for k, v in tiles.items()}


def validation_dataset(
    data: TrainingSet, geometry: Geometry, tile_size: int, batch_size: int = 1
) -> tf.data.Dataset:
    """A finite dataset of :func:`validation_tiles` (never augmented), batched."""
    tiles = validation_tiles(data, geometry, tile_size)
    tiles.pop("valid")
    return tf.data.Dataset.from_tensor_slices(tiles).batch(batch_size)


def split_validation(
    n: int, fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of training and validation images for a random ``fraction`` held out.

    At least one image goes to each side when ``fraction > 0``; the split depends only on ``n``,
    ``fraction`` and ``seed``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0:
        return list(range(n)), []
    if n < 2:
        raise ValueError(
            f"a validation fraction needs at least 2 images, got {n}; pass a validation folder "
            "instead, or no validation"
        )
    n_val = min(max(1, int(round(n * fraction))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())

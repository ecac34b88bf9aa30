"""Reading images and masks: single files, multi-page TIFF stacks, folders matched by name.

Images come back in their own dtype as ``(H, W, C)`` (8/16-bit grey or RGB; an alpha channel is
dropped), masks as ``(H, W)``. Every failure is a ``ValueError`` or ``FileNotFoundError`` whose
message names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image",
    "read_mask",
    "read_pages",
    "list_images",
    "load_pairs",
    "by_stem",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


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


def by_stem(files: Sequence[Path]) -> dict[str, Path]:
    """Files by name without suffix; two files of one name (``a.png``, ``a.tif``) are refused."""
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise ValueError(f"{out[f.stem]} and {f} share the name {f.stem!r}, so it is unclear "
                             "which one pairs with its mask; rename or remove one")
        out[f.stem] = f
    return out


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
        ValueError: naming the unmatched or unreadable files.
        FileNotFoundError: naming a missing file or folder.
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
    image_files = by_stem(list_images(images, "images"))
    mask_files = by_stem(list_images(masks, "masks"))
    if images.resolve() == masks.resolve():
        raise ValueError(f"--images and --masks are the same folder ({images}); masks go in a "
                         "folder of their own, with the images' file names")
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

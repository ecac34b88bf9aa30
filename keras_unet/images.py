"""Reading images and masks: the one reader behind every command, and folders matched by name.

**One reader.** :func:`read_stack` is the only way pixels come in: ``fit``, ``evaluate``,
``predict`` (whole-image and block-wise), ``predict --server``, ``weight-map``, and the exports'
sample images all read through it (:func:`read_image`, :func:`read_pages` and :func:`read_mask`
are views of it). It returns ``(pages, height, width, channels)`` in the file's own dtype, with
axes known from the file:

* PNG, JPEG and BMP are height x width (x channels), colour as RGB;
* TIFF axes come from the file's metadata through tifffile (``TiffFile.series[0].axes``, which
  reads ImageJ hyperstacks and OME-TIFF): ``Y``/``X`` are the image, ``C`` and ``S`` (samples)
  are channels, every other named axis (``Z``, ``T``, ``I``: pages of a stack, ...) holds pages;
* an axis tifffile cannot name (``Q``, from a file written without axes, or tifffile's
  planar-RGB guess for a ``(3 or 4, H, W)`` array) is settled by two rules: a last axis of at
  most :data:`keras_unet.axes.MAX_TRAILING_CHANNELS` (16) after two larger ones holds channels
  (NumPy's ``(height, width, channels)``), a first axis holds pages (``(pages, height, width)``
  stacks); length-1 axes are dropped (:mod:`keras_unet.axes`). What stays unclear (two unnamed axes, two channel axes) is refused
  with one line naming the axes found and the ``--axes`` that settles it.

``axes`` (the ``--axes`` option) overrides the file's axes for TIFF files: one letter per axis of
the stored array, ``Y`` and ``X`` for the image, ``C`` for channels, ``Z`` or ``T`` for pages (e.g.
``YXC``, ``CYX``, ``ZCYX``). PNG, JPEG and BMP have no choice to make; ``axes`` does not apply.

**Alpha.** A transparency channel (the 4th channel of a PNG/BMP, or a grey+alpha PNG's 2nd, or
a TIFF extra sample marked as alpha) that is constant is dropped, by every command and by the SavedModel's
``predict_png`` signature alike. One that varies is refused: the colour values of a partly
transparent image are not what was recorded.

Every failure is a ``ValueError`` or ``FileNotFoundError`` whose message names the file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .axes import Layout, check_axes, image_layout, tiff_layout
from .console import InputWarning

__all__ = [
    "IMAGE_SUFFIXES",
    "InputWarning",
    "check_axes",
    "read_stack",
    "read_image",
    "read_mask",
    "read_pages",
    "read_mask_pages",
    "image_layout",
    "Layout",
    "list_images",
    "load_pairs",
    "read_pairs",
    "Pairs",
    "by_stem",
    "read_groups",
    "groups_of",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def _opencv(path: Path, what: str) -> tuple[Layout, np.ndarray]:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(
            f"cannot read {what} {path}: not an image OpenCV can decode (PNG, TIFF, JPEG, BMP)"
        )
    if data.ndim == 2:
        return Layout("YX", data.shape, False, "file"), data
    if data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
    elif data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    return Layout("YXC", data.shape, data.shape[2] == 4, "file"), data


def read_stack(path: str | os.PathLike, axes: str | None = None,
               what: str = "image") -> np.ndarray:
    """The one reader: an image file as ``(pages, height, width, channels)``, its own dtype.

    Args:
        path: PNG, JPEG, BMP (one page) or TIFF (one image or a stack: ImageJ, OME, ...).
        axes: the stored array's axes for TIFF files (``--axes``, see :func:`check_axes`);
            default: the file's own (see the module docs).
        what: the word for the file in messages (``"image"``, ``"mask"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file: unreadable, ambiguous axes, varying alpha.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    axes = check_axes(axes)
    if path.suffix.lower() in TIFF_SUFFIXES:
        layout, data = tiff_layout(path, what, axes, data=True)
    else:
        layout, data = _opencv(path, what)
    order = ([i for i, a in enumerate(layout.axes) if a not in "YXC1"]
             + [layout.axes.index("Y"), layout.axes.index("X")]
             + ([layout.axes.index("C")] if "C" in layout.axes else []))
    dropped = [i for i, a in enumerate(layout.axes) if a == "1"]
    data = np.transpose(data, order + dropped)
    h, w = layout.height, layout.width
    c = layout.shape[layout.axes.index("C")] if "C" in layout.axes else 1
    stack = data.reshape(-1, h, w, c)
    if layout.alpha:
        alpha = stack[..., -1]
        if alpha.size and alpha.min() != alpha.max():
            raise ValueError(
                f"{what} {path} has a transparency (alpha) channel that varies from "
                f"{alpha.min()} to {alpha.max()}: its colours are not what was recorded; save it "
                "without transparency (e.g. Fiji: Image > Type > RGB Color)")
        stack = stack[..., :-1]
    return stack


def read_image(path: str | os.PathLike, axes: str | None = None) -> np.ndarray:
    """Read one 2-D image as ``(H, W, C)`` in its own dtype (see :func:`read_stack`).

    A constant alpha channel is dropped. A stack of several pages is refused.
    """
    stack = read_stack(path, axes, "image")
    if len(stack) != 1:
        raise ValueError(
            f"image {path} holds {len(stack)} pages of {stack.shape[2]}x{stack.shape[1]} px; "
            "expected a 2-D image here (give the stack itself as --images/--masks, or "
            "--axes if the pages are channels)")
    return stack[0]


def read_pages(path: str | os.PathLike, what: str = "image",
               axes: str | None = None) -> list[np.ndarray]:
    """The pages of a file (one for a 2-D image), each ``(H, W, C)`` (see :func:`read_stack`)."""
    return list(read_stack(path, axes, what))


def read_mask_pages(path: str | os.PathLike, what: str = "mask",
                    axes: str | None = None) -> list[np.ndarray]:
    """The pages of a mask file, each ``(H, W)`` as stored (8/16-bit PNG or TIFF).

    A grey mask stored as RGB is taken as grey. Refused, naming the file: colour masks, NaN or
    infinite values, and JPEG masks whose values are not two (JPEG's compression blurs a
    mask's edges into grey values that are no labels).
    """
    path = Path(path)
    stack = read_stack(path, axes, what)
    if stack.shape[3] in (3, 4) and np.all(stack[..., :3] == stack[..., :1]):
        stack = stack[..., :1]  # grey mask stored as RGB
    if stack.shape[3] != 1:
        raise ValueError(
            f"{what} {path} has {stack.shape[3]} channels, shape {stack.shape[1:]}; expected a "
            "2-D single-channel mask")
    if stack.dtype.kind == "f" and not np.all(np.isfinite(stack)):
        raise ValueError(f"{what} {path} holds NaN or infinite values; a mask holds labels")
    if path.suffix.lower() in LOSSY_SUFFIXES:
        values = np.unique(stack)
        if values.size > 2:
            raise ValueError(
                f"{what} {path} is a JPEG with {values.size} different values: JPEG's "
                "compression blurs a mask's edges into grey values that are no labels; save "
                "masks as PNG or TIFF")
    return [page[..., 0] for page in stack]


def read_mask(path: str | os.PathLike, axes: str | None = None) -> np.ndarray:
    """Read one 2-D mask ``(H, W)`` as stored (see :func:`read_mask_pages`)."""
    pages = read_mask_pages(path, "mask", axes)
    if len(pages) != 1:
        raise ValueError(f"mask {path} holds {len(pages)} pages; expected a 2-D single-channel "
                         "mask")
    return pages[0]


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


class Pairs(NamedTuple):
    """Training or test pairs as read: images ``(H, W, C)``, masks ``(H, W)``, the images' names
    and the masks' files (``folder/name`` or ``stack.tif[i]``), for messages."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]
    mask_names: list[str]


def read_pairs(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    axes: str | None = None,
    options: tuple[str, str] = ("--images", "--masks"),
) -> Pairs:
    """Read pairs from two folders (matched by file stem), two TIFF stacks, or two lists of
    paths (matched by position); see :func:`load_pairs`. ``options``: the command-line names
    of the two, for messages (``("--val-images", "--val-masks")`` for validation pairs)."""
    axes = check_axes(axes)
    if not isinstance(images, (str, os.PathLike)) or not isinstance(masks, (str, os.PathLike)):
        image_list, mask_list = [Path(p) for p in images], [Path(p) for p in masks]
        if len(image_list) != len(mask_list):
            raise ValueError(
                f"got {len(image_list)} image files but {len(mask_list)} mask files; "
                "give one mask per image, in the same order"
            )
        if not image_list:
            raise ValueError("the lists of images and masks are empty")
        return Pairs([read_image(p, axes) for p in image_list], [read_mask(p) for p in mask_list],
                     [p.name for p in image_list], [str(p) for p in mask_list])
    images, masks = Path(images), Path(masks)
    if images.is_file() or masks.is_file():
        if not (images.is_file() and masks.is_file()):
            raise ValueError(
                f"give two folders or two TIFF stacks as {options[0]} and {options[1]}; got "
                f"{images} and {masks}"
            )
        xs = read_pages(images, "image stack", axes)
        ys = read_mask_pages(masks, "mask stack")
        if len(xs) != len(ys):
            raise ValueError(
                f"{images} has {len(xs)} pages but {masks} has {len(ys)}; they must match"
            )
        return Pairs(xs, ys, [f"{images.name}[{i}]" for i in range(len(xs))],
                     [f"{masks}[{i}]" for i in range(len(ys))])
    image_files = by_stem(list_images(images, "images"))
    mask_files = by_stem(list_images(masks, "masks"))
    if images.resolve() == masks.resolve():
        raise ValueError(f"{options[0]} and {options[1]} are the same folder ({images}); masks "
                         "go in a folder of their own, with the images' file names")
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
    return Pairs([read_image(image_files[s], axes) for s in stems],
                 [read_mask(mask_files[s]) for s in stems],
                 [image_files[s].name for s in stems], [str(mask_files[s]) for s in stems])


def load_pairs(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    axes: str | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Read training pairs from two folders (matched by file stem), two TIFF stacks, or two
    lists of paths (matched by position).

    Args:
        images: a folder of images, a multi-page TIFF stack (ISBI 2012's train-volume.tif), or a
            list of image files.
        masks: the matching folder of masks (same stems; suffixes may differ), TIFF stack, or
            list of mask files (the i-th mask belongs to the i-th image).
        axes: the images' TIFF axes (``--axes``), default the files' own (:func:`read_stack`).

    Returns:
        ``images`` (each ``(H, W, C)``, own dtype), ``masks`` (each ``(H, W)``) and their names
        (:func:`read_pairs` also gives the masks' files).

    Raises:
        ValueError: naming the unmatched or unreadable files.
        FileNotFoundError: naming a missing file or folder.
    """
    return read_pairs(images, masks, axes)[:3]


def read_groups(path: str | os.PathLike) -> dict[str, str]:
    """``{file name: group}`` from a CSV of ``file name,group`` rows (a first row ``...,group``
    is a header; blank lines are skipped). A file name may be given with or without its suffix.

    Raises:
        ValueError: naming the file and line of a row that is not two non-empty cells, or of a
            file named twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"groups file {path} does not exist")
    groups: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.reader(f), 1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if len(cells) != 2 or not all(cells):
                raise ValueError(f"{path}, line {line}: expected 'file name,group', got "
                                 f"{','.join(row)!r}")
            if line == 1 and cells[1].lower() == "group":
                continue
            if cells[0] in groups:
                raise ValueError(f"{path}, line {line}: {cells[0]} is given a group twice")
            groups[cells[0]] = cells[1]
    if not groups:
        raise ValueError(f"groups file {path} names no file")
    return groups


def groups_of(names: Sequence[str], table: dict[str, str], source: str, folder: str
              ) -> list[str]:
    """The group of each image name in ``table`` (from :func:`read_groups`; a name matches with
    or without its suffix).

    Raises:
        ValueError: an image that ``table`` gives no group, or a file in ``table`` that is not
            among ``names`` (a misspelt name would otherwise go unseen).
    """
    of, used = [], set()
    for name in names:
        key = name if name in table else Path(name).stem
        if key not in table:
            import difflib

            known = set(names) | {Path(n).stem for n in names}
            close = difflib.get_close_matches(name, [t for t in table if t not in known], 1)
            hint = (f" (it names {close[0]}, which is not among the images: a misspelling of "
                    f"{name}?)" if close else "")
            raise ValueError(f"{source} gives no group for {name}; add a line '{name},GROUP'"
                             + hint)
        of.append(table[key])
        used.add(key)
    unknown = sorted(set(table) - used)
    if unknown:
        raise ValueError(f"{source} names {unknown[0]}, which is not among the images in "
                         f"{folder}")
    return of

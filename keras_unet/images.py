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
* an axis tifffile cannot name (``Q``, from a file written without axes) is settled by two rules:
  a last axis of at most :data:`MAX_TRAILING_CHANNELS` after two larger ones holds channels (NumPy's
  ``(height, width, channels)``), a first axis holds pages (``(pages, height, width)`` stacks);
  length-1 axes are dropped. What stays unclear (two unnamed axes, two channel axes) is refused
  with one line naming the axes found and the ``--axes`` that settles it.

``axes`` (the ``--axes`` option) overrides the file's axes for TIFF files: one letter per axis of
the stored array, ``Y`` and ``X`` for the image, ``C`` for channels, ``Z`` or ``T`` for pages (e.g.
``YXC``, ``CYX``, ``ZCYX``). PNG, JPEG and BMP have no choice to make; ``axes`` does not apply.

**Alpha.** A transparency channel (the 4th channel of a PNG/JPEG/BMP, or a TIFF extra sample
marked as alpha) that is constant is dropped, by every command and by the SavedModel's
``predict_png`` signature alike. One that varies is refused: the colour values of a partly
transparent image are not what was recorded.

Every failure is a ``ValueError`` or ``FileNotFoundError`` whose message names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

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
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: a last unnamed axis this long or shorter, after two longer ones, holds channels
MAX_TRAILING_CHANNELS = 16
#: the letters ``--axes`` takes: image, channels, pages
AXES_LETTERS = {"Y": "height", "X": "width", "C": "channels", "Z": "pages", "T": "pages"}
CHANNEL_AXES = "CS"
UNNAMED = "Q"


class InputWarning(UserWarning):
    """An input the model can take, but maybe not mean: values outside its training range, ...
    The command line shows these as ``Warning: ...`` lines."""


def check_axes(axes: str | None, option: str = "--axes") -> str | None:
    """``axes`` in upper case, or a one-line ValueError saying what is wrong with it.

    One letter per axis of the stored array: ``Y`` (height) and ``X`` (width) once each, at most
    one ``C`` (channels), and ``Z`` or ``T`` for pages (e.g. ``YXC``, ``CYX``, ``ZCYX``).
    """
    if axes is None:
        return None
    text = str(axes).strip().upper()
    unknown = sorted(set(text) - set(AXES_LETTERS))
    if not text or unknown:
        raise ValueError(
            f"{option} {axes!r}: use one letter per axis of the stored array: Y (height), "
            "X (width), C (channels), Z or T (pages); e.g. YXC, CYX or ZCYX"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    for letter in "YXC":
        if text.count(letter) > 1:
            raise ValueError(f"{option} {axes!r} names {AXES_LETTERS[letter]} ({letter}) twice")
    for letter in "YX":
        if letter not in text:
            raise ValueError(f"{option} {axes!r} has no {letter} ({AXES_LETTERS[letter]}); an "
                             "image needs Y and X")
    if len(set(text)) != len(text):
        raise ValueError(f"{option} {axes!r} repeats a letter")
    return text


class Layout(NamedTuple):
    """How a file's stored array maps to ``(pages, height, width, channels)``.

    ``axes``: one letter per stored axis after interpretation (``Y``, ``X``, ``C``, or a page
    letter; ``1`` for a length-1 axis that is dropped); ``shape``: the stored shape; ``alpha``:
    the channel axis ends with a transparency channel; ``origin``: where the axes came from.
    """

    axes: str
    shape: tuple[int, ...]
    alpha: bool
    origin: str

    @property
    def pages(self) -> int:
        return int(np.prod([n for a, n in zip(self.axes, self.shape) if a not in "YXC1"]))

    @property
    def height(self) -> int:
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.shape[self.axes.index("X")]

    @property
    def channels(self) -> int:
        c = self.shape[self.axes.index("C")] if "C" in self.axes else 1
        return c - 1 if self.alpha else c

    def describe(self) -> str:
        size = f"{self.width}x{self.height} px, {self.channels} channel(s)"
        return f"{self.pages} pages of {size}" if self.pages > 1 else size


def _interpret(path: Path, shape: tuple[int, ...], file_axes: str, given: str | None,
               alpha_sample: bool, what: str) -> Layout:
    """The layout of a TIFF's stored array from its own axes or from ``--axes``."""
    if given is not None:
        if len(given) != len(shape):
            raise ValueError(
                f"{what} {path} is stored with {len(shape)} axes, shape {shape} (axes "
                f"{file_axes} in the file), but --axes {given} names {len(given)}; give one "
                "letter per axis")
        axes = "".join("1" if n == 1 and a not in "YX" else a for a, n in zip(given, shape))
        return Layout(axes, shape, False, "--axes")
    hint = _axes_hint(shape)
    letters = list(file_axes)
    for i, (a, n) in enumerate(zip(letters, shape)):
        if a not in "YX" and n == 1:
            letters[i] = "1"
        elif a in CHANNEL_AXES:
            letters[i] = "C"
    unnamed = [i for i, a in enumerate(letters) if a == UNNAMED]
    y, x = letters.index("Y"), letters.index("X")
    if unnamed and unnamed[-1] == len(shape) - 1 and x == len(shape) - 2 and "C" not in letters:
        letters[-1] = "C"  # (height, width, channels), as tifffile labels a single page's extra axis
        unnamed = unnamed[:-1]
    elif (len([a for a in letters if a != "1"]) == 3 and x == len(shape) - 1 and "C" not in letters
          and shape[x] <= MAX_TRAILING_CHANNELS and shape[x] < min(shape[y], _first(letters, shape))
          and _first_is(letters, ("Q", "I"))):
        # (height, width, channels) written without axes: tifffile saw pages of a few px wide
        first = next(i for i, a in enumerate(letters) if a != "1")
        letters[first], letters[y], letters[x] = "Y", "X", "C"
        unnamed = [i for i in unnamed if i != first]
    if len(unnamed) > 1:
        raise ValueError(
            f"{what} {path}: shape {shape} with axes {file_axes}; {len(unnamed)} axes are unnamed, "
            f"so which holds channels and which pages is unclear; give --axes, e.g. {hint}")
    for i in unnamed:
        letters[i] = "I"  # a first unnamed axis: pages of a stack
    if letters.count("C") > 1:
        raise ValueError(
            f"{what} {path}: shape {shape} with axes {file_axes} has two channel axes; give "
            f"--axes naming one C, e.g. {hint}")
    axes = "".join(letters)
    alpha = alpha_sample and "C" in axes and file_axes[axes.index("C")] == "S"
    return Layout(axes, shape, alpha, "file")


def _first(letters: list[str], shape: tuple[int, ...]) -> int:
    return next(n for a, n in zip(letters, shape) if a != "1")


def _first_is(letters: list[str], kinds: tuple[str, ...]) -> bool:
    return next(a for a in letters if a != "1") in kinds


def _axes_hint(shape: tuple[int, ...]) -> str:
    n = len([s for s in shape])
    return {2: "--axes YX", 3: "--axes YXC (channels last), CYX (first) or ZYX (pages)",
            4: "--axes ZCYX or ZYXC"}.get(n, "--axes ZCYX")


def _tiff(path: Path, what: str, axes: str | None, data: bool):
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            squeezed_axes, squeezed = series.get_axes(True), tuple(series.get_shape(True))
            full_axes, full = series.get_axes(False), tuple(series.get_shape(False))
            extras = tuple(getattr(series.keyframe, "extrasamples", ()) or ())
            array = series.asarray() if data else None
    except Exception as exc:  # tifffile raises many types for broken files
        raise ValueError(f"cannot read {what} {path}: not a readable TIFF ({exc})") from None
    alpha = bool(extras) and int(extras[-1]) in (1, 2)  # associated / unassociated alpha
    if axes is not None and len(axes) != len(squeezed) and len(axes) == len(full):
        shape, file_axes = full, full_axes
    elif "Y" not in squeezed_axes or "X" not in squeezed_axes:
        shape, file_axes = full, full_axes
    else:
        shape, file_axes = squeezed, squeezed_axes
    layout = _interpret(path, shape, file_axes, axes, alpha, what)
    if array is not None:
        array = array.reshape(shape)
    return layout, array


def image_layout(path: str | os.PathLike, axes: str | None = None,
                 what: str = "image") -> Layout:
    """The layout of an image file from its header, without reading its pixels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _tiff(path, what, axes, data=False)[0]
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            bands = len(im.getbands())
    except Exception:  # noqa: BLE001 - PIL raises many types; OpenCV gives the message
        return _layout_of(read_stack(path, what=what), "file")
    if bands in (2, 4):
        return Layout("YXC", (height, width, 4), True, "file")
    return Layout("YXC" if bands > 1 else "YX", (height, width, bands)[:3 if bands > 1 else 2],
                  False, "file")


def _layout_of(stack: np.ndarray, origin: str) -> Layout:
    return Layout("IYXC", stack.shape, False, origin)


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
        FileNotFoundError, or ValueError naming the file: unreadable, ambiguous axes, varying
        alpha.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    axes = check_axes(axes)
    if path.suffix.lower() in TIFF_SUFFIXES:
        layout, data = _tiff(path, what, axes, data=True)
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


def read_mask_pages(path: str | os.PathLike, what: str = "mask") -> list[np.ndarray]:
    """The pages of a mask file, each ``(H, W)`` as stored (8/16-bit PNG or TIFF).

    A grey mask stored as RGB is taken as grey. Refused, naming the file: colour masks, NaN or
    infinite values, and JPEG masks whose values are not two (JPEG's compression blurs a
    mask's edges into grey values that are no labels).
    """
    path = Path(path)
    stack = read_stack(path, None, what)
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


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read one 2-D mask ``(H, W)`` as stored (see :func:`read_mask_pages`)."""
    pages = read_mask_pages(path)
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
        ValueError / FileNotFoundError naming the unmatched or unreadable files.
    """
    return read_pairs(images, masks, axes)[:3]

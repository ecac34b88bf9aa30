"""The axes of stored images: the ``--axes`` letters and the rules that name a file's axes.

:func:`tiff_layout` reads a TIFF's axes from its own metadata through tifffile
(``TiffFile.series[0]``, which reads ImageJ hyperstacks and OME-TIFF) and settles what tifffile
cannot name; :func:`image_layout` gives any image file's :class:`Layout` from its header alone.
The rules are described in :mod:`keras_unet.images`, whose reader applies them. This module
imports no TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["AXES_LETTERS", "check_axes", "Layout", "tiff_layout", "image_layout",
           "MAX_TRAILING_CHANNELS"]

TIFF_SUFFIXES = (".tif", ".tiff")
#: a last unnamed axis this long or shorter, after two longer ones, holds channels
MAX_TRAILING_CHANNELS = 16
CHANNEL_AXES = "CS"
#: the ``--axes`` option's help
AXES_HELP = ("Axes of TIFF images whose files do not say, one letter per stored axis: Y, X, "
             "C (channels), Z or T (pages); e.g. YXC, CYX, ZYX [default: the files' own].")
UNNAMED = "Q"
#: the letters of ``--axes``: image, channels, pages
AXES_LETTERS = {"Y": "height", "X": "width", "C": "channels", "Z": "pages", "T": "pages"}


def check_axes(axes: str | None, option: str = "--axes") -> str | None:
    """``axes`` in upper case, or a one-line ValueError saying what is wrong with it.

    One letter per axis of a TIFF's stored array: ``Y`` (height) and ``X`` (width) once each, at
    most one ``C`` (channels), and ``Z`` or ``T`` for pages (e.g. ``YXC``, ``CYX``, ``ZCYX``).
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
    for letter in "YX":
        if letter not in text:
            raise ValueError(f"{option} {axes!r} has no {letter} ({AXES_LETTERS[letter]}); an "
                             "image needs Y and X")
    if len(set(text)) != len(text):
        repeated = sorted({a for a in text if text.count(a) > 1})
        raise ValueError(f"{option} {axes!r} names {', '.join(repeated)} twice; one letter per "
                         "axis")
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


def tiff_layout(path: Path, what: str, axes: str | None, data: bool = False):
    """A TIFF's :class:`Layout`, and its stored array if ``data``."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            squeezed_axes, squeezed = series.get_axes(True), tuple(series.get_shape(True))
            full_axes, full = series.get_axes(False), tuple(series.get_shape(False))
            extras = tuple(getattr(series.keyframe, "extrasamples", ()) or ())
            # tifffile writes a (3 or 4, H, W) array without axes as planar RGB(A): a guess, not
            # metadata; such a first axis is unnamed (a stack of pages, by the rules)
            guessed = (tif.is_shaped and not (tif.is_imagej or tif.is_ome)
                       and "axes" not in (tif.shaped_metadata or ({},))[0])
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
    if guessed and file_axes.startswith("S"):
        file_axes, alpha = UNNAMED + file_axes[1:], False
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
        return tiff_layout(path, what, axes)[0]
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            bands = len(im.getbands())
    except Exception:  # noqa: BLE001 - PIL raises many types; OpenCV gives the message
        raise ValueError(f"cannot read {what} {path}: not an image file (PNG, TIFF, JPEG, "
                         "BMP)") from None
    if bands in (2, 4):
        return Layout("YXC", (height, width, 4), True, "file")
    return Layout("YXC" if bands > 1 else "YX", (height, width, bands)[:3 if bands > 1 else 2],
                  False, "file")

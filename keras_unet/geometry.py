"""Shape arithmetic of the U-Net, without TensorFlow.

With the paper's unpadded ("valid") 3x3 convolutions every conv takes 2 px off each dimension, so
the network's output is smaller than its input and only some input sizes work: every 2x2
max-pool must see an even size. For ``depth`` resolution levels (the paper has 5):

* input size  ``n = 2**(depth-1) * b + 4 * (2**(depth-1) - 1)``, where ``b`` is the size at the
  lowest level (32 in the paper's figure);
* output size ``n - 2 * margin`` with ``margin = 6 * 2**(depth-1) - 4`` px per side
  (92 px for depth 5: a 572x572 tile gives a 388x388 output).

With ``padding="same"`` the output has the input's size and the input must be divisible by
``2**(depth-1)``.

All sizes here are in pixels. This module imports nothing heavy, so the command line can check
options (a tile size, say) before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "Geometry",
    "output_size",
    "output_shape",
    "margin",
    "is_valid_input_size",
    "nearest_valid_sizes",
    "valid_input_sizes",
    "check_input_size",
    "MAX_DEPTH",
]

PADDINGS = ("valid", "same")
MAX_DEPTH = 8  # 7 max-pools: a 2**7 = 128 px down-sampling and a 764 px margin already


def _check_depth_padding(depth: int, padding: str) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(
            f"depth must be an integer from 1 to {MAX_DEPTH} (resolution levels; the paper uses "
            f"5), got {depth!r}"
        )
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


@dataclass(frozen=True)
class Geometry:
    """Shape arithmetic of a U-Net with ``depth`` resolution levels and the given conv padding.

    Attributes:
        depth: number of resolution levels (the paper's network has 5, i.e. 4 max-pools).
        padding: ``"valid"`` (the paper: unpadded convs) or ``"same"``.
    """

    depth: int = 5
    padding: str = "valid"

    def __post_init__(self) -> None:
        _check_depth_padding(self.depth, self.padding)

    @property
    def factor(self) -> int:
        """Total down-sampling factor, ``2**(depth-1)``."""
        return 2 ** (self.depth - 1)

    @property
    def offset(self) -> int:
        """Valid input sizes are ``offset + factor * k`` (k >= 1 and at least ``min_input_size``)."""
        return self._sizes_from_index(0)

    @property
    def margin(self) -> int:
        """Pixels lost per side between input and output (0 for ``same`` padding)."""
        return 6 * self.factor - 4 if self.padding == "valid" else 0

    @property
    def min_input_size(self) -> int:
        """The smallest valid input size."""
        return self._sizes_from_index(self._min_index())

    def _min_index(self) -> int:
        # Smallest size ``b`` at the lowest level for which every feature map is >= 1 px.
        if self.padding == "same":
            return 1
        b = 1
        while self._trace(self._sizes_from_index(b)) is None:
            b += 1
        return b

    def _sizes_from_index(self, b: int) -> int:
        if self.padding == "same":
            return self.factor * b
        return self.factor * b + 4 * (self.factor - 1)

    def _trace(self, size: int) -> int | None:
        """Follow ``size`` through the network; the output size, or None if it is invalid."""
        if self.padding == "same":
            return size if size >= 1 and size % self.factor == 0 else None
        s = size
        for _ in range(self.depth - 1):
            s -= 4
            if s < 2 or s % 2:
                return None
            s //= 2
        s -= 4  # bottleneck
        if s < 1:
            return None
        for _ in range(self.depth - 1):
            s = 2 * s - 4
            if s < 1:
                return None
        return s

    def is_valid(self, size: int) -> bool:
        """Whether ``size`` (one spatial dimension, px) is a valid input size."""
        return isinstance(size, int) and self._trace(size) is not None

    def nearest(self, size: int) -> tuple[int | None, int]:
        """The nearest valid input sizes ``(below or equal, above or equal)``; below may be None."""
        k0 = self._min_index()
        step = self.factor
        base = self._sizes_from_index(k0)
        if size <= base:
            return (None, base)
        k = k0 + (size - base) // step
        lower = self._sizes_from_index(k)
        upper = lower if lower == size else self._sizes_from_index(k + 1)
        return (lower, upper)

    def check(self, size: int, what: str = "input size") -> int:
        """Return the output size for ``size``, or raise a ValueError naming the nearest valid sizes."""
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"{what} must be an integer number of pixels, got {size!r}")
        out = self._trace(size)
        if out is None:
            lower, upper = self.nearest(size)
            near = f"{lower} or {upper}" if lower is not None else f"{upper} (the smallest)"
            rule = (
                "every 2x2 max-pool needs an even size and the output must keep at least 1 px"
                if self.padding == "valid"
                else f"it must be divisible by {self.factor}"
            )
            raise ValueError(
                f"{what} {size} is not valid for a depth-{self.depth} U-Net with "
                f"{self.padding} padding ({rule}); nearest valid sizes: {near}"
            )
        return out

    def output_size(self, size: int) -> int:
        """Output size (px) for an input size (px); raises ValueError for an invalid size."""
        return self.check(size)

    def input_size_for_output(self, out: int) -> int:
        """The smallest valid input size whose output is at least ``out`` px."""
        if out < 1:
            raise ValueError(f"output size must be >= 1 px, got {out}")
        size = self.min_input_size
        while self._trace(size) < out:
            size += self.factor
        return size

    def skip_crop(self, level: int) -> int:
        """Pixels cropped per side from the contracting map at ``level`` (0 = top) for valid padding.

        The skip map and the up-sampled map it joins differ by a constant that does not depend on
        the input size: ``12 * 2**(depth-2-level) - 8`` px per side; 88, 40, 16, 4 in the paper.
        """
        if self.padding == "same":
            return 0
        if not 0 <= level < self.depth - 1:
            raise ValueError(f"level must be in [0, {self.depth - 2}], got {level}")
        return 12 * 2 ** (self.depth - 2 - level) - 8

    def valid_sizes(self, min_size: int = 1, max_size: int = 1024) -> list[int]:
        """All valid input sizes in ``[min_size, max_size]``."""
        k = self._min_index()
        sizes = []
        while (s := self._sizes_from_index(k)) <= max_size:
            if s >= min_size:
                sizes.append(s)
            k += 1
        return sizes


def margin(depth: int = 5, padding: str = "valid") -> int:
    """Context margin in px per side: ``(input - output) / 2``. 92 for the paper's network."""
    return Geometry(depth, padding).margin


def output_size(input_size: int, depth: int = 5, padding: str = "valid") -> int:
    """Output size in px for one spatial input size in px. 572 -> 388 for the paper's network."""
    return Geometry(depth, padding).output_size(input_size)


def output_shape(
    input_shape: Sequence[int], depth: int = 5, padding: str = "valid"
) -> tuple[int, int]:
    """Output ``(height, width)`` for an input ``(height, width[, channels])``."""
    geo = Geometry(depth, padding)
    h, w = int(input_shape[0]), int(input_shape[1])
    return geo.check(h, "input height"), geo.check(w, "input width")


def is_valid_input_size(size: int, depth: int = 5, padding: str = "valid") -> bool:
    """Whether ``size`` px is a valid input size."""
    return Geometry(depth, padding).is_valid(size)


def nearest_valid_sizes(
    size: int, depth: int = 5, padding: str = "valid"
) -> tuple[int | None, int]:
    """The nearest valid input sizes below-or-equal and above-or-equal ``size``."""
    return Geometry(depth, padding).nearest(size)


def valid_input_sizes(
    depth: int = 5, padding: str = "valid", min_size: int = 1, max_size: int = 1024
) -> list[int]:
    """All valid input sizes between ``min_size`` and ``max_size`` px."""
    return Geometry(depth, padding).valid_sizes(min_size, max_size)


def check_input_size(size: int, depth: int = 5, padding: str = "valid") -> int:
    """Raise a ValueError naming the nearest valid sizes if ``size`` is invalid; else the output size."""
    return Geometry(depth, padding).check(size)

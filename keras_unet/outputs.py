"""Inputs and output folders of a prediction run, shared by local and remote prediction.

:func:`expand_inputs` turns files and folders into a list of inputs; :func:`each_file` runs one
function per input into an output folder that is created on the first write and removed again
when nothing could be written, so a refused run leaves nothing behind; :class:`PredictReport`
says what was written and which inputs failed. This module imports no TensorFlow, so a client of
TF Serving (``keras-unet predict --server``) starts at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .files import atomic_path
from .images import IMAGE_SUFFIXES, list_images

__all__ = ["expand_inputs", "mask_image", "PredictReport", "Output", "each_file", "write_masks",
           "page_names"]


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files and folders as a list of image files (a TIFF stack and a ``.zarr`` folder count as
    one input)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and p.suffix.lower() != ".zarr":
            files.extend(list_images(p, "input"))
        elif p.is_file() or p.is_dir():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    unknown = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES + (".zarr",)]
    if unknown:
        raise ValueError(f"{unknown[0]} is not an image ({', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems and stems[f.stem] != f:
            raise ValueError(f"{stems[f.stem]} and {f} share the name {f.stem!r}, so their "
                             "results would overwrite each other; rename one")
        stems[f.stem] = f
    return files


def mask_image(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """uint8 picture of class ids: 0/255 for two classes (visible), the ids otherwise."""
    return (classes * 255).astype(np.uint8) if n_classes == 2 else classes.astype(np.uint8)


@dataclass
class PredictReport:
    """What a prediction run did: files written, and one line per input that failed."""

    output: Path
    n_inputs: int
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (file name, number of objects) per input written with instances
    objects: list[tuple[str, int]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        done = self.n_inputs - len(self.failed)
        if done == 0:
            return (f"Nothing written: {'the input' if self.n_inputs == 1 else 'every input'} "
                    "failed")
        line = f"Wrote masks of {done} of {self.n_inputs} inputs to {self.output}"
        if not self.objects:
            return line
        counts = [n for _, n in self.objects]
        if len(counts) <= 10:
            return line + "; objects: " + ", ".join(f"{name} {n}" for name, n in self.objects)
        return (line + f"; {sum(counts)} objects in {len(counts)} images ({min(counts)} to "
                f"{max(counts)} per image)")


def _failure(path: Path, exc: Exception) -> str:
    message = str(exc)
    return message if path.name in message else f"{path}: {message}"


class Output:
    """An output folder created on the first write, and removed if nothing was written."""

    def __init__(self, folder: Path, report: PredictReport):
        self.folder, self.report = folder, report
        self.existed = folder.exists()

    def ensure(self) -> Path:
        """The folder, created now if needed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def path(self, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        self.report.written.append(path)
        return path

    def close(self) -> None:
        if not self.existed and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def each_file(files: list[Path], output, one: Callable, progress=None,
              fatal: Callable[[Exception], bool] = lambda exc: False) -> PredictReport:
    """Run ``one(out, path)`` for each file; a file's user error is reported and skipped,
    unless ``fatal(error)`` says it ends the run."""
    report = PredictReport(Path(output), len(files))
    out = Output(Path(output), report)
    try:
        for path in (progress(files) if progress else files):
            try:
                one(out, path)
            except (ValueError, OSError) as exc:
                if fatal(exc):
                    raise
                report.failed.append(_failure(path, exc))
    finally:
        out.close()
    return report


def page_names(path: Path, pages: int) -> list[str]:
    """Names for messages: the file's name, or ``name[i]`` per page of a stack."""
    return [path.name] if pages == 1 else [f"{path.name}[{i}]" for i in range(pages)]


def write_masks(out: Output, path: Path, masks: list[np.ndarray]) -> None:
    """``NAME_mask.png`` for one page, a multi-page ``NAME_mask.tif`` for a stack."""
    if len(masks) == 1:
        from .visualize import write_png

        write_png(out.path(f"{path.stem}_mask.png"), masks[0])
        return
    import tifffile

    with atomic_path(out.path(f"{path.stem}_mask.tif")) as tmp:
        tifffile.imwrite(tmp, np.stack(masks))

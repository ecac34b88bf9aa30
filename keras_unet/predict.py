"""From files to segmentations: load a model, predict images, write masks, score them.

* :func:`load_model` opens a ``.keras`` file with a clear error for a file that is not one;
* :class:`Predictor` turns raw images into class probabilities with a ``.keras`` model (its own
  preprocessing contract, then :func:`keras_unet.tiling.predict_tiled`) or an exported SavedModel
  (whose graph does both);
* :func:`predict_files` and :func:`predict_files_remote` (TF Serving over REST) write
  ``NAME_mask.png`` and ``NAME_overlay.png`` per image; :func:`evaluate_files` scores a model on
  labelled images.

Output folders are created only when the first file is written, and removed again when nothing
could be written, so a refused run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ._compat import keras, tf
from .console import no_bar
from .files import atomic_path, check_writable
from .images import IMAGE_SUFFIXES, list_images, read_pages
from .instances import label_dtype, label_instances
from .large import BLOCKWISE_PIXELS, image_pixels, predict_large
from .preprocess import Normalizer, instance_settings_of, normalizer_of
from .tiling import predict_tiled

__all__ = ["load_model", "Predictor", "predict_files", "predict_files_remote", "predict_instances",
           "expand_inputs", "PredictReport", "mask_image", "InstanceOptions"]

INSTANCE_DEFAULTS = {"border_width": 0, "threshold": 0.5, "min_size": 0, "split_depth": 0.0}


@dataclass
class InstanceOptions:
    """How probabilities become objects (:func:`keras_unet.instances.label_instances`); None
    takes the value stored in the model (its training border width, calibrated threshold and
    neck depth, and smallest object size)."""

    threshold: float | None = None
    min_size: int | None = None
    border_width: int | None = None
    split_depth: float | None = None
    watershed: bool = False

    @classmethod
    def of(cls, options: "InstanceOptions | dict | None") -> "InstanceOptions":
        """Options from keyword values (None values take the model's), or the defaults."""
        return options if isinstance(options, cls) else cls(**(options or {}))

    def resolve(self, stored: dict) -> dict:
        """Keyword arguments for ``label_instances``, the model's values filling the gaps."""
        values = {k: stored.get(k, INSTANCE_DEFAULTS[k]) if getattr(self, k) is None
                  else getattr(self, k) for k in INSTANCE_DEFAULTS}
        if not 0 <= float(values["threshold"]) < 1:
            raise ValueError(f"--threshold must be in [0, 1), got {values['threshold']!r}")
        if int(values["min_size"]) < 0 or int(values["border_width"]) < 0:
            raise ValueError("--min-size and --border-width must be >= 0")
        if not float(values["split_depth"]) >= 0:
            raise ValueError(f"--split-depth must be >= 0 px, got {values['split_depth']!r}")
        return {**values, "watershed_split": self.watershed}


def load_model(path: str | os.PathLike) -> keras.Model:
    """A U-Net from a ``.keras`` file, or a one-line ValueError/FileNotFoundError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is not a .keras model file: it does not exist")
    if path.is_dir() or path.suffix != ".keras":
        raise ValueError(f"{path} is not a .keras model file; give the model.keras that "
                         "`keras-unet fit` wrote")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load {path}: it is not a Keras model file (not a .keras zip "
                         "archive; damaged, or something else renamed)")
    from . import losses, model  # noqa: F401  (registers the layers a U-Net file holds)

    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load {path}: not a loadable Keras model file ({first})") from None


def validate_batch_tile(batch_size: int, tile_size: int | None) -> None:
    """Options every prediction takes; checked before any model is loaded."""
    if not isinstance(batch_size, int) or not 1 <= batch_size <= 4096:
        raise ValueError(f"--batch-size must be an integer from 1 to 4096, got {batch_size!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 1):
        raise ValueError(f"--tile-size must be a positive number of pixels, got {tile_size!r}")


class Predictor:
    """Class probabilities for raw images, from a ``.keras`` model or an exported SavedModel.

    * ``.keras`` (from ``keras-unet fit``), a path or a loaded ``keras.Model``: images are
      prepared by the model's own :class:`~keras_unet.preprocess.Normalizer` and predicted with
      :func:`predict_tiled`;
    * a SavedModel folder (from ``keras-unet export``): its ``serving_default`` signature does the
      normalisation and tiling itself; ``tile_size`` and ``tta`` do not apply.

    Call it with a raw ``(H, W)`` or ``(H, W, C)`` image of any dtype; it returns float32
    ``(H, W, n_classes)``.
    """

    def __init__(self, model, tile_size: int | None = None, batch_size: int = 4,
                 tta: bool = False):
        validate_batch_tile(batch_size, tile_size)
        self.tile_size, self.batch_size, self.tta = tile_size, batch_size, tta
        if isinstance(model, keras.Model):
            self.path, self.model = None, model
        else:
            self.path = Path(model)
            if self.path.is_dir() and (self.path / "saved_model.pb").is_file():
                self._init_saved_model()
                return
            if self.path.is_dir() or not self.path.exists():
                raise FileNotFoundError(
                    f"{self.path} is neither a .keras model nor a SavedModel folder "
                    "(with saved_model.pb)" + ("" if self.path.exists() else ": it does not exist"))
            self.model = load_model(self.path)
        self.kind = "keras"
        self.instance_settings = instance_settings_of(self.model)
        self.normalizer: Normalizer | None = normalizer_of(self.model)
        self.channels = self.normalizer.channels
        self.n_classes = int(self.model.output_shape[-1])
        if tile_size is not None:
            from .model import geometry_of

            geometry_of(self.model).check(tile_size, "tile size")

    def _init_saved_model(self) -> None:
        self.kind, self.model, self.normalizer = "saved_model", None, None
        meta = self.path / "assets.extra" / "keras_unet.json"
        self.instance_settings = dict(INSTANCE_DEFAULTS)
        if meta.is_file():
            self.instance_settings.update(json.loads(meta.read_text()).get("instances", {}))
        self._serve = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        spec = self._serve.structured_input_signature[1]["images"]
        self.channels = int(spec.shape[-1])
        self.n_classes = int(self._serve.structured_outputs["probabilities"].shape[-1])

    def __call__(self, image: np.ndarray, name: str = "image", progress=None) -> np.ndarray:
        if self.kind == "saved_model":
            image = Normalizer(channels=self.channels).channels_of(image, name)
            out = self._serve(images=tf.constant(image[None].astype(np.float32)))
            return out["probabilities"].numpy()[0]
        return predict_tiled(self.model, self.normalizer(image, name), self.tile_size,
                             self.batch_size, self.tta, progress=progress)


def predict_instances(model, image: np.ndarray, options: InstanceOptions | None = None,
                      tile_size: int | None = None, batch_size: int = 4,
                      tta: bool = False) -> np.ndarray:
    """Instance labels for a raw image: one id per object, 0 = background.

    Args:
        model: a ``.keras`` path, SavedModel folder, ``keras.Model`` or :class:`Predictor`.
        image: raw ``(H, W)`` / ``(H, W, C)`` image of any dtype and size.
        options: post-processing; default the model's own settings.

    Returns:
        ``(H, W)`` uint16 labels (uint32 beyond 65,535 objects).
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, tile_size,
                                                                     batch_size, tta)
    settings = InstanceOptions.of(options).resolve(predictor.instance_settings)
    return label_instances(predictor(image), **settings)


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
    """What :func:`predict_files` did: files written, and one line per input that failed."""

    output: Path
    n_inputs: int
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (f"Wrote masks of {self.n_inputs - len(self.failed)} of {self.n_inputs} inputs "
                f"to {self.output}")


def _failure(path: Path, exc: Exception) -> str:
    message = str(exc)
    return message if path.name in message else f"{path}: {message}"


class _Output:
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


def _write_outputs(out: _Output, path: Path, pages: list[np.ndarray], probs: list[np.ndarray],
                   n_classes: int, overlay: bool, save_probabilities: bool,
                   instances: dict | None = None) -> None:
    import tifffile

    from .visualize import instance_overlay, write_png
    from .visualize import overlay as overlay_image

    masks, objects = [], []
    for i, (page, p) in enumerate(zip(pages, probs)):
        stem = path.stem if len(pages) == 1 else f"{path.stem}_{i:03d}"
        classes = p.argmax(-1)
        masks.append(mask_image(classes, n_classes))
        if instances is not None:
            objects.append(label_instances(p, **instances))
        if save_probabilities:
            with atomic_path(out.path(f"{stem}_probabilities.npy")) as tmp:
                np.save(tmp, p.astype(np.float32))
        if overlay:
            picture = (instance_overlay(page, objects[-1]) if instances is not None
                       else overlay_image(page, classes))
            write_png(out.path(f"{stem}_overlay.png"), picture)
    if len(pages) == 1:
        write_png(out.path(f"{path.stem}_mask.png"), masks[0])
    else:
        with atomic_path(out.path(f"{path.stem}_mask.tif")) as tmp:
            tifffile.imwrite(tmp, np.stack(masks))
    if objects:
        dtype = label_dtype(max(int(o.max()) for o in objects))
        with atomic_path(out.path(f"{path.stem}_instances.tif")) as tmp:
            data = np.stack(objects) if len(objects) > 1 else objects[0]
            tifffile.imwrite(tmp, data.astype(dtype), compression="zlib")


def predict_files(
    model: str | os.PathLike | keras.Model,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    tile_size: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    overlay: bool = True,
    save_probabilities: bool = False,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
    instances: InstanceOptions | dict | None = None,
    blockwise: bool = False,
    progressbar=None,
) -> PredictReport:
    """Segment image files and folders with a local model; write masks, overlays, probabilities.

    TIFF and zarr inputs larger than ``keras_unet.large.BLOCKWISE_PIXELS``, and every input with
    ``blockwise``, are predicted strip by strip (:func:`keras_unet.large.predict_large`): tiled
    BigTIFF (or zarr) outputs and no overlay; ``report.notes`` says which, with the speed, and
    ``progressbar`` (a ``click.progressbar``-like factory) shows the pixels done and the ETA.

    Writes ``NAME_mask.png`` (a multi-page ``NAME_mask.tif`` for TIFF stacks),
    ``NAME_overlay.png`` and, if asked, ``NAME_probabilities.npy`` (float32 ``(H, W, K)``) into
    ``output``. With ``instances``, also ``NAME_instances.tif``: uint16 labels, one id per object
    (uint32 beyond 65,535 objects), and the overlay shows each object in its own colour. A file
    that cannot be read or predicted is reported in the result and skipped.

    Args:
        progress: wraps the list of files (a progress bar, say) and yields them.
    """
    validate_batch_tile(batch_size, tile_size)
    files = expand_inputs(inputs)
    check_writable(output)
    predictor = Predictor(model, tile_size, batch_size, tta)
    settings = (InstanceOptions.of(instances).resolve(predictor.instance_settings)
                if instances is not None else None)

    def one(out: _Output, path: Path) -> None:
        pixels = image_pixels(path)
        if blockwise or path.suffix.lower() == ".zarr" or (pixels or 0) > BLOCKWISE_PIXELS:
            if predictor.kind != "keras":
                raise ValueError(f"{path}: block-wise prediction needs a .keras model")
            with (progressbar or no_bar)(length=pixels or 1, label=(
                    f"{path.name}: {(pixels or 0) / 1e6:.0f} megapixels, block-wise")) as bar:
                done = predict_large(predictor.model, path, out.ensure(), tile_size, batch_size,
                                     settings, save_probabilities, progress=bar.update)
            out.report.written.extend(done.outputs.values())
            out.report.notes.append(f"{path.name}: {done.shape[1]}x{done.shape[0]} px predicted "
                                    f"block-wise, {done.megapixels_per_second:.1f} megapixels/s")
            return
        pages = read_pages(path)
        names = [path.name] if len(pages) == 1 else [f"{path.name}[{i}]" for i in range(len(pages))]
        probs = [predictor(page, name) for page, name in zip(pages, names)]
        _write_outputs(out, path, pages, probs, predictor.n_classes, overlay, save_probabilities,
                       settings)

    return _each_file(files, output, one, progress)



def _each_file(files: list[Path], output, one: Callable, progress=None,
               fatal: Callable[[Exception], bool] = lambda exc: False) -> PredictReport:
    """Run ``one(out, path)`` for each file; a file's user error is reported and skipped,
    unless ``fatal(error)`` says it ends the run."""
    report = PredictReport(Path(output), len(files))
    out = _Output(Path(output), report)
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


def predict_files_remote(
    client, inputs: Sequence[str | os.PathLike], output: str | os.PathLike, overlay: bool = True,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
) -> PredictReport:
    """Like :func:`predict_files`, with a model served by TF Serving (a
    :class:`keras_unet.serving.ServingClient`): each image goes to its ``predict_png`` signature."""
    import cv2

    from .serving import ServingError
    from .visualize import overlay as overlay_image
    from .visualize import write_png

    files = expand_inputs(inputs)
    check_writable(output)

    def one(out: _Output, path: Path) -> None:
        pages = read_pages(path)
        if len(pages) != 1:
            raise ValueError(f"{path}: TIFF stacks are predicted locally only")
        page = pages[0]
        ok, png = cv2.imencode(".png", page if page.ndim == 2 or page.shape[2] != 3
                               else page[..., ::-1])  # OpenCV writes BGR
        if not ok:
            raise ValueError(f"{path}: cannot encode as PNG")
        (mask_png,) = client.predict_png([png.tobytes()])
        mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
        write_png(out.path(f"{path.stem}_mask.png"), mask)
        if overlay:
            classes = mask // 255 if mask.max() == 255 else mask
            write_png(out.path(f"{path.stem}_overlay.png"), overlay_image(page, classes))

    def fatal(exc: Exception) -> bool:  # the server or model is missing: stop trying files
        return isinstance(exc, ServingError) and (exc.status is None or exc.status in (404, 503))

    return _each_file(files, output, one, progress, fatal)

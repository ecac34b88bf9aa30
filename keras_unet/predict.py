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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ._compat import keras, tf
from .config import check_axes
from .console import no_bar
from .files import atomic_path, check_writable
from .images import read_pages
from .instances import label_dtype, label_instances
from .large import predict_large
from .lazyio import blockwise_reason
from .outputs import Output as _Output
from .outputs import PredictReport, each_file, expand_inputs, mask_image, page_names, write_masks
from .preprocess import Normalizer, instance_settings_of, normalizer_of
from .remote import predict_files_remote
from .serving import graph_error
from .pretrained import as_float32, model_source, resolve_model
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
        if int(values["min_size"]) < 0:
            raise ValueError(f"--min-size must be >= 0 px, got {values['min_size']!r}")
        if not 0 <= int(values["border_width"]) <= 16:
            raise ValueError(f"--border-width must be an integer from 0 to 16 px, got "
                             f"{values['border_width']!r}")
        if not float(values["split_depth"]) >= 0:
            raise ValueError(f"--split-depth must be >= 0 px, got {values['split_depth']!r}")
        return {**values, "watershed_split": self.watershed}


def load_model(path: str | os.PathLike) -> keras.Model:
    """A float32 U-Net from a ``.keras`` file, a run folder or a packaged model's name
    (:func:`keras_unet.pretrained.resolve_model`), or a one-line ValueError/FileNotFoundError
    naming it."""
    path = resolve_model(path)
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
        model = keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load {path}: not a loadable Keras model file ({first})") from None
    return as_float32(model)  # a packaged model is stored in float16


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

    Call it with a **raw** ``(H, W)`` or ``(H, W, C)`` image of any dtype, as the command line
    reads it (:func:`keras_unet.images.read_image`); it returns float32 ``(H, W, n_classes)``.
    NaN or infinite pixels and values the model's training never meant raise a ValueError
    (:meth:`keras_unet.preprocess.Normalizer.check`).
    """

    def __init__(self, model, tile_size: int | None = None, batch_size: int = 4,
                 tta: bool = False):
        validate_batch_tile(batch_size, tile_size)
        self.tile_size, self.batch_size, self.tta = tile_size, batch_size, tta
        self.notes: list[str] = []  # which model a packaged model's name stood for
        if isinstance(model, keras.Model):
            self.path, self.model = None, model
        else:
            self.path = model_source(model, self.notes.append).path
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
        meta_path = self.path / "assets.extra" / "keras_unet.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.instance_settings = {**INSTANCE_DEFAULTS, **meta.get("instances", {})}
        self._serve = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        spec = self._serve.structured_input_signature[1]["images"]
        self.channels = int(spec.shape[-1])
        self.n_classes = int(self._serve.structured_outputs["probabilities"].shape[-1])
        low, high = meta.get("input_range") or (None, None)
        # the graph normalises; this copy of the contract checks the raw image first
        self.contract = Normalizer(meta.get("normalization", "image"),
                                   float(meta.get("input_scale", 255.0)), self.channels,
                                   meta.get("input_dtype"), low, high)

    def __call__(self, image: np.ndarray, name: str = "image", progress=None) -> np.ndarray:
        """Class probabilities, float32 ``(H, W, n_classes)``, for a raw ``(H, W[, C])`` image
        of any dtype (the model's own preprocessing is applied). Raises a ValueError naming
        ``name`` for pixels the model cannot take (see
        :meth:`keras_unet.preprocess.Normalizer.check`)."""
        if self.kind == "saved_model":
            import warnings

            from .images import InputWarning

            image = self.contract.channels_of(image, name)
            for message in self.contract.check(image, name):
                warnings.warn(message, InputWarning, stacklevel=2)
            try:
                out = self._serve(images=tf.constant(image[None].astype(np.float32)))
            except tf.errors.InvalidArgumentError as exc:  # the graph's own refusals
                raise ValueError(f"{name}: {graph_error(exc.message)}") from None
            return out["probabilities"].numpy()[0]
        return predict_tiled(self.model, self.normalizer(image, name), self.tile_size,
                             self.batch_size, self.tta, progress=progress)


def predict_instances(model, image: np.ndarray, options: InstanceOptions | None = None,
                      tile_size: int | None = None, batch_size: int = 4,
                      tta: bool = False) -> np.ndarray:
    """Instance labels for a **raw** image (as the command line reads it; the model's own
    preprocessing is applied): one id per object, 0 = background.

    Args:
        model: a ``.keras`` path, SavedModel folder, ``keras.Model`` or :class:`Predictor`.
        image: raw ``(H, W)`` / ``(H, W, C)`` image of any dtype and size; never normalised
            beforehand (a float image already normalised is refused or misread like any raw
            image the model's training never meant).
        options: post-processing; default the model's own settings.

    Returns:
        ``(H, W)`` uint16 labels (uint32 beyond 65,535 objects).
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, tile_size,
                                                                     batch_size, tta)
    settings = InstanceOptions.of(options).resolve(predictor.instance_settings)
    return label_instances(predictor(image), **settings)


def _write_outputs(out: _Output, path: Path, pages: list[np.ndarray], probs: list[np.ndarray],
                   n_classes: int, overlay: bool, save_probabilities: bool,
                   instances: dict | None = None) -> int | None:
    """Write the outputs of one input; returns its number of objects with ``instances``."""
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
    write_masks(out, path, masks)
    if objects:
        dtype = label_dtype(max(int(o.max()) for o in objects))
        with atomic_path(out.path(f"{path.stem}_instances.tif")) as tmp:
            data = np.stack(objects) if len(objects) > 1 else objects[0]
            tifffile.imwrite(tmp, data.astype(dtype), compression="zlib")
        return sum(int(o.max()) for o in objects)  # ids are 1..N on each page
    return None


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
    axes: str | None = None,
    log: Callable[[str], None] | None = None,
) -> PredictReport:
    """Segment image files and folders with a local model; write masks, overlays, probabilities.

    Every file is read by the one reader (:func:`keras_unet.images.read_stack`; ``axes``: the
    TIFF inputs' axes, ``--axes``). Inputs whose whole-image prediction would take more memory
    than :func:`keras_unet.lazyio.blockwise_reason` allows (or with more than
    ``BLOCKWISE_PIXELS`` pixels), zarr inputs, and every input with ``blockwise``, whatever the
    format, are predicted strip by strip (:func:`keras_unet.large.predict_large`; a PNG or JPEG
    is read in full once): tiled BigTIFF (or zarr) outputs and no overlay; ``report.notes`` says
    which and why, with the speed, and ``progressbar`` (a ``click.progressbar``-like factory)
    shows the pixels done and the ETA.

    Writes ``NAME_mask.png`` (a multi-page ``NAME_mask.tif`` for TIFF stacks),
    ``NAME_overlay.png`` and, if asked, ``NAME_probabilities.npy`` (float32 ``(H, W, K)``) into
    ``output``. With ``instances``, also ``NAME_instances.tif``: uint16 labels, one id per object
    (uint32 beyond 65,535 objects), and the overlay shows each object in its own colour. A file
    that cannot be read or predicted is reported in the result and skipped.

    Args:
        progress: wraps the list of files (a progress bar, say) and yields them.
        log: hears which model a name stood for (a packaged model's) before any file is read;
            without it, that line opens ``report.notes``.
    """
    validate_batch_tile(batch_size, tile_size)
    axes = check_axes(axes)
    files = expand_inputs(inputs)
    check_writable(output)
    predictor = Predictor(model, tile_size, batch_size, tta)
    for note in predictor.notes if log else ():
        log(note)
    settings = (InstanceOptions.of(instances).resolve(predictor.instance_settings)
                if instances is not None else None)

    def one(out: _Output, path: Path) -> None:
        reason, pixels = blockwise_reason(path, axes, predictor.n_classes, settings is not None,
                                          overlay, save_probabilities, tta)
        if blockwise or reason:
            if predictor.kind != "keras":
                raise ValueError(f"{path}: block-wise prediction needs a .keras model")
            with (progressbar or no_bar)(length=pixels or 1, label=(
                    f"{path.name}: {pixels / 1e6:.1f} megapixels, block-wise")) as bar:
                done = predict_large(predictor.model, path, out.ensure(), tile_size, batch_size,
                                     settings, save_probabilities, progress=bar.update, axes=axes)
            out.report.written.extend(done.outputs.values())
            out.report.notes.append(f"{path.name}: {done.shape[1]}x{done.shape[0]} px "
                                    f"({done.shape[0] * done.shape[1] / 1e6:.1f} megapixels) "
                                    f"predicted block-wise ({reason or 'asked for'}), "
                                    f"{done.megapixels_per_second:.1f} megapixels/s")
            return
        pages = read_pages(path, axes=axes)
        probs = [predictor(page, name) for page, name in zip(pages, page_names(path, len(pages)))]
        found = _write_outputs(out, path, pages, probs, predictor.n_classes, overlay,
                               save_probabilities, settings)
        if found is not None:
            out.report.objects.append((path.name, found))

    report = each_file(files, output, one, progress)
    report.notes[:0] = [] if log else predictor.notes
    return report



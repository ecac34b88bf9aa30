"""Models that ship inside the package, and the names that stand for them.

A packaged model is a folder ``keras_unet/models/NAME/`` holding:

* ``model.keras``: the U-Net with its preprocessing contract and calibrated object settings
  (:mod:`keras_unet.preprocess`), stored with float16 weights to halve the file
  (:func:`save_half`); every loader here turns it back into a float32 model (:func:`as_float32`);
* ``info.json``: its version, the sha256 of ``model.keras``, how far float16 storage moves its
  predictions (measured when it was packaged, :func:`package_model`), and its figures;
* ``config.json``: the ``keras-unet fit`` settings it was trained with;
* ``MODEL_CARD.md``: training data and licences, intended use, figures, limits, how to cite;
* ``sample.tif`` (optional): a small CC0 image to try it on, also the bioimage.io test image.

Wherever a model path goes (``keras-unet predict/evaluate/export MODEL``, ``fit --init MODEL``)
the name of a packaged model may stand instead (:func:`resolve_model`). A file or folder of that
name in the working folder wins, and the log says which was used; ``pretrained:NAME`` always
means the packaged one. In Python, :func:`load_pretrained` loads one by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._compat import keras
from .files import atomic_path, write_json_atomic
from .model import build_unet, geometry_of
from .preprocess import instance_settings_of, normalizer_of, set_instance_settings

__all__ = ["MODELS_DIR", "PREFIX", "ModelSource", "packaged_models", "packaged_info",
           "resolve_model", "model_source", "load_pretrained", "architecture_of", "as_float32",
           "save_half", "half_precision_error", "package_model", "file_sha256", "sample"]

#: where the packaged models live (package data)
MODELS_DIR = Path(__file__).with_name("models")
#: ``pretrained:NAME`` names a packaged model even where a file called NAME exists
PREFIX = "pretrained:"

Log = Callable[[str], None]


def packaged_models() -> list[str]:
    """The names of the models shipped with this installation (folders holding model.keras)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in MODELS_DIR.glob("*/model.keras"))


def _folder(name: str) -> Path:
    if name not in packaged_models():
        known = ", ".join(packaged_models()) or "none in this installation"
        raise ValueError(f"{name!r} is not a packaged model (packaged models: {known})")
    return MODELS_DIR / name


def packaged_info(name: str) -> dict[str, Any]:
    """The ``info.json`` of a packaged model ({} if it has none)."""
    path = _folder(name) / "info.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def packaged_card(name: str) -> dict[str, Any]:
    """What an export of packaged model ``name`` says of it, from its ``MODEL_CARD.md`` and
    ``info.json``: ``description`` (the card's first paragraph), ``data`` (the training data
    and their licences), ``cite`` (the card's references that have a DOI, as bioimage.io
    ``{"text", "doi"}`` entries) and ``card`` (the whole card, Markdown)."""
    folder, info = _folder(name), packaged_info(name)
    card = (folder / "MODEL_CARD.md").read_text() if (folder / "MODEL_CARD.md").is_file() else ""
    paragraphs = [p.strip() for p in card.split("\n\n") if p.strip() and not p.startswith("#")]
    first = paragraphs[0].replace("**", "") if paragraphs else f"The packaged model {name}."
    cite_part = card.split("## How to cite", 1)[1] if "## How to cite" in card else ""
    cite = [{"text": text.strip(" ."), "doi": doi.rstrip(".")} for text, doi in
            re.findall(r"^\* (.+?)\s*doi:(\S+)\s*$", cite_part, re.MULTILINE)]
    data = "; ".join(f"{key}: {what}" for key, what in info.get("trained_on", {}).items())
    return {"description": f"keras-unet packaged model '{name}' {info.get('version', '')}: "
                           f"{first}", "data": data or "see the model card",
            "cite": cite, "card": card}


def packaged_config(name: str, config: dict[str, Any],
                    card: dict[str, Any] | None = None) -> dict[str, Any]:
    """A packaged model's training configuration as its exports record it: the data paths of
    the machine it was trained on give way to what the data were (``card``, read with
    :func:`packaged_card` when not given)."""
    local = ("images", "masks", "val_images", "val_masks", "balance")
    return {k: v for k, v in config.items() if k not in local} | {
        "images": (card or packaged_card(name))["data"]}


def sample(name: str = "nuclei") -> Path:
    """The sample image that ships with packaged model ``name`` (``sample.tif``: for the
    nuclei model a 256 px crop of a held-out BBBC039 image, CC0), to try the model on.

    Raises:
        ValueError: ``name`` is not a packaged model, or it has no sample image.
    """
    path = _folder(name) / "sample.tif"
    if not path.is_file():
        raise ValueError(f"the packaged model {name!r} has no sample image")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: the ``.keras`` file, and the packaged name and version if any."""

    path: Path
    packaged: str | None = None
    version: str | None = None

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)

    @property
    def label(self) -> str:
        """What names it unambiguously: ``pretrained:NAME`` or the file's absolute path."""
        return f"{PREFIX}{self.packaged}" if self.packaged else str(self.path.resolve())

    def describe(self) -> str:
        if self.packaged:
            return (f"the packaged model {self.packaged!r} (version {self.version or '?'}, "
                    f"sha256 {self.sha256[:12]})")
        return str(self.path)


def model_source(model: str | os.PathLike, log: Log | None = None) -> ModelSource:
    """Resolve what the user named: a packaged model's name, ``pretrained:NAME``, a ``.keras``
    file, a run folder (its ``model.keras``), or anything else (returned as it is, for the
    caller's own error).

    A file or folder in the working folder wins over a packaged model of the same name; ``log``
    hears which was used whenever the name is a packaged model's, or a run folder's file.
    """
    say = log or (lambda _msg: None)
    text = os.fspath(model)
    if text.startswith(PREFIX):
        name = text[len(PREFIX):]
        folder = _folder(name)
        source = ModelSource(folder / "model.keras", name, packaged_info(name).get("version"))
        say(f"Using {source.describe()}.")
        return source
    path = Path(text)
    if path.exists():
        run_folder = path.is_dir() and (path / "model.keras").is_file() and not (
            path / "saved_model.pb").is_file()
        if text in packaged_models():
            if not (run_folder or (path / "saved_model.pb").is_file() or path.suffix == ".keras"):
                kind = "folder" if path.is_dir() else "file"
                raise ValueError(f"{text}: the {kind} {path.resolve()} is not a model (a model "
                                 "is a .keras file, a run folder or a SavedModel folder), and "
                                 "a file or folder of that name wins over the packaged model; "
                                 f"write {PREFIX}{text} for the packaged one, or rename it")
            say(f"Using {path.resolve()} from the working folder, not the packaged model "
                f"{text!r} (a file or folder of that name wins; write {PREFIX}{text} for the "
                "packaged one).")
        elif run_folder:
            say(f"Using {(path / 'model.keras').resolve()}.")
        return ModelSource(path / "model.keras" if run_folder else path)
    if text in packaged_models():
        return model_source(PREFIX + text, log)
    if not path.suffix and len(path.parts) == 1:  # a packaged model's name, mistyped?
        import difflib

        near = difflib.get_close_matches(text, packaged_models(), n=1)
        if near:
            raise FileNotFoundError(f"{text} is neither a file nor a packaged model: did you "
                                    f"mean {near[0]}?")
    return ModelSource(path)


def export_name(model: str | os.PathLike) -> str:
    """The name an export of ``model`` gets by default: a packaged model's own, else ``unet``."""
    return model_source(model).packaged or "unet"


def resolve_model(model: str | os.PathLike, log: Log | None = None) -> Path:
    """The path that ``model`` stands for (see :func:`model_source`)."""
    return model_source(model, log).path


def load_pretrained(name: str) -> keras.Model:
    """A packaged model by name, as a float32 U-Net ready to predict or to fine-tune.

    ``name`` is a packaged model's name (see :func:`packaged_models`; ``"nuclei"``: fluorescent
    nuclei, its card is ``keras_unet/models/nuclei/MODEL_CARD.md``), never a path. The model
    carries its preprocessing and its calibrated object settings.

    Fine-tuning it in plain Keras code: wrap it with
    :func:`keras_unet.build_training_model` (image, labels and weight map in, the paper's
    weighted loss inside), freeze the contracting path if you like, and fit it on dictionaries
    of tiles (``fit --init`` uses a learning rate of 1e-3, measured)::

        import keras
        from keras_unet import build_training_model, load_pretrained, normalizer_of
        unet = load_pretrained("nuclei")          # (B, H, W, 1) raw-normalised -> (B, h, w, 2)
        for layer in unet.layers:                 # optional: keep the contracting path
            if layer.name.startswith(("down", "bottleneck")):
                layer.trainable = False
        model = build_training_model(unet)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        # image: normalizer_of(unet)(raw) tiles; labels, weights: the output tile's size
        model.fit({"image": x, "labels": y, "weights": w}, batch_size=2, epochs=10)
        unet.save("my_nuclei.keras")              # trained in place: same layers

    ``keras-unet fit --init nuclei`` does the same from folders of images and masks.

    Raises:
        ValueError: ``name`` is not a packaged model.
    """
    if not isinstance(name, str) or name.startswith(PREFIX):
        name = str(name).removeprefix(PREFIX)
    return _load(_folder(name) / "model.keras")


def _load(path: Path) -> keras.Model:
    """A float32 U-Net from a ``.keras`` file this package wrote."""
    from . import losses  # noqa: F401  (registers the layers a U-Net file holds)

    return as_float32(keras.models.load_model(path))


# --------------------------------------------------------------------------------------------
# What a model is, and storing it in float16


def architecture_of(unet: keras.Model) -> dict[str, Any]:
    """The settings of :func:`keras_unet.build_unet` that made ``unet`` (also after loading):
    ``depth``, ``filters``, ``padding``, ``dropout``, ``batch_norm``, ``n_classes``,
    ``channels``, and its contract ``normalization`` and ``input_scale``."""
    geo = geometry_of(unet)
    first = next(lyr for lyr in unet.layers if isinstance(lyr, keras.layers.Conv2D))
    dropouts = [lyr.rate for lyr in unet.layers if isinstance(lyr, keras.layers.Dropout)]
    normalizer = normalizer_of(unet)
    return {"depth": geo.depth, "filters": int(first.filters), "padding": geo.padding,
            "dropout": float(dropouts[0]) if dropouts else 0.0,
            "batch_norm": any(isinstance(lyr, keras.layers.BatchNormalization)
                              for lyr in unet.layers),
            "n_classes": int(unet.output_shape[-1]), "channels": int(unet.input_shape[-1]),
            "normalization": normalizer.mode, "input_scale": float(normalizer.scale)}


def _rebuild(unet: keras.Model, dtype: str) -> keras.Model:
    """The same U-Net (architecture, contract, object settings, weights) with ``dtype``
    variables."""
    arch = architecture_of(unet)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        copy = build_unet((None, None, arch["channels"]), arch["n_classes"], arch["depth"],
                          arch["filters"], arch["padding"], arch["dropout"], arch["batch_norm"],
                          name=unet.name, normalizer=normalizer_of(unet))
    finally:
        keras.config.set_dtype_policy(before)
    set_instance_settings(copy, **instance_settings_of(unet))
    copy.set_weights([np.asarray(w).astype(dtype) for w in unet.get_weights()])
    return copy


def as_float32(unet: keras.Model) -> keras.Model:
    """``unet`` itself if its weights are float32, else a float32 copy (a packaged model is
    stored in float16)."""
    if all(w.dtype == "float32" for w in unet.weights):
        return unet
    return _rebuild(unet, "float32")


def save_half(unet: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``unet`` as a ``.keras`` file with float16 weights (half the size), atomically.

    Loading it with :func:`keras_unet.load_model` or :func:`load_pretrained` gives float32 back;
    plain ``keras.models.load_model`` gives a float16 network.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        _rebuild(unet, "float16").save(tmp)
    return path


def half_precision_error(unet: keras.Model, images: Sequence[np.ndarray]) -> dict[str, float]:
    """How far float16 storage moves the predictions of ``unet`` on raw ``images``.

    Returns:
        ``{"max_abs_probability": largest |p16 - p32| of any class probability over all
        pixels, "changed_pixels": fraction of pixels whose class changes}``.
    """
    from .tiling import predict_tiled

    half = as_float32(_rebuild(unet, "float16"))
    normalizer = normalizer_of(unet)
    worst, changed, total = 0.0, 0, 0
    for image in images:
        x = normalizer(image)
        p32, p16 = predict_tiled(unet, x), predict_tiled(half, x)
        worst = max(worst, float(np.abs(p32 - p16).max()))
        changed += int((p32.argmax(-1) != p16.argmax(-1)).sum())
        total += p32.shape[0] * p32.shape[1]
    return {"max_abs_probability": worst, "changed_pixels": changed / max(total, 1)}


def package_model(model_path: str | os.PathLike, folder: str | os.PathLike, version: str,
                  images: Sequence[np.ndarray], info: dict | None = None,
                  tolerance: float = 0.02, log: Log | None = None) -> Path:
    """Copy a trained model into a packaged-model folder: ``model.keras`` in float16, and an
    ``info.json`` with ``version``, its sha256, and the float16 error measured on ``images``
    (refused above ``tolerance``, a probability). ``info`` adds keys (figures, say); the run's
    ``config.json`` is copied beside it. Returns the model file's path.
    """
    say = log or (lambda _msg: None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet = _load(model_path)
    error = half_precision_error(unet, images)
    say(f"float16 storage: predictions move by at most {error['max_abs_probability']:.2e} in "
        f"probability; {error['changed_pixels']:.2e} of the pixels change class "
        f"({len(images)} images).")
    if error["max_abs_probability"] > tolerance:
        raise ValueError(f"float16 storage moves the probabilities by "
                         f"{error['max_abs_probability']:.3g} > {tolerance}; not packaged")
    target = save_half(unet, folder / "model.keras")
    config = Path(model_path).parent / "config.json"
    if config.is_file():
        (folder / "config.json").write_text(config.read_text())
    write_json_atomic(folder / "info.json", {
        **(info or {}), "version": version, "sha256": file_sha256(target),
        "float16_storage": {**error, "tolerance": tolerance, "images": len(images)},
        "instances": instance_settings_of(unet), "architecture": architecture_of(unet)})
    say(f"Packaged {target} ({target.stat().st_size / 1e6:.1f} MB), version {version}.")
    return target

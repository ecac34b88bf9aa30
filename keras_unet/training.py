"""Training: the run configuration, ``train`` and what it writes to a run directory.

A run directory holds:

* ``model.keras``: the inference U-Net (image -> probabilities), loadable with
  ``keras.models.load_model`` and no custom_objects;
* ``config.json``: the resolved :class:`TrainConfig`, so the run can be repeated;
* ``history.csv``: loss (and metrics) per epoch.

Files are written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written model behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ._compat import keras
from .data import TrainingSet, normalize, targets_from_mask, training_dataset
from .losses import build_training_model
from .model import Geometry, build_unet

__all__ = ["TrainConfig", "TrainResult", "train", "prepare_training_set", "save_model_atomic"]

OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Sizes in px, rates per step.

    The defaults train a laptop-sized version of the paper's network (depth 5, 16 instead of 64
    base filters) with the paper's weight map (w0 = 10, sigma = 5 px, balanced classes).
    """

    # model
    depth: int = 5
    filters: int = 16
    padding: str = "valid"
    dropout: float = 0.5
    batch_norm: bool = False
    n_classes: int = 2
    # tiles
    tile_size: int = 316
    batch_size: int = 2
    normalization: str = "image"
    # schedule
    epochs: int = 10
    steps_per_epoch: int = 50
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.99
    # weight map
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | None = "balanced"
    mask_type: str = "auto"
    seed: int = 0
    input_scale: float = 255.0  # dtype maximum of the training images, for "fixed" normalisation

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.depth, self.padding)

    def validate(self) -> "TrainConfig":
        """Check every field; raise ValueError naming the option and the fix."""
        geo = self.geometry  # checks depth and padding
        geo.check(self.tile_size, "tile size")
        positive = ("filters", "batch_size", "epochs", "steps_per_epoch")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.n_classes < 2:
            raise ValueError(f"classes must be >= 2 (background counts), got {self.n_classes}")
        if self.sigma <= 0 or self.w0 < 0:
            raise ValueError(f"need sigma > 0 and w0 >= 0, got sigma={self.sigma}, w0={self.w0}")
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be 'balanced' or None, got {self.class_weights!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise a ValueError that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained U-Net, where it was saved, and the loss history."""

    model: keras.Model
    model_path: Path
    history: dict[str, list[float]]


def prepare_training_set(
    images: list[np.ndarray], masks: list[np.ndarray], config: TrainConfig,
    names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainingSet:
    """Normalise images and turn masks into class labels and weight maps (computed once, here).

    Args:
        images: ``(H, W)`` or ``(H, W, C)`` arrays in their own dtype.
        masks: ``(H, W)`` masks (see :func:`keras_unet.data.targets_from_mask`).
        config: supplies normalisation, classes, mask type and weight-map settings.
        names: one name per image for error messages (file names, say).
        progress: called with 1 after each image (a progress bar's ``update``).
    """
    names = names or [f"image {i}" for i in range(len(images))]
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks")
    xs, ys, ws = [], [], []
    for image, mask, name in zip(images, masks, names):
        x = normalize(image, config.normalization)
        if x.shape[:2] != np.shape(mask)[:2]:
            raise ValueError(
                f"{name}: image is {x.shape[1]}x{x.shape[0]} but its mask is "
                f"{np.shape(mask)[1]}x{np.shape(mask)[0]} (width x height); they must match"
            )
        y, w = targets_from_mask(
            mask, config.n_classes, config.mask_type, config.w0, config.sigma,
            config.class_weights, source=name,
        )
        xs.append(x)
        ys.append(y)
        ws.append(w)
        if progress is not None:
            progress(1)
    return TrainingSet(xs, ys, ws)


def _optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.lr, momentum=config.momentum)
    return keras.optimizers.Adam(config.lr)


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` as a ``.keras`` file via a temporary name, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def _write_json_atomic(data: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def train(
    config: TrainConfig,
    data: TrainingSet,
    run_dir: str | os.PathLike,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train a U-Net on random tiles of ``data`` and save it to ``run_dir``.

    Args:
        config: the run's settings (validated here).
        data: normalised images with class labels and weight maps
            (see :func:`prepare_training_set`).
        run_dir: where ``model.keras``, ``config.json`` and ``history.csv`` go (created).
        verbose: Keras' progress display (``"auto"``: a progress bar per epoch).
        callbacks: more Keras callbacks.

    Returns:
        A :class:`TrainResult`.
    """
    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    unet = build_unet(
        (None, None, data.channels), config.n_classes, config.depth, config.filters,
        config.padding, config.dropout, config.batch_norm,
    )
    model = build_training_model(unet)
    model.compile(optimizer=_optimizer(config))
    dataset = training_dataset(
        data, config.geometry, config.tile_size, config.batch_size, seed=config.seed
    )
    _write_json_atomic(config.to_dict(), run_dir / "config.json")
    history = model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        verbose=verbose,
        shuffle=False,  # the dataset draws random tiles itself
        callbacks=[keras.callbacks.CSVLogger(str(run_dir / "history.csv"))] + list(callbacks or []),
    )
    model_path = save_model_atomic(unet, run_dir / "model.keras")
    return TrainResult(unet, model_path, {k: [float(v) for v in vs] for k, vs in history.history.items()})

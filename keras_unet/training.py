"""Training: the run configuration, ``train``, and what it writes to a run directory.

A run directory holds:

* ``config.json``: the resolved :class:`TrainConfig`, so the run can be repeated;
* ``checkpoints/last.keras``: the training model with its optimizer state after the last finished
  epoch (``fit --resume`` continues from it); ``checkpoints/best.keras``: the inference U-Net of the
  best epoch (lowest validation loss, or training loss without validation), with ``best.json``;
* ``model.keras``: the final inference U-Net (image -> probabilities), loadable with
  ``keras.models.load_model`` and no custom_objects; always float32;
* ``history.csv``: loss and validation metrics per epoch; ``curves.png``: the same as a plot;
* ``logs/``: TensorBoard scalars and validation images (image, prediction, weight map).

Every file is written to a temporary name and renamed into place, so a killed run never leaves a
half-written model behind and loses at most the epoch in progress.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ._compat import distributed_symbolic_build, keras, patch_multi_worker_reduction, tf
from .augment import Augmentation
from .data import (
    TrainingSet,
    normalize,
    targets_from_mask,
    training_dataset,
    validation_dataset,
    validation_tiles,
)
from .losses import build_training_model
from .model import Geometry, build_unet

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "PRESETS",
    "train",
    "prepare_training_set",
    "save_model_atomic",
    "load_config_file",
    "make_strategy",
]

OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multi-worker")
MIXED = (None, "float16", "bfloat16")
_AUGMENT = Augmentation()  # the default augmentation


@dataclass
class TrainConfig:
    """Everything that defines a training run. Sizes in px, rates per step.

    The defaults train a laptop-sized version of the paper's network (depth 5, 16 instead of 64
    base filters) with the paper's weight map (w0 = 10, sigma = 5 px, balanced classes) and the
    paper's elastic deformation. ``PRESETS["paper"]`` holds the paper's own recipe.
    """

    # data (paths are recorded so a run can be repeated or resumed)
    images: str | None = None
    masks: str | None = None
    val_images: str | None = None
    val_masks: str | None = None
    val_fraction: float = 0.0
    mask_type: str = "auto"
    normalization: str = "image"
    input_scale: float = 255.0  # dtype maximum of the training images, for "fixed" normalisation
    # model
    depth: int = 5
    filters: int = 16
    padding: str = "valid"
    dropout: float = 0.5
    batch_norm: bool = False
    n_classes: int = 2
    # tiles and schedule
    tile_size: int = 316
    batch_size: int = 2
    epochs: int = 10
    steps_per_epoch: int = 50
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.99
    # weight map
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | None = "balanced"
    # augmentation: flat keys for config files and options, defaults from Augmentation
    elastic: bool = _AUGMENT.elastic
    elastic_grid: int = _AUGMENT.grid
    elastic_sigma: float = _AUGMENT.elastic_sigma
    flips: bool = _AUGMENT.flips
    rotation: float = _AUGMENT.rotation
    shift: float = _AUGMENT.shift
    brightness: float = _AUGMENT.brightness
    contrast: float = _AUGMENT.contrast
    # speed and scale
    mixed_precision: str | None = None
    jit: bool = False
    strategy: str = "default"
    seed: int = 0

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.depth, self.padding)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(
            elastic=self.elastic, grid=self.elastic_grid, elastic_sigma=self.elastic_sigma,
            flips=self.flips, rotation=self.rotation, shift=self.shift,
            brightness=self.brightness, contrast=self.contrast,
        )

    def validate(self) -> "TrainConfig":
        """Check every field; raise ValueError naming the option and the fix."""
        self._check_types()
        geo = self.geometry  # checks depth and padding
        geo.check(self.tile_size, "tile size")
        for name in ("filters", "batch_size", "epochs", "steps_per_epoch", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ValueError(f"classes must be >= 2 (background counts), got {self.n_classes}")
        if self.sigma <= 0 or self.w0 < 0:
            raise ValueError(f"need sigma > 0 and w0 >= 0, got sigma={self.sigma}, w0={self.w0}")
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be 'balanced' or None, got {self.class_weights!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.val_fraction and (self.val_images or self.val_masks):
            raise ValueError(
                "give either a validation fraction or validation folders, not both"
            )
        if bool(self.val_images) != bool(self.val_masks):
            raise ValueError("give both val_images and val_masks (or neither)")
        if bool(self.images) != bool(self.masks):
            raise ValueError("give both --images and --masks (or neither, for the demo data)")
        if self.mixed_precision not in MIXED:
            raise ValueError(
                f"mixed_precision must be float16, bfloat16 or off, got {self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        self.augmentation.validate()
        return self

    def _check_types(self) -> None:
        """Each value has its field's type (config files can hold anything)."""
        kinds = {"bool": ((bool,), "true or false"), "int": ((int,), "an integer"),
                 "float": ((int, float), "a number"), "str": ((str,), "a string")}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            optional = f.type.endswith("| None")
            if optional and value is None:
                continue
            types, what = kinds[f.type.removesuffix("| None").strip()]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ValueError(f"{f.name} must be {what}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise a ValueError that names them."""
        check_keys(values)
        return cls(**values)


def check_keys(values: Mapping[str, Any], source: str = "config") -> None:
    """Raise a ValueError naming the keys of ``values`` that TrainConfig does not have."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {source} key(s): {', '.join(unknown)} (known keys: see keras-unet fit --help)"
        )


# The paper's recipe: SGD with high momentum on one large tile per batch, He init and dropout
# (always on in build_unet), the weight map with w0 = 10 and sigma = 5 px, elastic deformation.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        depth=5, filters=64, padding="valid", dropout=0.5, tile_size=572, batch_size=1,
        optimizer="sgd", momentum=0.99, lr=0.01, w0=10.0, sigma=5.0, elastic=True,
        elastic_grid=3, elastic_sigma=10.0,
    ),
}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or YAML file of TrainConfig keys; unknown keys raise an error naming them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - depends on the environment
            raise ValueError(
                f"{path} is YAML, which needs PyYAML: pip install pyyaml (or use a .json file)"
            ) from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    check_keys(values, f"config file {path}")
    return values


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained U-Net, where it was saved, and the history."""

    model: keras.Model
    model_path: Path
    best_path: Path | None
    history: dict[str, list[float]]
    initial_epoch: int = 0


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the model was saved before stopping."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
        if np.asarray(image).dtype.kind == "f" and not np.all(np.isfinite(image)):
            raise ValueError(
                f"{name}: the image holds NaN or infinite values; replace them (e.g. with "
                "numpy.nan_to_num) before training"
            )
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


# --------------------------------------------------------------------------------------------
# Devices: distribution strategies and mixed precision (the one place that sets them up)


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs) or ``multi-worker``
    (``MultiWorkerMirroredStrategy``; the cluster comes from the ``TF_CONFIG`` variable)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multi-worker needs the TF_CONFIG variable describing the cluster "
                "(see the README, 'Training on several machines')"
            )
        patch_multi_worker_reduction()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def worker_info() -> tuple[int, bool]:
    """This process's worker index in ``TF_CONFIG`` and whether it is the chief.

    The chief is the task of type ``chief``, or worker 0 when the cluster has no chief.
    """
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is not valid JSON") from None
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    return index, kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


@contextlib.contextmanager
def precision(mixed: str | None) -> Iterator[None]:
    """Use Keras' ``mixed_float16``/``mixed_bfloat16`` policy inside the block, float32 after."""
    before = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy(f"mixed_{mixed}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def float32_copy(unet: keras.Model, config: TrainConfig, channels: int) -> keras.Model:
    """The same U-Net in float32 (for saving and export) with ``unet``'s weights."""
    if not config.mixed_precision:
        return unet
    with precision(None):
        plain = build_unet(
            (None, None, channels), config.n_classes, config.depth, config.filters,
            config.padding, config.dropout, config.batch_norm, name=unet.name,
        )
    plain.set_weights(unet.get_weights())
    return plain


# --------------------------------------------------------------------------------------------
# Callbacks


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, and remember where."""

    def __init__(self):
        super().__init__()
        self.where: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


class ValidationMetrics(keras.callbacks.Callback):
    """Pixel error, foreground IoU and Dice on the validation tiles, added to the epoch's logs
    as ``val_pixel_error``, ``val_iou``, ``val_dice`` (so the progress bar, the CSV log,
    TensorBoard and the checkpoints see them)."""

    def __init__(self, unet: keras.Model, tiles: dict[str, np.ndarray], batch_size: int = 2):
        super().__init__()
        self.unet, self.tiles, self.batch_size = unet, tiles, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        probs = self.unet.predict(self.tiles["image"], batch_size=self.batch_size, verbose=0)
        pred = np.argmax(probs, axis=-1)
        truth, valid = self.tiles["labels"], self.tiles["valid"]
        p, t = pred[valid], truth[valid]
        logs["val_pixel_error"] = float(np.mean(p != t)) if p.size else float("nan")
        ious, dices = [], []
        for k in range(1, probs.shape[-1]):
            inter = np.sum((p == k) & (t == k))
            a, b = np.sum(p == k), np.sum(t == k)
            ious.append(inter / (a + b - inter) if a + b - inter else 1.0)
            dices.append(2 * inter / (a + b) if a + b else 1.0)
        logs["val_iou"], logs["val_dice"] = float(np.mean(ious)), float(np.mean(dices))


class Checkpoints(keras.callbacks.Callback):
    """After each epoch with a finite loss: the training model with its optimizer to
    ``checkpoints/last.keras``; the inference U-Net to ``best.keras`` when the monitored value
    improved. Both atomic."""

    def __init__(self, folder: Path, unet: keras.Model, to_float32: Callable, monitor: str,
                 best: float = math.inf):
        super().__init__()
        self.folder, self.unet, self.to_float32 = folder, unet, to_float32
        self.monitor, self.best = monitor, best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for k, v in logs.items() if "loss" in k):
            return  # NaNGuard stops the run; the last good checkpoint stays
        save_model_atomic(self.model, self.folder / "last.keras")
        value = logs.get(self.monitor, logs.get("loss"))
        if value is not None and float(value) < self.best:
            self.best = float(value)
            save_model_atomic(self.to_float32(self.unet), self.folder / "best.keras")
            _write_json_atomic(
                {"epoch": epoch + 1, "monitor": self.monitor, "value": self.best},
                self.folder / "best.json",
            )


class TensorBoardImages(keras.callbacks.Callback):
    """A few validation tiles per epoch in TensorBoard: image | prediction | weight map."""

    def __init__(self, log_dir: Path, unet: keras.Model, tiles: dict[str, np.ndarray],
                 geometry: Geometry, n: int = 3):
        super().__init__()
        self.unet, self.geometry = unet, geometry
        pick = np.linspace(0, len(tiles["image"]) - 1, min(n, len(tiles["image"]))).astype(int)
        self.tiles = {k: v[pick] for k, v in tiles.items()}
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))

    def on_epoch_end(self, epoch, logs=None):
        from .visualize import colorize

        probs = self.unet.predict(self.tiles["image"], verbose=0)
        m = self.geometry.margin
        rows = []
        for image, prob, weights in zip(self.tiles["image"], probs, self.tiles["weights"]):
            crop = image[m : image.shape[0] - m, m : image.shape[1] - m, 0] if m else image[..., 0]
            lo, hi = np.percentile(crop, (1, 99))
            grey = colorize(crop, lo, hi, colormap=1)  # COLORMAP_BONE
            fg = colorize(1.0 - prob[..., 0], 0.0, 1.0)
            wmap = colorize(weights, 0.0, max(float(weights.max()), 1e-6))
            gap = np.full((grey.shape[0], 4, 3), 255, np.uint8)
            rows.append(np.concatenate([grey, gap, fg, gap, wmap], axis=1))
        with self.writer.as_default():
            tf.summary.image("validation: image | prediction | weight map",
                             np.stack(rows), step=epoch, max_outputs=len(rows))
        self.writer.flush()


# --------------------------------------------------------------------------------------------
# train


def tensorboard_available() -> bool:
    """Whether TensorBoard (which tf.summary needs) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _trim_history(path: Path, epochs: int) -> None:
    """Keep the first ``epochs`` rows of history.csv (a resumed run rewrites what follows)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs] if rows else []
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(keep)
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path) -> keras.Model:
    """The training model (with optimizer state) from ``run_dir/checkpoints/last.keras``."""
    path = run_dir / "checkpoints" / "last.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint to resume from ({path} is missing); start a new run"
        )
    import keras_unet.losses  # noqa: F401  (registers the loss layer)

    try:
        return keras.models.load_model(path)
    except Exception as exc:  # a damaged zip raises many types
        raise ValueError(
            f"cannot load checkpoint {path}: {type(exc).__name__}; the file is damaged, "
            "start a new run (or restore the file)"
        ) from None


def train(
    config: TrainConfig,
    data: TrainingSet,
    run_dir: str | os.PathLike,
    val_data: TrainingSet | None = None,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a U-Net on random augmented tiles of ``data`` and save it to ``run_dir``.

    Args:
        config: the run's settings (validated here).
        data: normalised images with class labels and weight maps
            (see :func:`prepare_training_set`).
        run_dir: where the run's files go (created; see the module docstring).
        val_data: validation images (never augmented), or None.
        verbose: Keras' progress display (``"auto"``: a progress bar per epoch).
        callbacks: more Keras callbacks.
        resume: continue from ``run_dir/checkpoints/last.keras`` (optimizer state included).
        log: where to report what is happening (``print``-like); silent if None.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C; the model was saved first.
    """
    config.validate()
    say = log or (lambda _msg: None)
    run_dir = Path(run_dir)
    worker, chief = worker_info() if config.strategy == "multi-worker" else (0, True)
    if not chief:  # other workers write beside the chief's files, never over them
        run_dir = run_dir / f"worker-{worker}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"batch size {config.batch_size} must be a multiple of the {replicas} replicas"
        )
    say(f"{replicas} replica(s): {config.batch_size // replicas} tile(s) per replica, "
        f"global batch {config.batch_size}.")

    with precision(config.mixed_precision), strategy.scope():
        if resume:
            model = load_checkpoint(run_dir)
            unet = _inner_unet(model)
        else:
            unet = build_unet(
                (None, None, data.channels), config.n_classes, config.depth, config.filters,
                config.padding, config.dropout, config.batch_norm,
            )
            model = build_training_model(unet)
            model.compile(optimizer=_optimizer(config), jit_compile=config.jit)
    initial_epoch = int(model.optimizer.iterations.numpy()) // config.steps_per_epoch
    if resume:
        say(f"Resuming at epoch {initial_epoch + 1} of {config.epochs} "
            f"(optimizer step {int(model.optimizer.iterations.numpy())}).")
        if initial_epoch >= config.epochs:
            raise ValueError(
                f"{run_dir} already finished {initial_epoch} of {config.epochs} epochs; "
                "pass a larger --epochs to train on"
            )

    aug = config.augmentation
    start = initial_epoch * config.steps_per_epoch * config.batch_size

    # Each worker draws its own tiles (its seed differs); Keras splits every global batch among
    # the worker's replicas. Sharding a generated dataset would only discard work, so it is off.
    dataset = training_dataset(
        data, config.geometry, config.tile_size, config.batch_size,
        config.seed + 7919 * worker, aug, start,
    )
    if config.strategy != "default":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)

    if chief:
        _write_json_atomic(config.to_dict(), run_dir / "config.json")
    history_csv = run_dir / "history.csv"
    if resume:
        _trim_history(history_csv, initial_epoch)
        for stale in run_dir.glob("**/.*.partial*"):  # left by a run killed while writing
            stale.unlink()
    to_float32 = lambda m: float32_copy(m, config, data.channels)  # noqa: E731
    guard = NaNGuard()
    cbs: list[keras.callbacks.Callback] = [guard]
    validation = None
    if val_data is not None:
        tiles = validation_tiles(val_data, config.geometry, config.tile_size)
        validation = validation_dataset(val_data, config.geometry, config.tile_size,
                                        config.batch_size)
        cbs.append(ValidationMetrics(unet, tiles, config.batch_size))
        if tensorboard_available():  # every worker: its predict takes part in collectives
            cbs.append(TensorBoardImages(run_dir / "logs", unet, tiles, config.geometry))
    best_info = ckpt_dir / "best.json"
    best = json.loads(best_info.read_text())["value"] if resume and best_info.exists() else math.inf
    monitor = "val_loss" if val_data is not None else "loss"
    # history.csv before the checkpoint: a run killed between the two has one row too many,
    # which --resume trims, never one too few.
    cbs += [
        keras.callbacks.CSVLogger(str(history_csv), append=resume),
        Checkpoints(ckpt_dir, unet, to_float32, monitor, best),
    ]
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False))
    else:
        say("TensorBoard is not installed, so no TensorBoard logs: pip install tensorboard")
    cbs += list(callbacks or [])
    if config.strategy != "default":
        distributed_symbolic_build(model)
    try:
        history = model.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=validation,
            verbose=verbose,
            shuffle=False,  # the dataset draws random tiles itself
            callbacks=cbs,
        )
    except KeyboardInterrupt:
        path = save_model_atomic(to_float32(unet), run_dir / "model.keras")
        raise TrainingInterrupted(
            f"Interrupted: the model as it stood is saved to {path}; "
            f"continue with keras-unet fit --resume {run_dir}"
        ) from None
    if guard.where is not None:
        last = ckpt_dir / "last.keras"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no epoch finished"
        raise TrainingDiverged(
            f"the loss became NaN at {guard.where}; {kept}. Lower --lr, check the images for "
            "NaN values, or try --optimizer adam"
        )
    model_path = save_model_atomic(to_float32(unet), run_dir / "model.keras")
    history_values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    if chief:
        from .visualize import plot_history, write_png

        full = read_history(history_csv)
        if full:
            write_png(run_dir / "curves.png", plot_history(full))
    best_path = ckpt_dir / "best.keras"
    return TrainResult(to_float32(unet), model_path, best_path if best_path.exists() else None,
                       history_values, initial_epoch)


def _inner_unet(model: keras.Model) -> keras.Model:
    """The inference U-Net sharing the training model's layers."""
    from .losses import unet_from_training_model

    return unet_from_training_model(model)


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """history.csv as ``{column: values}`` (``epoch`` included), or {} if it does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):  # CSVLogger writes "NA" for missing values
            return float("nan")

    return {k: [number(r[k]) for r in rows] for k in rows[0]}

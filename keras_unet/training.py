"""Training: ``train`` a U-Net into a run directory, and ``fit_run`` a planned run.

The data come ready from :mod:`keras_unet.prepare` (re-exported here). :func:`train` builds the network (its preprocessing contract included), fits it on random
augmented tiles, and writes the run directory described in :mod:`keras_unet.runs`. The callbacks
are :mod:`keras_unet.callbacks`; strategies and mixed precision are :mod:`keras_unet.devices`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ._compat import distributed_symbolic_build, keras, tf
from .callbacks import (
    Checkpoints,
    InstanceValidation,
    NaNGuard,
    TensorBoardImages,
    ValidationMetrics,
    save_model_atomic,
    tensorboard_available,
)
from .config import TrainConfig
from .data import TrainingSet, training_dataset, validation_tiles
from .devices import float32_copy, make_strategy, precision, resolve_precision
from .files import remove_partials, write_json_atomic
from .finetune import start_from
from .losses import build_training_model, unet_from_training_model
from .model import build_unet
from .prepare import load_training_data, prepare_training_set
from .preprocess import Normalizer, instance_settings_of, set_instance_settings
from .runs import RunPlan, finished, own_run_dir, read_history, trim_history

__all__ = [
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "train",
    "prepare_training_set",
    "load_training_data",
    "fit_run",
    "load_checkpoint",
]

Log = Callable[[str], None]
#: at most this many training images are used to calibrate the object settings on
CALIBRATION_IMAGES = 10
#: an output tile below this many px a side gets a warning: too few labelled pixels per step
SMALL_OUTPUT = 32


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


def fit_run(plan: RunPlan, log: Log | None = None, progressbar=None, verbose: int | str = "auto",
            data_memory: float | None = None, cache_dir: str | os.PathLike | None = None
            ) -> TrainResult:
    """Read the data of a planned run (:func:`keras_unet.runs.plan_run`) and train it.

    Args:
        log: where to report progress in words (``print``-like).
        progressbar: ``click.progressbar``-like factory for the weight-map computation.
        verbose: Keras' progress display.
        data_memory, cache_dir: GB the prepared data may take in memory, and where the disk
            cache goes beyond that (see :func:`keras_unet.prepare.load_training_data`).
    """
    config, say = plan.config, log or (lambda _msg: None)
    train_set, val_set = load_training_data(config, say, progressbar, data_memory, cache_dir,
                                            channels=config.init_channels)
    aug = config.augmentation
    switches = [n for n, on in (("elastic", aug.elastic), ("flips", aug.flips),
                                ("rotation", aug.rotation > 0), ("shift", aug.shift > 0),
                                ("zoom", aug.zoom > 0),
                                ("grey values", aug.brightness > 0 or aug.contrast > 0),
                                ("HED stains", aug.hed_jitter > 0), ("inversion", aug.invert > 0),
                                ("channel shuffle", aug.channel_shuffle),
                                ("greyscale", aug.greyscale > 0)) if on]
    say(f"Training a depth-{config.depth} U-Net with {config.filters} base filters on "
        f"{config.tile_size}px tiles (output {config.geometry.output_size(config.tile_size)}px), "
        f"batch {config.batch_size}, {config.epochs} epoch{'s' * (config.epochs != 1)} x "
        f"{config.steps_per_epoch} step{'s' * (config.steps_per_epoch != 1)}; "
        f"augmentation: {', '.join(switches) or 'off'}; computing in "
        f"{resolve_precision(config.mixed_precision) or 'float32'}.")
    if (out := config.geometry.output_size(config.tile_size)) < SMALL_OUTPUT:
        say(f"Warning: {config.tile_size}px tiles leave a {out}px output at depth {config.depth}, "
            f"so each step learns from only {out}x{out} labelled pixels per tile; --tile-size "
            f"{config.geometry.input_size_for_output(SMALL_OUTPUT)} or more gives at least "
            f"{SMALL_OUTPUT} px.")
    return train(config, train_set, plan.run_dir, val_set, verbose=verbose, resume=plan.resume,
                 log=say)


def _learning_rate(config: TrainConfig):
    """``lr``, or with ``lr_schedule="cosine"`` a rate that falls from ``lr`` to 0 along a half
    cosine over the run's ``epochs * steps_per_epoch`` steps. It follows the optimizer's step
    count, so a resumed run goes on where it stopped."""
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr,
                                                      config.epochs * config.steps_per_epoch)
    return config.lr


def _optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer (SGD with ``momentum`` or Adam) at :func:`_learning_rate`."""
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(_learning_rate(config), momentum=config.momentum)
    return keras.optimizers.Adam(_learning_rate(config))


def load_checkpoint(run_dir: str | os.PathLike) -> keras.Model:
    """The training model (with optimizer state) from ``run_dir/checkpoints/last.keras``."""
    path = Path(run_dir) / "checkpoints" / "last.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint to resume from ({path} is missing); start a new run"
        )
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # a damaged zip raises many types
        raise ValueError(
            f"cannot load checkpoint {path}: {type(exc).__name__}; the file is damaged, "
            "start a new run (or restore the file)"
        ) from None


def _models(config: TrainConfig, data: TrainingSet, run_dir: Path, resume: bool, say: Log):
    """The training model and its inference U-Net, new or from the last checkpoint, and the
    epoch to start at."""
    if resume:
        model = load_checkpoint(run_dir)
        unet = unet_from_training_model(model)
    else:
        if config.init:  # fine-tuning: the weights of another model
            unet = start_from(config, data.channels, data.border_width, data.min_object_size,
                              say)
        else:
            normalizer = Normalizer(config.normalization, config.input_scale, data.channels,
                                    config.input_dtype, config.input_min, config.input_max)
            unet = build_unet((None, None, data.channels), config.n_classes, config.depth,
                              config.filters, config.padding, config.dropout, config.batch_norm,
                              normalizer=normalizer, border_width=data.border_width)
            set_instance_settings(unet, min_size=data.min_object_size)
        model = build_training_model(unet)
        model.compile(optimizer=_optimizer(config), jit_compile=config.jit)
    step = int(model.optimizer.iterations.numpy())
    initial_epoch = step // config.steps_per_epoch
    if resume:
        if initial_epoch >= config.epochs:
            raise finished(run_dir, initial_epoch, config.epochs)
        say(f"Resuming at epoch {initial_epoch + 1} of {config.epochs} (optimizer step {step}).")
        if config.lr_schedule == "cosine":  # the checkpoint's schedule ends at the old total;
            # a run resumed with a larger --epochs follows the cosine over the new one
            model.optimizer.learning_rate = _learning_rate(config)
    return model, unet, initial_epoch


def _dataset(config: TrainConfig, data: TrainingSet, worker: int, initial_epoch: int):
    """Random augmented tiles. Each worker draws its own (its seed differs); Keras splits every
    global batch among the worker's replicas. Sharding a generated dataset would only discard
    work, so it is off."""
    start = initial_epoch * config.steps_per_epoch * config.batch_size
    dataset = training_dataset(data, config.geometry, config.tile_size, config.batch_size,
                               config.seed + 7919 * worker, config.augmentation, start)
    if config.strategy != "default":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset


def _callbacks(config, run_dir: Path, unet, val_data, resume: bool, to_float32, say: Log):
    """NaN guard, validation metrics and images, history.csv, checkpoints, TensorBoard."""
    cbs: list[keras.callbacks.Callback] = [NaNGuard()]
    if val_data is not None:
        tiles = validation_tiles(val_data, config.geometry, config.tile_size)
        cbs.append(ValidationMetrics(unet, tiles, config.batch_size))
        if val_data.instances is not None and config.n_classes == 2:
            cbs.append(InstanceValidation(unet, val_data.normalised, val_data.instances,
                                          val_data.border_width, -(-config.epochs // 8),
                                          config.epochs))
        if tensorboard_available():  # every worker: its predict takes part in collectives
            cbs.append(TensorBoardImages(run_dir / "logs", unet, tiles, config.geometry))
    best_info = run_dir / "checkpoints" / "best.json"
    best = json.loads(best_info.read_text())["value"] if resume and best_info.exists() else math.inf
    monitor = "val_loss" if val_data is not None else "loss"
    # history.csv before the checkpoint: a run killed between the two has one row too many,
    # which --resume trims, never one too few.
    cbs += [keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
            Checkpoints(run_dir / "checkpoints", unet, to_float32, monitor, best)]
    if tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False))
    else:
        say("TensorBoard is not installed, so no TensorBoard logs: pip install tensorboard")
    return cbs


def _diverged(guard: NaNGuard, run_dir: Path, created: bool) -> TrainingDiverged:
    """The error for a NaN loss. A run that diverged before its first checkpoint leaves nothing
    worth keeping: its folder goes, if this run created it."""
    last = run_dir / "checkpoints" / "last.keras"
    if last.exists():
        kept = f"the last good checkpoint is {last}"
    else:
        kept = "no epoch finished, so nothing was kept"
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
    return TrainingDiverged(f"the loss became NaN at {guard.where}; {kept}. Lower --lr, check "
                            "the images for NaN values, or try --optimizer adam")


def train(
    config: TrainConfig,
    data: TrainingSet,
    run_dir: str | os.PathLike,
    val_data: TrainingSet | None = None,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
    resume: bool = False,
    log: Log | None = None,
) -> TrainResult:
    """Train a U-Net on random augmented tiles of ``data`` and save it to ``run_dir``.

    ``data`` and ``val_data`` (never augmented; optional) come from :func:`prepare_training_set`;
    ``run_dir`` gets the files listed in :mod:`keras_unet.runs`. ``resume`` continues from its
    last checkpoint, optimizer state included. ``verbose`` is Keras' progress display,
    ``callbacks`` are added to Keras', ``log`` (``print``-like) hears what is happening.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C; the model was saved first.
    """
    config.validate()
    say = log or (lambda _msg: None)
    run_dir, worker, chief = own_run_dir(run_dir, config.strategy)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch size {config.batch_size} must be a multiple of {replicas} replicas")
    say(f"{replicas} replica(s): {config.batch_size // replicas} tile(s) per replica, "
        f"global batch {config.batch_size}.")
    with precision(config.mixed_precision), strategy.scope():
        model, unet, initial_epoch = _models(config, data, run_dir, resume, say)
    dataset = _dataset(config, data, worker, initial_epoch)
    if chief:
        write_json_atomic(run_dir / "config.json", config.to_dict())
    if resume:
        trim_history(run_dir / "history.csv", initial_epoch)
        remove_partials(run_dir)  # left by a run killed while writing
    to_float32 = lambda m: float32_copy(m, config)  # noqa: E731
    cbs = _callbacks(config, run_dir, unet, val_data, resume, to_float32, say)
    if config.strategy != "default":
        distributed_symbolic_build(model)
    try:
        history = model.fit(dataset, epochs=config.epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=config.steps_per_epoch,
                            verbose=verbose, shuffle=False, callbacks=cbs + list(callbacks or []))
    except KeyboardInterrupt:
        path = save_model_atomic(to_float32(unet), run_dir / "model.keras")
        raise TrainingInterrupted(f"Interrupted: the model as it stood is saved to {path}; "
                                  f"continue with keras-unet fit --resume {run_dir}") from None
    if cbs[0].where is not None:
        raise _diverged(cbs[0], run_dir, created and not resume)
    return _finish(config, run_dir, unet, to_float32, history, initial_epoch, chief, val_data,
                   say, data)


def _calibrate(config: TrainConfig, unet, val_data: TrainingSet | None, say: Log,
               train_data: TrainingSet | None = None) -> None:
    """Store the decision threshold, neck depth and smallest object size that suit the
    validation images best (for ``config.calibrate_metric``, with ``config.calibrate_tta``) in
    the model (two-class models with instance truth only). Without validation images and with
    ``config.calibrate == "auto"``, the training images (their instances kept) stand in. Says
    what it chose and on what, or why it kept the stated defaults."""
    settings = instance_settings_of(unet)
    kept = (f"Objects: kept the stated defaults (threshold {settings['threshold']:.2f}, neck "
            f"depth {settings['split_depth']:g} px, smallest object {settings['min_size']} px)")
    if int(unet.output_shape[-1]) != 2:
        return
    data, on = val_data, "validation"
    if config.calibrate == "off":
        say(f"{kept}: --calibrate off.")
        return
    if data is None and config.calibrate == "auto":
        data, on = train_data, "training"
    if data is None or data.instances is None:
        why = ("the masks hold no objects to count" if data is not None else
               "there are no validation images (--calibrate auto would use the training images)")
        say(f"{kept}: {why}.")
        return
    from .evaluate import calibrate_instances

    n = min(len(data.images), CALIBRATION_IMAGES) if on == "training" else len(data.images)
    images = data.normalised[:n]  # bounds the time it takes on the training images
    instances = [data.instances[i] for i in range(n)]
    best = calibrate_instances(unet, images, instances,
                               settings["border_width"], settings["min_size"],
                               config.calibrate_metric, config.calibrate_tta)
    what = f"{len(images)} {on} image" + ("s" if len(images) != 1 else "")
    if best["rand_error"] is None and best["ap50"] == 0:  # no setting finds any true object
        say(f"{kept}: no setting found any object of the {what} (AP50 0 for all), so there is "
            "nothing to choose from; the network needs more training (--epochs).")
        return
    set_instance_settings(unet, threshold=best["threshold"], split_depth=best["split_depth"],
                          min_size=best["min_size"])
    rand = "" if best["rand_error"] is None else f"Rand error {best['rand_error']:.4f}, "
    tta = ", with --tta" if config.calibrate_tta else ""
    flatters = (" (they are the images it learned from, so the scores flatter it)"
                if on == "training" else "")
    say(f"Objects: threshold {best['threshold']:.2f}, neck depth {best['split_depth']:g} px and "
        f"smallest object {best['min_size']} px suit the {what} best "
        f"({rand}AP50 {best['ap50']:.3f}, mAP {best['map']:.3f}, AJI {best['aji']:.3f}{tta})"
        f"{flatters}; stored in the model.")


def _finish(config: TrainConfig, run_dir: Path, unet, to_float32, history, initial_epoch: int,
            chief: bool, val_data: TrainingSet | None = None, say: Log = print,
            train_data: TrainingSet | None = None) -> TrainResult:
    """Calibrate the object settings, save the final model and the curves; the result."""
    _calibrate(config, unet, val_data, say, train_data)
    final = to_float32(unet)
    model_path = save_model_atomic(final, run_dir / "model.keras")
    if chief:
        from .visualize import plot_history, write_png

        full = read_history(run_dir / "history.csv")
        if full:
            write_png(run_dir / "curves.png", plot_history(full))
    best_path = run_dir / "checkpoints" / "best.keras"
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainResult(final, model_path, best_path if best_path.exists() else None, values,
                       initial_epoch)

"""The run directory: what a training run leaves, who writes where, and how a run is resumed.

A run directory holds:

* ``config.json``: the resolved :class:`~keras_unet.config.TrainConfig`, so the run can be
  repeated;
* ``checkpoints/last.keras``: the training model with its optimizer state after the last finished
  epoch (``fit --resume`` continues from it); ``checkpoints/best.keras``: the inference U-Net of the
  best epoch (lowest validation loss, or training loss without validation), with ``best.json``;
* ``model.keras``: the final inference U-Net (image -> probabilities), loadable with
  ``keras.models.load_model`` once ``keras_unet`` is imported, carrying its preprocessing; always
  float32;
* ``history.csv``: loss and validation metrics per epoch; ``curves.png``: the same as a plot;
* ``logs/``: TensorBoard scalars and validation images (image, prediction, weight map).

Every file is written to a temporary name and renamed into place (:mod:`keras_unet.files`), so a
killed run never leaves a half-written model behind and loses at most the epoch in progress.
A directory whose run ended before its first checkpoint holds nothing worth keeping: a new run may
take it over.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from dataclasses import dataclass

from .config import ADDED_SETTINGS, BALANCE, PRESETS, TrainConfig
from .settings import as_option, load_config_file, resolve_config
from .files import atomic_path, check_writable

__all__ = ["RunPlan", "plan_run", "worker_info", "own_run_dir", "default_run_dir", "claim_run_dir", "holds_run",
           "resume_config", "trim_history", "read_history"]


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


def own_run_dir(run_dir: str | os.PathLike, strategy: str = "default") -> tuple[Path, int, bool]:
    """``(folder, worker index, chief)``: where this process writes.

    The chief writes ``run_dir``; the other workers of a multi-worker run write
    ``run_dir/worker-N``, beside the chief's files, never over them.
    """
    run_dir = Path(run_dir)
    worker, chief = worker_info() if strategy == "multi-worker" else (0, True)
    return (run_dir if chief else run_dir / f"worker-{worker}"), worker, chief


def default_run_dir() -> Path:
    """``runs/unet-YYYYmmdd-HHMMSS`` in the current folder."""
    return Path(time.strftime("runs/unet-%Y%m%d-%H%M%S"))


def holds_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run worth keeping: a model or a checkpoint."""
    folder = Path(folder)
    return (folder / "model.keras").exists() or (folder / "checkpoints" / "last.keras").exists()


def claim_run_dir(run_dir: str | os.PathLike, strategy: str = "default",
                  overwrite: bool = False) -> Path:
    """Check that a new run may write to ``run_dir``; return this process's own folder.

    A folder holding another run (a model or a checkpoint) is refused unless ``overwrite``; with
    it the files are replaced as the new run writes them. A run that ended before its first
    checkpoint left nothing to keep, so its folder is taken over.
    """
    own, _, _ = own_run_dir(run_dir, strategy)
    if holds_run(own) and not overwrite:
        raise FileExistsError(
            f"{run_dir} holds another run; choose another --output, pass --overwrite, "
            f"or continue it with --resume {run_dir}"
        )
    return own


def finished(run_dir: str | os.PathLike, done: int, epochs: int) -> ValueError:
    """The error for resuming a run that already did its ``epochs``."""
    return ValueError(f"{run_dir} already finished {done} of {epochs} epochs; pass a larger "
                      "--epochs to train on")


def resume_config(run_dir: str | os.PathLike, epochs: int | None = None) -> TrainConfig:
    """The recorded settings of the run in ``run_dir`` (``epochs`` may be raised to train on)."""
    run_dir = Path(run_dir)
    recorded = run_dir / "config.json"
    if not recorded.is_file():
        raise FileNotFoundError(f"{run_dir} holds no run to resume ({recorded} is missing)")
    if not (run_dir / "checkpoints" / "last.keras").is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint to resume from (the run ended before its first epoch "
            f"was saved); start it again with the same command and --output {run_dir}"
        )
    try:
        values: Mapping[str, Any] = json.loads(recorded.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{recorded} is damaged (not valid JSON)") from None
    # a run recorded before a setting existed trained without it
    config = TrainConfig.from_dict({**ADDED_SETTINGS, **values})
    if epochs is not None:
        config.epochs = epochs
    history = run_dir / "history.csv"  # a row per epoch done (one more after a kill mid-save)
    rows = max(0, len(history.read_text().splitlines()) - 1) if history.is_file() else 0
    if rows - 1 >= config.epochs:  # surely done, before any data is read
        raise finished(run_dir, rows, config.epochs)
    return config.validate()


def trim_history(path: str | os.PathLike, epochs: int) -> None:
    """Keep the first ``epochs`` rows of history.csv (a resumed run rewrites what follows)."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs] if rows else []
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(keep)


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


def run_record(model_path: str | os.PathLike) -> tuple[dict, dict[str, list[float]]]:
    """The ``config.json`` and ``history.csv`` (:func:`read_history`) of the run a model file
    belongs to: beside it, or one folder up for ``checkpoints/best.keras``; {} where missing."""
    path = Path(model_path)
    for folder in (path.parent, path.parent.parent):
        if (folder / "config.json").is_file():
            try:
                config = json.loads((folder / "config.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                config = {}
            return (config if isinstance(config, dict) else {},
                    read_history(folder / "history.csv"))
    return {}, {}


@dataclass
class RunPlan:
    """A checked request to train: the settings, where the run goes, and whether it resumes."""

    config: TrainConfig
    run_dir: Path
    resume: bool = False


def plan_run(
    given: Mapping[str, Any],
    preset: str | None = None,
    config_file: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    no_weight_map: bool = False,
    no_augment: bool = False,
    export_dir: str | os.PathLike | None = None,
    log=None,
) -> RunPlan:
    """Resolve and check everything about a run before any data is read or model built.

    Args:
        given: TrainConfig keys set explicitly (the options given on the command line).
        preset, config_file, no_weight_map, no_augment: see
            :func:`keras_unet.settings.resolve_config`.
        resume: a run directory to continue; only ``epochs`` may then be given.
        output: the new run's directory (default :func:`default_run_dir`).
        overwrite: replace a run already in ``output``.
        export_dir: where a SavedModel will be exported afterwards (checked as writable).
        log: hears which model ``--init`` names (:func:`keras_unet.finetune.apply_init`).

    Raises:
        ValueError, FileExistsError, OSError: one line naming the option or path.
    """
    if resume:
        if given.get("init") or given.get("freeze_encoder"):
            raise ValueError("--init starts a new run from a model's weights and --resume "
                             "continues a run from its checkpoint: give one of the two")
        extra = sorted(set(given) - {"epochs"}) + [n for n, v in (
            ("config", config_file), ("preset", preset), ("overwrite", overwrite),
            ("output", output), ("no-weight-map", no_weight_map), ("no-augment", no_augment),
        ) if v]
        if extra:
            names = ", ".join("--" + e.replace("_", "-") for e in extra)
            raise ValueError(f"--resume continues with the run's recorded settings; drop {names} "
                             "(only --epochs may change)")
        config = resume_config(resume, given.get("epochs"))
        check_writable(resume, "run directory")
        return RunPlan(config, Path(resume), resume=True)
    config = resolve_config(given, preset, config_file, no_weight_map, no_augment,
                            validate=False)
    if config.init:  # fine-tuning: the model fixes the architecture (loads TensorFlow)
        from .finetune import apply_init

        explicit = dict.fromkeys(PRESETS.get(preset or "", {}), f"--preset {preset}")
        explicit.update(dict.fromkeys(load_config_file(config_file) if config_file else {},
                                      Path(config_file).name if config_file else ""))
        explicit.update(dict.fromkeys(given, ""))  # the command line wins, as in resolve_config
        config = apply_init(config, explicit, log)
    try:
        config.validate()
    except ValueError as exc:
        message = as_option(str(exc), given)
        key = message.split(" ", 1)[0]
        if config_file and key not in given and key in load_config_file(config_file):
            message += f" (in {config_file})"
        raise ValueError(message) from None
    for name in ("images", "masks", "val_images", "val_masks", "balance"):  # config.json holds
        value = getattr(config, name)  # absolute paths, so --resume works from any folder (a
        if value and value not in BALANCE and os.path.exists(value):  # missing one: as typed,
            setattr(config, name, os.path.abspath(value))  # for the error that names it)
    run_dir = Path(output) if output else default_run_dir()
    check_writable(run_dir, "run directory")
    if export_dir is not None:
        check_writable(export_dir, "export folder")
    claim_run_dir(run_dir, config.strategy, overwrite)
    return RunPlan(config, run_dir)

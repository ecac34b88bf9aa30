"""A run's settings from their layers: the defaults, a preset (``PRESETS``), a JSON/YAML config
file, and the options given on the command line (:func:`resolve_config`), in increasing priority.
Imports no TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .config import FINETUNE_LR, PRESETS, Augmentation, TrainConfig, check_keys, option_fields

__all__ = ["load_config_file", "resolve_config", "as_option"]


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


def resolve_config(
    given: Mapping[str, Any],
    preset: str | None = None,
    config_file: str | os.PathLike | None = None,
    no_weight_map: bool = False,
    no_augment: bool = False,
    validate: bool = True,
) -> TrainConfig:
    """The settings of a new run: defaults < ``preset`` < ``config_file`` < ``given``.

    Args:
        given: TrainConfig keys set explicitly (on the command line, say).
        preset: a key of ``PRESETS``.
        config_file: a JSON or YAML file of TrainConfig keys.
        no_weight_map: plain cross-entropy (w0 = 0, no class weights).
        no_augment: every augmentation off.
        validate: check the values (off when a model to fine-tune fixes some of them first).

    Raises:
        ValueError: an unknown key, a contradiction, or a value out of range.
    """
    contradicting = sorted(set(given) & set(Augmentation.fields()))
    if no_augment and contradicting:
        raise ValueError("--no-augment contradicts "
                         + ", ".join("--" + g.replace("_", "-") for g in contradicting))
    if no_weight_map and set(given) & {"w0", "class_weights"}:
        raise ValueError("--no-weight-map contradicts --w0/--class-weights")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    values = dict(PRESETS[preset]) if preset else {}
    if config_file:
        values.update(load_config_file(config_file))
    values.update(given)
    if values.get("init") and "lr" not in values:  # fine-tuning's own rate unless chosen
        values["lr"] = FINETUNE_LR
    if no_weight_map:
        values.update(w0=0.0, class_weights=None)
    if no_augment:
        values.update(Augmentation.off().to_dict())
    config = TrainConfig.from_dict(values)
    return config.validate() if validate else config


def as_option(message: str, given: Mapping[str, Any]) -> str:
    """A setting's error in the words the user typed: ``hed_jitter must ...`` becomes
    ``--hed-jitter must ...`` when the value came from the command line (``given``); a value from
    a ``--config`` file keeps its key."""
    key = message.split(" ", 1)[0]
    meta = next((f.metadata for f in option_fields() if f.name == key), None)
    if key not in given or meta is None:
        return message
    option = meta.get("flag", meta.get("option", "--" + key.replace("_", "-")))
    return option.split("/")[0] + message[len(key):]

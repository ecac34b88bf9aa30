"""Where training runs: distribution strategies and mixed precision, set up in one place."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ._compat import keras, patch_multi_worker_reduction, tf
from .config import STRATEGIES
from .model import build_unet
from .preprocess import instance_settings_of, normalizer_of, set_instance_settings

__all__ = ["make_strategy", "precision", "float32_copy", "resolve_precision", "cpu_has_bf16"]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(setting: str | None) -> str | None:
    """The mixed-precision policy to use: ``"auto"`` means bfloat16 on a CPU that computes it
    natively (1.6x faster training steps measured on AVX-512 BF16) when no GPU is visible, and
    float32 otherwise (on a GPU choose float16 or bfloat16 yourself)."""
    if setting != "auto":
        return setting
    if tf.config.list_physical_devices("GPU"):
        return None
    return "bfloat16" if cpu_has_bf16() else None


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


@contextlib.contextmanager
def precision(mixed: str | None) -> Iterator[None]:
    """Use Keras' ``mixed_float16``/``mixed_bfloat16`` policy inside the block, float32 after
    (``"auto"``: see :func:`resolve_precision`)."""
    mixed = resolve_precision(mixed)
    before = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy(f"mixed_{mixed}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def float32_copy(unet: keras.Model, config) -> keras.Model:
    """The same U-Net in float32 (for saving and export) with ``unet``'s weights.

    ``config`` is the run's :class:`~keras_unet.config.TrainConfig`; without mixed precision the
    model is returned as it is.
    """
    if not resolve_precision(config.mixed_precision):
        return unet
    with precision(None):
        plain = build_unet(
            tuple(unet.input_shape[1:]), config.n_classes, config.depth, config.filters,
            config.padding, config.dropout, config.batch_norm, name=unet.name,
            normalizer=normalizer_of(unet),
        )
    set_instance_settings(plain, **instance_settings_of(unet))
    plain.set_weights(unet.get_weights())
    return plain

"""The one place that decides anything version-specific.

keras-unet needs TensorFlow >= 2.16 with Keras 3 on the TensorFlow backend. Every other module
imports ``keras`` and ``tf`` from here, so a wrong environment fails once, early, with a message that
says how to fix it, instead of somewhere deep inside Keras.

Nothing here uses tensorflow-addons: it reached end of life in 2024, supports only TF < 2.16 and
fails to import under Keras 3. Dense image warping and Gaussian filtering are written with
TensorFlow ops in :mod:`keras_unet.augment`.
"""

from __future__ import annotations

import os

__all__ = ["tf", "keras", "register", "MIN_TF", "MIN_KERAS"]

MIN_TF = (2, 16)
MIN_KERAS = (3, 0)

# Keras 3 picks its backend from this variable when it is first imported; ours is TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _version_tuple(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):  # pragma: no cover - odd dev builds
        return (0, 0)


try:
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras-unet needs TensorFlow >= 2.16: pip install 'tensorflow>=2.16'"
    ) from exc

import keras

if _version_tuple(tf.__version__) < MIN_TF:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"keras-unet needs TensorFlow >= 2.16 (Keras 3), found {tf.__version__}: "
        "pip install -U 'tensorflow>=2.16'"
    )
if _version_tuple(keras.__version__) < MIN_KERAS:  # pragma: no cover
    raise ImportError(
        f"keras-unet needs Keras 3, found keras {keras.__version__}: pip install -U 'keras>=3'"
    )
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    raise ImportError(
        f"keras-unet runs on Keras' TensorFlow backend, but KERAS_BACKEND is "
        f"{keras.backend.backend()!r}: unset it or set KERAS_BACKEND=tensorflow"
    )


def register(cls):
    """Register a layer class for serialization, so ``.keras`` files load without custom_objects."""
    return keras.saving.register_keras_serializable(package="keras_unet")(cls)

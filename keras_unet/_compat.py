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
import sys

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

import keras  # noqa: E402  (after the TensorFlow check, so its message wins)

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


def _register_package_layers() -> None:
    """Register keras_unet's layers now that Keras is loaded (see ``keras_unet/__init__.py``).

    Called once, at the end of this module: importing TensorFlow through keras_unet is the other
    way, besides the user's own ``import keras``, in which Keras gets loaded.
    """
    package = sys.modules.get(__package__)
    if package is not None and hasattr(package, "_register_layers"):
        package._register_layers()


def register(cls):
    """Register a layer class for serialization, so ``.keras`` files load without custom_objects."""
    return keras.saving.register_keras_serializable(package="keras_unet")(cls)


def distributed_symbolic_build(model) -> None:
    """Let ``model.fit`` take batches that are dicts under a tf.distribute strategy.

    Keras 3's TensorFlow trainer builds its metrics from the first batch by calling
    ``strategy.reduce("MEAN", batch)``, which fails when the batch is a structure (our
    ``{"image", "labels", "weights"}`` dict): "Attempt to convert a value ({'image': PerReplica…".
    Building only needs shapes, so this instance-level replacement takes the first replica's part
    of each value instead. It changes nothing for models trained without a strategy.
    """
    import types

    from keras.src import tree

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    if hasattr(model, "_maybe_symbolic_build"):
        model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)


def patch_multi_worker_reduction() -> None:
    """Let Keras 3 average scalar logs (the loss) across workers.

    Under MultiWorkerMirroredStrategy, Keras' TensorFlow trainer reduces every per-replica log
    value with ``strategy.reduce("MEAN", v, axis=0)``, which fails for rank-0 values ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Scalars are averaged over the replicas
    (``axis=None``) instead; everything else is left to Keras. Applied only when a multi-worker
    strategy is created, and only once.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_keras_unet_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def reduce(v):
                if isinstance(v, tf.distribute.DistributedValues) or tf.is_tensor(v):
                    rank = strategy.experimental_local_results(v)[0].shape.rank
                    return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)
                return v

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_unet_patched = True
    trainer.reduce_per_replica = reduce_per_replica


_register_package_layers()

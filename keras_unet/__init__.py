"""keras-unet: the original U-Net (Ronneberger, Fischer, Brox 2015) for TensorFlow / Keras 3.

The main entry points::

    from keras_unet import build_unet, build_training_model, unet_weight_map
    unet = build_unet()                      # the paper's network: 572x572 -> 388x388
    model = build_training_model(unet)       # image + labels + weight map -> weighted CE loss

See the README for the command line (``keras-unet fit / export / weight-map``).
"""

from __future__ import annotations

import importlib

from ._version import __version__

# The modules defining Keras layers load now, so that their layers are registered and ``.keras``
# files load with plain ``keras.models.load_model`` once ``keras_unet`` is imported.
from . import losses, model  # noqa: F401,E402

# Public names and the module that defines each; the other modules load on first use (PEP 562).
_EXPORTS = {
    "Geometry": "model",
    "build_unet": "model",
    "check_input_size": "model",
    "geometry_of": "model",
    "is_valid_input_size": "model",
    "margin": "model",
    "nearest_valid_sizes": "model",
    "output_shape": "model",
    "output_size": "model",
    "valid_input_sizes": "model",
    "WeightedCrossEntropy": "losses",
    "build_training_model": "losses",
    "unet_from_training_model": "losses",
    "class_weight_map": "weights",
    "instances_from_mask": "weights",
    "unet_weight_map": "weights",
    "demo_data": "data",
    "normalize": "data",
    "read_image": "data",
    "read_mask": "data",
    "load_pairs": "data",
    "training_dataset": "data",
    "Augmentation": "augment",
    "elastic_deform": "augment",
    "random_grid": "augment",
    "dense_field": "augment",
    "warp": "augment",
    "TrainConfig": "training",
    "train": "training",
    "export_saved_model": "export",
    "check_export": "export",
    "ServingClient": "serving",
    "predict_tiled": "tiling",
    "Predictor": "tiling",
    "segmentation_metrics": "metrics",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_unet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["__version__", *sorted(_EXPORTS)]

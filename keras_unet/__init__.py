"""keras-unet: the original U-Net (Ronneberger, Fischer, Brox 2015) for TensorFlow / Keras 3.

The main entry points::

    from keras_unet import build_unet, build_training_model, unet_weight_map
    unet = build_unet()                      # the paper's network: 572x572 -> 388x388
    model = build_training_model(unet)       # image + labels + weight map -> weighted CE loss

See the README for the command line (``keras-unet fit / predict / evaluate / export``).

Importing ``keras_unet`` does not import TensorFlow: the public names load their module on first
use (PEP 562), so the command line answers ``--help`` at once. The package's Keras layers are
registered as soon as Keras is loaded, whichever comes first, so ``.keras`` files load with plain
``keras.models.load_model`` once ``keras_unet`` is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from ._version import __version__

# Public names and the module that defines each.
_EXPORTS = {
    "Geometry": "geometry",
    "check_input_size": "geometry",
    "is_valid_input_size": "geometry",
    "margin": "geometry",
    "nearest_valid_sizes": "geometry",
    "output_shape": "geometry",
    "output_size": "geometry",
    "valid_input_sizes": "geometry",
    "build_unet": "model",
    "geometry_of": "model",
    "Normalizer": "preprocess",
    "normalizer_of": "preprocess",
    "WeightedCrossEntropy": "losses",
    "build_training_model": "losses",
    "unet_from_training_model": "losses",
    "class_weight_map": "weights",
    "instances_from_mask": "weights",
    "unet_weight_map": "weights",
    "read_image": "images",
    "read_stack": "images",
    "read_mask": "images",
    "load_pairs": "images",
    "demo_data": "data",
    "training_dataset": "data",
    "Augmentation": "config",
    "TrainConfig": "config",
    "elastic_deform": "augment",
    "random_grid": "augment",
    "dense_field": "augment",
    "warp": "augment",
    "train": "training",
    "export_saved_model": "export",
    "export_bioimageio": "export",
    "check_export": "export",
    "ServingClient": "serving",
    "predict_tiled": "tiling",
    "Predictor": "predict",
    "predict_instances": "predict",
    "predict_large": "large",
    "load_model": "predict",
    "load_pretrained": "pretrained",
    "packaged_models": "pretrained",
    "segmentation_metrics": "metrics",
}

_LAYER_MODULES = ("layers",)  # the module that defines the Keras layers


_registering: list[bool] = []


def _register_layers() -> None:
    """Import the modules that define Keras layers (their import registers the layers)."""
    if _registering:  # already under way further up the stack
        return
    _registering.append(True)
    try:
        for name in _LAYER_MODULES:
            importlib.import_module(f".{name}", __name__)
    finally:
        _registering.clear()


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the package's layers right after the first of ``keras`` / ``tensorflow`` loads.

    Each of the two imports the other while it loads, so when the outer one is done both are;
    only then are the layer modules imported.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ("keras", "tensorflow"):
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            loader.exec_module = exec_module
            if "keras_unet._compat" not in sys.modules:  # else _compat registers when done
                _register_layers()

        loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules or "tensorflow" in sys.modules:
    _register_layers()
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_unet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["__version__", *sorted(_EXPORTS)]

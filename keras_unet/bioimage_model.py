"""The bioimage.io (spec 0.5) description of a U-Net: its package geometry, the network rebuilt
from built-in Keras layers, the ``rdf.yaml`` content and the package's README.

The package itself (files, zip, validation, test) is :mod:`keras_unet.bioimage`. Nothing here
imports bioimageio; the description is checked when the package is built.

**Geometry.** The U-Net's valid convolutions take ``n + 2 * margin`` pixels to ``n``. Tools that
read the package split large images into blocks with a halo and crop the halo off each block's
output; bioimageio.core's blocking adds an output size *offset* to the block positions too, so a
network whose output is smaller than its input (offset ``-2 * margin``) is stitched wrongly. The
exported network therefore starts with ``ZeroPadding2D(margin)``: output size = input size, and
the output axes declare ``halo = margin``. The outermost ``margin`` pixels of every block are
then the only ones that see the zero padding, and they are exactly the halo that tools crop. In
the interior of a block the network sees the same pixels as ``keras-unet predict`` does; at the
image's own borders the tools pad with reflection (declared as the input's ``pad``), as
``keras-unet predict`` mirror-pads. Input sizes are ``min + n * step`` with ``step`` the pooling
factor ``2 ** (depth - 1)`` and ``min`` the smallest valid size with at least ``step`` pixels
inside the halo.

**Preprocessing** is the model's own (:func:`keras_unet.preprocess.normalizer_of`): ``image`` →
``zero_mean_unit_variance`` over y, x and channel; ``fixed`` → ``scale_linear`` by ``1 / scale``;
``percentile`` → ``scale_range`` with the 1 and 99.8 percentiles. The output is the softmax
probabilities ``(batch, y, x, class)``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import numpy as np

from ._compat import keras, tf
from ._version import __version__
from .geometry import Geometry
from .model import geometry_of
from .preprocess import PERCENTILES, Normalizer, instance_settings_of, normalizer_of

__all__ = ["PackageGeometry", "package_geometry", "portable_config", "portable_network",
           "preprocessing_steps", "build_rdf", "package_readme", "rdf_name", "INPUT_ID",
           "OUTPUT_ID"]

INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
PAPER_DOI = "10.1007/978-3-319-24574-4_28"
NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
CUSTOM_LAYERS = ("keras_unet>Preprocessing", "keras_unet>InputSizeGuard")


@dataclasses.dataclass(frozen=True)
class PackageGeometry:
    """The exported network's sizes, in px: inputs ``min + n * step``, output = input, ``halo``
    px per side of every block are cropped by the tools."""

    min: int
    step: int
    halo: int

    def size(self, at_most: int) -> int:
        """The largest valid input size <= ``at_most`` (at least ``min``)."""
        return self.min + max(0, (at_most - self.min) // self.step) * self.step


def package_geometry(geo: Geometry) -> PackageGeometry:
    """The package geometry of a U-Net with :class:`~keras_unet.geometry.Geometry` ``geo``.

    ``valid`` padding: the halo is the margin and ``n`` is valid when ``n + 2 * margin`` is a valid
    input of the network. ``same`` padding: the halo is the margin the valid network would have,
    and sizes are multiples of the pooling factor.
    """
    step = geo.factor
    if geo.padding == "valid":
        halo = geo.margin
        first = geo.min_input_size - 2 * halo  # valid sizes are first + k * step
    else:
        halo = Geometry(geo.depth, "valid").margin
        first = step
    smallest = 2 * halo + step  # at least one step of pixels that no block crops
    k = max(0, -(-(smallest - first) // step))
    return PackageGeometry(min=first + k * step, step=step, halo=halo)


def _retarget(node: Any, old: str, new: str) -> Any:
    """``node`` (a layer's serialized inbound nodes) with references to layer ``old`` renamed."""
    if isinstance(node, dict):
        out = {k: _retarget(v, old, new) for k, v in node.items()}
        history = out.get("keras_history")
        if isinstance(history, (list, tuple)) and history and history[0] == old:
            out["keras_history"] = [new, *history[1:]]
        return out
    if isinstance(node, (list, tuple)):
        return [_retarget(v, old, new) for v in node]
    return node


def portable_config(config: dict, pad: int) -> dict:
    """A functional model config with keras_unet's own layers replaced by built-in ones.

    The :class:`~keras_unet.layers.Preprocessing` layer becomes ``ZeroPadding2D(pad)`` named
    ``"halo_padding"`` (``Identity`` when ``pad`` is 0), :class:`InputSizeGuard` an ``Identity``;
    every layer computes in float32 (mixed-precision training policies are dropped).
    """
    config = copy.deepcopy(config)
    float32 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
               "registered_name": None}
    renames = {}
    for i, layer in enumerate(config["layers"]):
        if layer.get("registered_name") in CUSTOM_LAYERS:
            is_pre = layer["registered_name"].endswith("Preprocessing")
            name = "halo_padding" if is_pre and pad else f"{layer['name']}_identity"
            cls = "ZeroPadding2D" if is_pre and pad else "Identity"
            layer_config = {"name": name, "trainable": False, "dtype": float32}
            if cls == "ZeroPadding2D":
                layer_config.update(padding=[[pad, pad], [pad, pad]], data_format="channels_last")
            renames[layer["name"]] = name
            config["layers"][i] = {"module": "keras.layers", "class_name": cls,
                                   "config": layer_config, "registered_name": None, "name": name,
                                   "inbound_nodes": layer["inbound_nodes"]}
        elif layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = float32
    for old, new in renames.items():
        config["layers"] = [_retarget(layer, old, new) for layer in config["layers"]]
        config["output_layers"] = _retarget(config["output_layers"], old, new)
    return config


def portable_network(model: keras.Model) -> keras.Model:
    """``model`` rebuilt from built-in Keras layers only, float32, mapping ``(B, n, n, C)`` network
    input (already normalised) to ``(B, n, n, K)`` probabilities (see the module docstring).

    The weights are copied layer by layer; the result loads with plain ``keras`` (no custom
    objects) and its interior equals ``model`` on the zero-padded input.
    """
    halo = package_geometry(geometry_of(model)).halo
    pad = halo if geometry_of(model).padding == "valid" else 0
    net = keras.Model.from_config(portable_config(model.get_config(), pad))
    for layer in model.layers:
        if layer.weights:
            net.get_layer(layer.name).set_weights(layer.get_weights())
    return net


# --------------------------------------------------------------------------------------------
# The description


def preprocessing_steps(normalizer: Normalizer) -> list[dict]:
    """The rdf's ``preprocessing`` for the model's normalisation (the contract, not a guess)."""
    axes = ["y", "x", "channel"]
    if normalizer.mode == "fixed":
        return [{"id": "scale_linear", "kwargs": {"gain": 1.0 / normalizer.scale, "offset": 0.0}}]
    if normalizer.mode == "percentile":
        return [{"id": "scale_range", "kwargs": {
            "axes": axes, "min_percentile": PERCENTILES[0], "max_percentile": PERCENTILES[1],
            "eps": 1e-6}}]
    return [{"id": "zero_mean_unit_variance", "kwargs": {"axes": axes, "eps": 1e-6}}]


def rdf_name(name: str) -> str:
    """A bioimage.io model name (5-128 letters, digits, ``_+- ()``) for the package ``name``."""
    clean = "".join(c if c in NAME_CHARACTERS else "-" for c in name).strip() or "unet"
    return clean if len(clean) >= 5 else f"{clean} (keras-unet U-Net)"


def author_list(authors: str) -> list[dict]:
    """``[{"name": ...}]`` from names separated by ``;``."""
    names = [a.strip() for a in authors.split(";") if a.strip()]
    if not names:
        raise ValueError("--authors must name at least one author ('Name; Other Name')")
    return [{"name": n} for n in names]


def _class_names(n_classes: int) -> list[str]:
    return ["background", "object"] if n_classes == 2 else ["background"] + [
        f"class{k}" for k in range(1, n_classes)]


def build_rdf(model: keras.Model, pg: PackageGeometry, *, name: str, description: str,
              authors: str, license: str, config: dict, files: dict[str, str],
              cite: Sequence[dict] = ()) -> dict:
    """The ``rdf.yaml`` content (a dict) of a package whose files are named in ``files``;
    ``cite``: more references (``{"text", "doi"}``), beyond the paper's and keras-unet's."""
    normalizer = normalizer_of(model)
    n_classes = int(model.output_shape[-1])
    space = {"min": pg.min, "step": pg.step}
    out_axis = {"tensor_id": INPUT_ID, "offset": 0}
    input_axes = [{"type": "batch"},
                  {"type": "space", "id": "y", "size": space},
                  {"type": "space", "id": "x", "size": space},
                  {"type": "channel", "channel_names": [f"c{c}" for c in
                                                        range(normalizer.channels)]}]
    output_axes = [{"type": "batch"},
                   {"type": "space", "id": "y", "size": {**out_axis, "axis_id": "y"},
                    "halo": pg.halo},
                   {"type": "space", "id": "x", "size": {**out_axis, "axis_id": "x"},
                    "halo": pg.halo},
                   {"type": "channel", "channel_names": _class_names(n_classes)}]
    return {
        "type": "model", "format_version": "0.5.4", "name": rdf_name(name),
        "description": description, "authors": author_list(authors), "license": license,
        "cite": [
            {"text": "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical "
                     "Image Segmentation. MICCAI 2015", "doi": PAPER_DOI},
            {"text": f"keras-unet {__version__}: the U-Net of Ronneberger et al. for "
                     "TensorFlow/Keras 3", "url": "https://pypi.org/project/keras-unet/"},
            *[dict(c) for c in cite if c.get("doi") != PAPER_DOI]],
        "documentation": files["documentation"], "covers": [files["cover"]],
        "tags": ["unet", "segmentation", "2d", "keras", "tensorflow", "keras-unet",
                 "instance-segmentation"],
        "inputs": [{"id": INPUT_ID, "axes": input_axes, "data": {"type": "float32"},
                    "description": f"raw image; preprocessing: {normalizer.describe()}",
                    "test_tensor": {"source": files["test_input"]},
                    "sample_tensor": {"source": files["sample_input"]}, "pad": {"mode": "reflect"},
                    "preprocessing": preprocessing_steps(normalizer)}],
        "outputs": [{"id": OUTPUT_ID, "axes": output_axes,
                     "data": {"type": "float32", "range": [0.0, 1.0]},
                     "description": "softmax class probabilities per pixel",
                     "test_tensor": {"source": files["test_output"]},
                     "sample_tensor": {"source": files["sample_output"]}}],
        "weights": {
            "keras_v3": {"source": files["keras_v3"], "keras_version": keras.__version__,
                         "backend": ["tensorflow", tf.__version__]},
            "keras_hdf5": {"source": files["keras_hdf5"], "tensorflow_version": tf.__version__,
                           "parent": "keras_v3"},
            "tensorflow_saved_model_bundle": {"source": files["saved_model"], "parent": "keras_v3",
                                              "tensorflow_version": tf.__version__}},
        "config": {"keras_unet": {"version": __version__, "training": config,
                                  "instances": instance_settings_of(model),
                                  "geometry": dataclasses.asdict(pg)}},
    }



# --------------------------------------------------------------------------------------------
# The documentation


def _figures(history: dict[str, float] | None, card: str | None = None) -> str:
    if card:
        return "The figures on held-out images are in the model card below."
    if not history:
        return "No validation figures were recorded with this model."
    names = {"val_ap50": "AP at IoU 0.5", "val_map": "mAP (IoU 0.5-0.95)", "val_dice": "Dice",
             "val_iou": "foreground IoU", "val_pixel_error": "pixel error", "val_loss": "loss",
             "val_merges": "merged objects"}
    rows = [f"| {names.get(k, k)} | {v:.0f} |" if k == "val_merges" else
            f"| {names.get(k, k)} | {v:.3f} |" for k, v in sorted(history.items())
            if k.startswith("val_") and np.isfinite(v)]
    return "\n".join(["On the validation images held out by `keras-unet fit` (latest value):", "",
                      "| figure | value |", "|---|---|", *rows])


def package_readme(name: str, description: str, model: keras.Model, pg: PackageGeometry,
                   config: dict, history: dict[str, float] | None,
                   card: str | None = None) -> str:
    """The package's documentation (Markdown); a packaged model's ``card`` (Markdown) ends it."""
    normalizer = normalizer_of(model)
    geo = geometry_of(model)
    data = config.get("images") or "the synthetic demo data of `keras-unet fit` (touching cells)"
    schedule = (f"{config['epochs']} epochs x {config['steps_per_epoch']} steps, batch "
                f"{config.get('batch_size')}, {config.get('tile_size')} px tiles"
                if "epochs" in config and "steps_per_epoch" in config else "not recorded")
    inst = instance_settings_of(model)
    channels, n_classes = normalizer.channels, int(model.output_shape[-1])
    return f"""# {rdf_name(name)}

{description}

A U-Net (Ronneberger, Fischer, Brox 2015) trained with keras-unet {__version__}: depth
{geo.depth}, {geo.padding} convolutions, {n_classes} classes, {channels} input channel(s).

## Training
- Data: {data}
- Schedule: {schedule}
- The full training configuration is in `rdf.yaml`, under `config.keras_unet.training`.

## Validation
{_figures(history, card)}

## Input, preprocessing, output
- Input `{INPUT_ID}`: raw intensities, axes (batch, y, x, channel), float32.
- Preprocessing (declared in `rdf.yaml`, applied by the tools): {normalizer.describe()}.
- Output `{OUTPUT_ID}`: softmax probabilities per pixel, axes (batch, y, x, class); the classes
  are {", ".join(_class_names(int(model.output_shape[-1])))}.
- Sizes: y and x are {pg.min} + n * {pg.step} px. The network pads each block by {pg.halo} px
  of zeros inside the graph; those {pg.halo} px per side (the declared halo) are cropped by the
  tools, so tiled prediction equals whole-image prediction up to the pooling grid.
- Objects: keras-unet turns the probabilities into cells with threshold {inst['threshold']:g},
  smallest object {inst['min_size']} px, cuts at necks {inst.get('split_depth', 0):g} px deep
  (0: none) and growing {inst['border_width']} px into the separating borders
  (`keras-unet predict --instances`).

## Run it
- **Fiji (deepImageJ):** Plugins > deepImageJ > deepImageJ Install Model, choose this zip
  ("From a local file"), then open an image and run Plugins > deepImageJ > deepImageJ Run with
  this model. The output is the probability image; threshold the object channel.
- **ilastik / napari / QuPath:** open the zip with their bioimage.io model loader.
- **Python:**

```python
from bioimageio.core import load_description, predict
from bioimageio.core import Tensor
model = load_description("{name}.zip")
image = ...  # numpy array (1, H, W, {normalizer.channels})
out = predict(model=model, inputs={{"{INPUT_ID}": Tensor.from_numpy(image, dims=("batch", "y", "x",
              "channel"))}}, blocksize_parameter=10)
probabilities = out.members["{OUTPUT_ID}"].data
```

## Cite
- O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for Biomedical Image
  Segmentation. MICCAI 2015, LNCS 9351, 234-241. doi:{PAPER_DOI}
- keras-unet {__version__}.
""" + (f"\n---\n\n{card.replace('# ', '# Model card: ', 1)}" if card else "")

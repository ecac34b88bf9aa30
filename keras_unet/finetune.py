"""Fine-tuning: a training run that starts from a trained model (``keras-unet fit --init MODEL``).

MODEL is a ``.keras`` file, a run folder of ``keras-unet fit`` or a packaged model's name
(:mod:`keras_unet.pretrained`). The new run takes from it:

* the **architecture** (depth, base filters, padding, classes, batch normalisation; the dropout
  rate unless ``--dropout`` is given). An option that would change it, set explicitly on the
  command line, in ``--config`` or by ``--preset``, is refused in one line naming the conflict
  (:func:`apply_init`); the same value is accepted;
* the **preprocessing contract** (the normalisation mode, and the channel count: the user's
  images are checked against it before the weight maps are computed; a grey image stored as
  RGB counts as grey);
* the **weights**, and the object settings (threshold, neck depth), which the calibration on
  validation images then updates like any run's.

``--freeze-encoder`` keeps the contracting path (the ``down*`` and ``bottleneck`` convolutions)
as it is. Without ``--lr`` the run uses ``keras_unet.config.FINETUNE_LR``. ``config.json``
records where the weights came from: ``init`` (``pretrained:NAME`` or the file's absolute
path), ``init_sha256`` and ``init_version`` (a packaged model's).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from ._compat import keras
from .config import TrainConfig
from .model import build_unet
from .predict import load_model
from .preprocess import Normalizer, instance_settings_of, set_instance_settings
from .pretrained import architecture_of, model_source

__all__ = ["ARCHITECTURE", "apply_init", "start_from", "freeze_encoder", "ENCODER_PREFIXES"]

Log = Callable[[str], None]

#: settings that define the network's layers: fixed by the model fine-tuned
ARCHITECTURE = {"depth": "--depth", "filters": "--filters", "padding": "--padding",
                "n_classes": "--classes", "batch_norm": "--batch-norm"}
#: layer-name prefixes of the contracting path (build_unet's names)
ENCODER_PREFIXES = ("down", "bottleneck")


def apply_init(config: TrainConfig, explicit: Iterable[str] | Mapping[str, str],
               log: Log | None = None) -> TrainConfig:
    """Take the architecture and contract of ``config.init`` into ``config`` (a new run).

    Args:
        config: the resolved settings; ``config.init`` names the model.
        explicit: the settings the user chose (options, ``--config`` keys, ``--preset`` keys);
            only these can conflict. A mapping gives each key's source, named in a conflict
            (``"--preset paper"``, a settings file's name; ``""`` for an option).
        log: hears which model a packaged model's name stood for.

    Raises:
        FileNotFoundError: the model does not exist; ValueError: it is not a U-Net of
        keras-unet, or an explicit setting would change its architecture or contract.
    """
    given = str(config.init)
    source = model_source(given, log)
    if not source.path.exists():
        raise FileNotFoundError(f"--init {given}: no such file or folder, nor a packaged model")
    if source.path.is_dir():
        raise ValueError(f"--init {given}: a folder without model.keras; give a .keras file, "
                         "a run folder of keras-unet fit, or a packaged model's name")
    arch = architecture_of(load_model(source.path))
    where = dict(explicit) if isinstance(explicit, Mapping) else dict.fromkeys(explicit, "")

    def origin(key: str) -> str:
        return f"from {where[key]}; " if where[key] else ""

    conflicts = [f"{option} {_shown(getattr(config, key))} ({origin(key)}the model has "
                 f"{_shown(arch[key])})" for key, option in ARCHITECTURE.items()
                 if key in where and getattr(config, key) != arch[key]]
    if "normalization" in where and config.normalization != arch["normalization"]:
        conflicts.append(f"--normalization {config.normalization} ({origin('normalization')}the "
                         f"model was trained with {arch['normalization']})")
    if conflicts:
        raise ValueError(f"--init {given}: {'; '.join(conflicts)} would change the model; drop "
                         "the option to fine-tune it, or train a new model without --init")
    for key in (*ARCHITECTURE, "normalization"):
        setattr(config, key, arch[key])
    if "dropout" not in where:
        config.dropout = arch["dropout"]
    geo = config.geometry
    if "tile_size" not in where and not geo.is_valid(config.tile_size):
        config.tile_size = min((s for s in geo.nearest(config.tile_size) if s),
                               key=lambda s: abs(s - config.tile_size))
    config.init, config.init_sha256 = source.label, source.sha256
    config.init_version, config.init_channels = source.version, arch["channels"]
    return config.validate()


def _shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def freeze_encoder(unet: keras.Model) -> int:
    """Make the contracting path's layers untrainable; returns how many were frozen."""
    frozen = 0
    for layer in unet.layers:
        if layer.name.startswith(ENCODER_PREFIXES) and layer.weights:
            layer.trainable = False
            frozen += 1
    return frozen


def start_from(config: TrainConfig, channels: int, border_width: int, min_size: int,
               log: Log | None = None) -> keras.Model:
    """The U-Net a fine-tuning run trains: built like a new run's (under the current dtype
    policy), with the weights and calibrated object settings of ``config.init``.

    Args:
        channels: of the training images (after grey images stored as RGB became grey).
        border_width, min_size: of the training labels, as for a new run.

    Raises:
        ValueError: the channels differ, or the model divides by a fixed scale that is not
            the training images' dtype maximum.
    """
    say = log or (lambda _msg: None)
    source = model_source(str(config.init))
    init = load_model(source.path)
    arch = architecture_of(init)
    if channels != arch["channels"]:
        raise ValueError(f"--init {config.init} takes {arch['channels']}-channel images, the "
                         f"training images have {channels}: convert them, or train a new model "
                         "without --init")
    if arch["normalization"] == "fixed" and arch["input_scale"] != config.input_scale:
        raise ValueError(f"--init {config.init} divides raw intensities by "
                         f"{arch['input_scale']:g}, but the training images' maximum is "
                         f"{config.input_scale:g}: convert them to the model's bit depth")
    normalizer = Normalizer(config.normalization, config.input_scale, channels, config.input_dtype,
                            config.input_min, config.input_max)
    unet = build_unet((None, None, channels), config.n_classes, config.depth, config.filters,
                      config.padding, config.dropout, config.batch_norm,
                      normalizer=normalizer, border_width=border_width)
    unet.set_weights(init.get_weights())
    stored = instance_settings_of(init)
    set_instance_settings(unet, threshold=stored["threshold"],
                          split_depth=stored["split_depth"], min_size=min_size)
    frozen = freeze_encoder(unet) if config.freeze_encoder else 0
    say(f"Fine-tuning {source.describe()}" + (f", sha256 {source.sha256[:12]}" if not
                                                source.packaged else "")
        + (f"; {frozen} layers of the contracting path frozen" if frozen else "")
        + f"; learning rate {config.lr:g}.")
    return unet

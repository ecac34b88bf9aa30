"""Training settings, declared once: :class:`Augmentation`, :class:`TrainConfig` and the presets.

Each setting is one dataclass field with its default, type and help text. The command line builds
its ``fit`` options from these fields (``field.metadata``), config files use the field names as
keys, and ``RUN_DIR/config.json`` records them, so nothing is listed twice. This module imports no
TensorFlow, so ``keras-unet fit --help`` and option errors answer at once.

Settings are layered, in increasing priority (:func:`keras_unet.settings.resolve_config`): the
defaults, a preset (``PRESETS``), a JSON/YAML config file, and the options given on the command
line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .axes import check_axes
from .geometry import Geometry

__all__ = [
    "Augmentation",
    "TrainConfig",
    "PRESETS",
    "ADDED_SETTINGS",
    "OPTIMIZERS",
    "STRATEGIES",
    "MIXED",
    "CALIBRATION_METRICS",
    "FINETUNE_LR",
    "CALIBRATE_ON",
    "BALANCE",
    "AUTO_VAL_FRACTION",
    "AUTO_VAL_MIN_IMAGES",
    "check_keys",
    "check_axes",
    "option_fields",
]

OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multi-worker")
MIXED = (None, "auto", "float16", "bfloat16")
MASK_TYPES = ("auto", "instance", "binary", "class")
#: the learning rate of fit --init without --lr. Measured with the nuclei model 1.0 on 5 MoNuSeg
#: images, 250 steps: 1e-3 scored AP50 0.360 on 10 test images, 1e-4 0.123 (from random
#: weights: 0.136); so fine-tuning keeps fit's rate
FINETUNE_LR = 1e-3
#: what the object settings can be calibrated for (keras_unet.evaluate.choose_instance_settings)
CALIBRATION_METRICS = ("ap50", "rand")
#: where the object settings are calibrated (TrainConfig.calibrate)
CALIBRATE_ON = ("auto", "validation", "off")
#: fit --balance: how often each training image is drawn (besides a CSV of groups)
BALANCE = ("none", "kind")
#: the default validation split (TrainConfig.val_fraction None): this fraction of the images ...
AUTO_VAL_FRACTION = 0.1
#: ... when there are at least this many
AUTO_VAL_MIN_IMAGES = 10


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line description.

    ``cli`` may hold ``option`` (the option name when it is not ``--field-name``), ``choices``,
    ``none`` (the choice that means None, e.g. ``"off"``), ``flag`` (a boolean's option, e.g.
    ``"--elastic/--no-elastic"``) and ``type`` (``"path"``).
    """
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class Augmentation:
    """Which augmentations training tiles get, and how strong. Each can be switched off.

    The pieces that apply them are TensorFlow ops in :mod:`keras_unet.augment`.
    """

    elastic: bool = setting(True, "The paper's elastic deformation.",
                            flag="--elastic/--no-elastic")
    elastic_grid: int = setting(3, "Control points per side of the deformation grid.")
    elastic_sigma: float = setting(10.0, "Std. dev. of the grid displacements in px.")
    flips: bool = setting(True, "Random flips and 90-degree rotations.", flag="--flips/--no-flips")
    rotation: float = setting(10.0, "Largest extra rotation in degrees (0: off).")
    shift: float = setting(10.0, "Largest shift in px (0: off).")
    zoom: float = setting(0.5, "Random zoom: tiles are resampled at a factor from 1/(1+z) to "
                          "1+z, log-uniform, so objects vary in size (0: off).")
    brightness: float = setting(0.1, "Largest brightness offset (0: off).")
    contrast: float = setting(0.1, "Largest relative contrast change (0: off).")
    hed_jitter: float = setting(
        0.0, "Stain augmentation for RGB images (Tellez et al. 2018): each of the haematoxylin, "
        "eosin and DAB densities (colour deconvolution, skimage.color.hed_from_rgb) is scaled by "
        "1 + U(-s, s) and shifted by U(-s, s) optical density; 0.05: light, 0.2: strong (0: off).")
    invert: float = setting(0.0, "Probability that a tile's intensities are inverted, so the "
                            "network sees both polarities, e.g. dark nuclei on a bright "
                            "background (0: off).")
    channel_shuffle: bool = setting(False, "Random order of the colour channels.",
                                    flag="--channel-shuffle/--no-channel-shuffle")
    greyscale: float = setting(0.0, "Probability that a colour tile is turned grey (each channel "
                               "the channels' mean) (0: off).")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The augmentation keys (also keys of :class:`TrainConfig`)."""
        return tuple(f.name for f in dataclasses.fields(Augmentation))

    @classmethod
    def off(cls) -> "Augmentation":
        """No augmentation at all (validation tiles, or a plain baseline)."""
        return cls(elastic=False, flips=False, rotation=0.0, shift=0.0, zoom=0.0, brightness=0.0,
                   contrast=0.0, hed_jitter=0.0, invert=0.0, channel_shuffle=False, greyscale=0.0)

    def augmentation_settings(self) -> "Augmentation":
        """Just the augmentation part (of a :class:`TrainConfig`, say)."""
        return Augmentation(**{k: getattr(self, k) for k in Augmentation.fields()})

    def validate(self) -> "Augmentation":
        grid = self.elastic_grid
        if not isinstance(grid, int) or isinstance(grid, bool) or not 2 <= grid <= 32:
            raise ValueError(f"elastic_grid must be an integer from 2 to 32, got {grid!r}")
        for name in ("elastic_sigma", "rotation", "shift", "zoom", "brightness", "contrast"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.contrast >= 1:
            raise ValueError(f"contrast must be < 1, got {self.contrast!r}")
        if self.zoom > 1:
            raise ValueError(f"zoom must be at most 1 (a factor from 1/2 to 2), got {self.zoom!r}")
        if self.rotation > 180:
            raise ValueError(f"rotation must be at most 180 degrees, got {self.rotation!r}")
        for name, top in (("hed_jitter", 0.999), ("invert", 1), ("greyscale", 1)):
            value = getattr(self, name)  # hed_jitter 1 could scale a stain by 0: it would be gone
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and 0 <= value <= top):
                raise ValueError(f"{name} must be a number from 0 to {top}, got {value!r}")
        return self

    @property
    def colour(self) -> bool:
        """Whether the tiles' colours change (stain, inversion, channel order, grey)."""
        return (self.hed_jitter > 0 or self.invert > 0 or self.channel_shuffle
                or self.greyscale > 0)

    @property
    def geometric(self) -> bool:
        """Whether tiles are resampled (elastic, rotation, shift or zoom), not just cut out."""
        return ((self.elastic and self.elastic_sigma > 0) or self.rotation > 0 or self.shift > 0
                or self.zoom > 0)

    def reach(self, size: int) -> int:
        """px beyond a ``size`` tile that resampling may read: the context to pad images with.

        Four standard deviations of the elastic field, the largest shift, and how far a corner of
        the tile moves when rotated by the largest angle and zoomed out by the largest factor.
        """
        if not self.geometric:
            return 0
        r = 4.0 * self.elastic_sigma if self.elastic else 0.0
        corner = (size - 1) / math.sqrt(2.0) * (
            self.zoom + 2.0 * math.sin(math.radians(self.rotation) / 2.0))
        return int(math.ceil(r + self.shift * math.sqrt(2.0) + corner)) + 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "Augmentation":
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.fields()))
        if unknown:
            raise ValueError(f"unknown augment key(s): {', '.join(unknown)}")
        return cls(**values).validate()


@dataclass
class TrainConfig(Augmentation):
    """Everything that defines a training run. Sizes in px, rates per step.

    The defaults were chosen by measurement on nuclei (DSB 2018, see the README): a laptop-sized
    U-Net (depth 4, 32 base filters, 252 px tiles) trained for 4,000 steps of 2 tiles with Adam
    and a cosine schedule (24 minutes for 46 DSB 2018 images on 2 CPU cores, calibration
    included; 19.5 since validation takes one pass per epoch), the paper's weight map (w0 = 10,
    sigma = 5 px) on labels whose touching objects are separated by 1 px each, without class
    balancing, and the paper's elastic deformation plus a random zoom (0.67-1.5x); each kind
    of image drawn in proportion to the square root of its count (``balance="kind"``, measured
    on DSB 2018 split by kind: brightfield AP50 0.19 -> 0.45, fluorescence unchanged).
    ``PRESETS["paper"]`` holds the paper's own recipe. The augmentation keys are
    :class:`Augmentation`'s fields, inherited.
    """

    # data (paths are recorded so a run can be repeated or resumed)
    images: str | None = setting(None, "Folder of images, or a multi-page TIFF stack.", type="path")
    masks: str | None = setting(None, "Folder of masks (same file names), or a TIFF stack.",
                                type="path")
    val_images: str | None = setting(None, "Validation images (never augmented).", type="path")
    val_masks: str | None = setting(None, "Validation masks.", type="path")
    val_fraction: float | None = setting(
        None, "Hold out this fraction of the images for validation instead of --val-images "
        "[default: 10 % (at least 1 image) from 10 images on; none below that].")
    mask_type: str = setting("auto", "binary: 0 and 1/255; instance: object ids; class: class ids.",
                             choices=MASK_TYPES)
    normalization: str = setting("image", "image: per-image mean/std; fixed: divide by dtype "
                                 "max; percentile: per-image 1st-99.8th percentile to 0-1.",
                                 choices=("image", "fixed", "percentile"))
    input_scale: float = field(default=255.0, metadata={})  # training images' dtype maximum
    # the training images' dtype and value range, recorded in the model (set by prepare)
    input_dtype: str | None = field(default=None, metadata={})
    input_min: float | None = field(default=None, metadata={})
    input_max: float | None = field(default=None, metadata={})
    balance: str = setting(
        "kind", "How often each training image is drawn: none (all alike); kind (by kind of "
        "image, which fit tells from the pixels: grey or colour, dark or bright background); or "
        "a CSV of 'file name,group' rows. With kind or a CSV, each group is drawn in proportion "
        "to the square root of its number of images, so a few images of a rare kind are seen "
        "more often, and a common kind still most.")
    axes: str | None = setting(None, "Axes of TIFF images whose files do not say, one letter per "
                               "stored axis: Y, X, C (channels), Z or T (pages); e.g. YXC, CYX.")
    # model
    depth: int = setting(4, "Resolution levels (the paper: 5).")
    filters: int = setting(32, "Channels of the first level (the paper: 64).")
    padding: str = setting("valid", "Convolution padding (the paper: valid).",
                           choices=("valid", "same"))
    dropout: float = setting(0.5, "Dropout at the end of the contracting path.")
    batch_norm: bool = setting(False, "Batch normalisation before each ReLU.",
                               flag="--batch-norm/--no-batch-norm")
    n_classes: int = setting(2, "Classes, background included.", option="--classes")
    # tiles and schedule
    tile_size: int = setting(252, "Input tile size in px (must be valid for the network).")
    batch_size: int = setting(2, "Tiles per step over all replicas (the global batch).")
    epochs: int = setting(40, "Epochs.")
    steps_per_epoch: int = setting(100, "Optimizer steps per epoch.")
    optimizer: str = setting("adam", "Optimizer.", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "Learning rate (the first, with a schedule).")
    lr_schedule: str = setting("cosine", "constant, or cosine: decay to 0 over the run.",
                               choices=("constant", "cosine"))
    momentum: float = setting(0.99, "SGD momentum.")
    # weight map
    w0: float = setting(10.0, "Border weight of the weight map (0: off).")
    sigma: float = setting(5.0, "Border width of the weight map in px.")
    class_weights: str | None = setting(None, "Class balancing of the weight map.",
                                        choices=("balanced", "none"), none="none")
    border_width: int = setting(
        1, "Separating borders: px each of two touching objects gives up to the background in "
        "the training labels (0: off).")
    calibrate_metric: str = setting(
        "ap50", "What the object settings (threshold, neck depth, smallest object) are calibrated "
        "for on the validation images after training: ap50 (objects such as nuclei) or rand "
        "(the ISBI Rand error; tissue cut into cells by membranes).", choices=CALIBRATION_METRICS)
    calibrate: str = setting(
        "auto", "Choose the object settings after training: auto: on the validation images, or "
        "on the training images when there are none; validation: on validation images only; "
        "off: keep threshold 0.5 and no neck cut.", choices=CALIBRATE_ON)
    calibrate_tta: bool = setting(
        False, "Calibrate on test-time-augmented predictions, for a model used with --tta.",
        flag="--calibrate-tta/--no-calibrate-tta")
    # speed and scale
    mixed_precision: str | None = setting(
        "auto", "Compute in 16 bits (float16 on GPUs, bfloat16 on recent CPUs/TPUs); the loss "
        "and the saved model stay float32. auto: bfloat16 on CPUs with AVX-512 BF16 when there "
        "is no GPU, else off.", choices=("off", "auto", "float16", "bfloat16"), none="off")
    jit: bool = setting(False, "Compile the training step with XLA.", flag="--jit")
    strategy: str = setting("default", "mirrored: all local GPUs; multi-worker: the cluster in "
                            "TF_CONFIG.", choices=STRATEGIES)
    seed: int = setting(0, "Random seed.")
    # fine-tuning (keras_unet.finetune)
    init: str | None = setting(
        None, "Start from this model's weights, architecture and preprocessing: a .keras file, "
        "a run folder, or a packaged model's name (nuclei). Without --lr the rate is "
        f"{FINETUNE_LR:g}.", type="path")
    freeze_encoder: bool = setting(
        False, "With --init: keep the contracting path (encoder) as it is; train the rest.",
        flag="--freeze-encoder")
    init_sha256: str | None = field(default=None, metadata={})  # of the --init model's file
    init_version: str | None = field(default=None, metadata={})  # of a packaged --init model
    init_channels: int | None = field(default=None, metadata={})  # the --init model's input

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.depth, self.padding)

    @property
    def augmentation(self) -> Augmentation:
        return self.augmentation_settings()

    def validate(self) -> "TrainConfig":
        """Check every field; raise ValueError naming the setting and the fix."""
        self._check_types()
        for name, low, high in (("depth", 1, None), ("filters", 1, 1024), ("batch_size", 1, 4096),
                                ("epochs", 1, 100_000), ("steps_per_epoch", 1, 10_000_000),
                                ("n_classes", 2, 256), ("seed", 0, 2**32 - 1)):
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                span = f"from {low} to {high}" if high is not None else f">= {low}"
                raise ValueError(f"{name} must be an integer {span}, got {value!r}")
        geo = self.geometry  # checks depth (bounded) and padding
        geo.check(self.tile_size, "tile size")
        for name in ("lr", "momentum", "w0", "sigma", "dropout", "val_fraction", "input_scale"):
            value = getattr(self, name)
            if value is None and name == "val_fraction":
                continue
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 < self.lr <= 10:
            raise ValueError(f"lr must be > 0 and at most 10, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 px, got {self.sigma!r}")
        if not self.w0 >= 0:
            raise ValueError(f"w0 must be >= 0, got {self.w0!r}")
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be 'balanced' or None, got {self.class_weights!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not 0 <= self.border_width <= 16:
            raise ValueError(f"border_width must be an integer from 0 to 16 px, got "
                             f"{self.border_width!r}")
        if self.input_scale <= 0:
            raise ValueError(f"input_scale must be > 0, got {self.input_scale!r}")
        if self.mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {self.mask_type!r}")
        if self.normalization not in ("image", "fixed", "percentile"):
            raise ValueError(f"normalization must be image, fixed or percentile, got "
                             f"{self.normalization!r}")
        if self.val_fraction and (self.val_images or self.val_masks):
            raise ValueError("give either a validation fraction or validation folders, not both")
        if bool(self.val_images) != bool(self.val_masks):
            raise ValueError("give both val_images and val_masks (or neither)")
        if bool(self.images) != bool(self.masks):
            raise ValueError("give both --images and --masks (or neither, for the demo data)")
        if self.mixed_precision not in MIXED:
            raise ValueError(
                f"mixed_precision must be auto, float16, bfloat16 or off, got "
                f"{self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.calibrate not in CALIBRATE_ON:
            raise ValueError(f"calibrate must be {', '.join(CALIBRATE_ON)}, got "
                             f"{self.calibrate!r}")
        if self.calibrate_metric not in CALIBRATION_METRICS:
            raise ValueError(f"calibrate_metric must be {' or '.join(CALIBRATION_METRICS)}, "
                             f"got {self.calibrate_metric!r}")
        if self.balance not in BALANCE and not str(self.balance).lower().endswith(".csv"):
            close = difflib.get_close_matches(str(self.balance).lower(), BALANCE, 1)
            raise ValueError(f"balance must be none, kind or a .csv file of 'file name,group' "
                             f"rows, got {self.balance!r}"
                             + (f"; did you mean {close[0]}?" if close else ""))
        self.axes = check_axes(self.axes)
        if self.freeze_encoder and not self.init:
            raise ValueError("--freeze-encoder goes with --init MODEL (a model to fine-tune)")
        Augmentation.validate(self)
        return self

    def _check_types(self) -> None:
        """Each value has its field's type (config files can hold anything)."""
        kinds = {"bool": ((bool,), "true or false"), "int": ((int,), "an integer"),
                 "float": ((int, float), "a number"), "str": ((str,), "a string")}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            optional = f.type.endswith("| None")
            if optional and value is None:
                continue
            types, what = kinds[f.type.removesuffix("| None").strip()]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ValueError(f"{f.name} must be {what}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise a ValueError that names them."""
        check_keys(values)
        return cls(**values)


def option_fields() -> list[dataclasses.Field]:
    """The :class:`TrainConfig` fields that are command-line options (those with help text)."""
    return [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]


def check_keys(values: Mapping[str, Any], source: str = "config") -> None:
    """Raise a ValueError naming the keys of ``values`` that TrainConfig does not have."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {source} key(s): {', '.join(unknown)} (known keys: see keras-unet fit --help)"
        )


# Settings added after runs were recorded, with the value that reproduces a run recorded without
# them (resume_config fills them in; new runs take the defaults).
ADDED_SETTINGS: dict[str, Any] = {"zoom": 0.0, "calibrate_metric": "ap50", "calibrate_tta": False,
                                  "calibrate": "validation", "balance": "none"}


# The paper's recipe: SGD with high momentum on one large tile per batch, He init and dropout
# (always on in build_unet), the weight map with w0 = 10 and sigma = 5 px, elastic deformation.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        depth=5, filters=64, padding="valid", dropout=0.5, tile_size=572, batch_size=1,
        optimizer="sgd", momentum=0.99, lr=0.01, lr_schedule="constant", w0=10.0, sigma=5.0,
        class_weights="balanced", elastic=True, elastic_grid=3, elastic_sigma=10.0, zoom=0.0,
    ),
}

"""``keras-unet fit``: train a U-Net on folders of images and masks, or on the demo data.

Settings come, in increasing priority, from TrainConfig's defaults, ``--preset``, ``--config FILE``
and the options given on the command line. The resolved settings go to RUN_DIR/config.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from . import main

AUGMENT_FIELDS = ("elastic", "flips", "rotation", "shift", "brightness", "contrast")

_D = None  # TrainConfig defaults, filled on first use (keeps --help free of TensorFlow)


def _defaults():
    """TrainConfig's defaults without importing TensorFlow (for --help)."""
    global _D
    if _D is None:
        _D = {
            "depth": 5, "filters": 16, "padding": "valid", "dropout": 0.5, "n_classes": 2,
            "tile_size": 316, "batch_size": 2, "epochs": 10, "steps_per_epoch": 50,
            "optimizer": "adam", "lr": 1e-3, "momentum": 0.99, "w0": 10.0, "sigma": 5.0,
            "elastic_grid": 3, "elastic_sigma": 10.0, "rotation": 10.0, "shift": 10.0,
            "brightness": 0.1, "contrast": 0.1, "seed": 0, "val_fraction": 0.0,
        }
    return _D


def _opt(*names, field=None, **kw):
    """A Click option whose default is TrainConfig's (shown in --help)."""
    key = field or names[0].lstrip("-").split("/")[0].replace("-", "_")
    if key in _defaults() and "default" not in kw:
        kw["default"] = _defaults()[key]
        kw.setdefault("show_default", True)
    return click.option(*names, **kw)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="JSON or YAML file of settings (same keys as config.json); options given "
                   "on the command line override it.")
@click.option("--preset", type=click.Choice(["paper"]),
              help="paper: the paper's recipe (64 base filters, 572 px tiles, batch 1, SGD with "
                   "momentum 0.99, elastic deformation); --config and options override it.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last checkpoint.")
@click.option("--images", type=click.Path(), help="Folder of images, or a multi-page TIFF stack.")
@click.option("--masks", type=click.Path(), help="Folder of masks (same file names), or a TIFF stack.")
@click.option("--val-images", type=click.Path(), help="Validation images (never augmented).")
@click.option("--val-masks", type=click.Path(), help="Validation masks.")
@_opt("--val-fraction", type=float,
      help="Hold out this fraction of the images for validation instead of --val-images.")
@click.option("--mask-type", type=click.Choice(["auto", "binary", "instance", "class"]),
              default="auto", show_default=True,
              help="binary: 0 and 1/255; instance: object ids; class: class ids.")
@click.option("--normalization", type=click.Choice(["image", "fixed"]), default="image",
              show_default=True, help="image: per-image mean/std; fixed: divide by dtype max.")
@click.option("--output", "-o", type=click.Path(),
              help="Run directory [default: runs/unet-YYYYmmdd-HHMMSS].")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --output.")
@_opt("--depth", type=int, help="Resolution levels.")
@_opt("--filters", type=int, help="Channels of the first level (paper: 64).")
@_opt("--padding", type=click.Choice(["valid", "same"]))
@_opt("--dropout", type=float, help="Dropout at the end of the contracting path.")
@click.option("--batch-norm/--no-batch-norm", default=False, show_default=True,
              help="Batch normalisation before each ReLU.")
@_opt("--classes", "n_classes", type=int, field="n_classes")
@_opt("--tile-size", type=int, help="Input tile size in px (must be valid for the network).")
@_opt("--epochs", type=int)
@_opt("--steps-per-epoch", type=int)
@_opt("--batch-size", type=int, help="Tiles per step over all replicas (the global batch).")
@_opt("--optimizer", type=click.Choice(["adam", "sgd"]))
@_opt("--lr", type=float, help="Learning rate.")
@_opt("--momentum", type=float, help="SGD momentum.")
@_opt("--w0", type=float, help="Border weight of the weight map (0: off).")
@_opt("--sigma", type=float, help="Border width of the weight map in px.")
@click.option("--class-weights", type=click.Choice(["balanced", "none"]), default="balanced",
              show_default=True)
@click.option("--no-weight-map", is_flag=True, help="Plain cross-entropy: w0 0, no class weights.")
@click.option("--elastic/--no-elastic", default=True, show_default=True,
              help="The paper's elastic deformation.")
@_opt("--elastic-grid", type=int, help="Control points per side of the deformation grid.")
@_opt("--elastic-sigma", type=float, help="Std. dev. of the grid displacements in px.")
@click.option("--flips/--no-flips", default=True, show_default=True,
              help="Random flips and 90-degree rotations.")
@_opt("--rotation", type=float, help="Largest extra rotation in degrees (0: off).")
@_opt("--shift", type=float, help="Largest shift in px (0: off).")
@_opt("--brightness", type=float, help="Largest brightness offset (0: off).")
@_opt("--contrast", type=float, help="Largest relative contrast change (0: off).")
@click.option("--no-augment", is_flag=True, help="Switch every augmentation off.")
@click.option("--mixed-precision", type=click.Choice(["off", "float16", "bfloat16"]),
              default="off", show_default=True,
              help="Compute in 16 bits (float16 on GPUs, bfloat16 on recent CPUs/TPUs); "
                   "the loss and the saved model stay float32.")
@click.option("--jit", is_flag=True, help="Compile the training step with XLA.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]),
              default="default", show_default=True,
              help="mirrored: all local GPUs; multi-worker: the cluster in TF_CONFIG.")
@_opt("--seed", type=int)
@click.option("--export", "export_name", metavar="NAME",
              help="After training, export a SavedModel to EXPORT_DIR/NAME/<version>.")
@click.option("--export-dir", type=click.Path(), default="exported_models", show_default=True)
@click.option("--dry-run", is_flag=True,
              help="Print the resolved settings (defaults < --preset < --config < options) as "
                   "JSON and stop.")
@click.pass_context
def fit(ctx: click.Context, config_file, preset, resume_dir, output, overwrite, no_weight_map,
        no_augment, export_name, export_dir, dry_run, **options) -> None:
    """Train a U-Net. Without --images/--masks it trains on the built-in demo data."""
    from keras_unet.training import PRESETS, TrainConfig, load_config_file

    given = {k for k in options if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    if options["class_weights"] == "none":
        options["class_weights"] = None
    if options["mixed_precision"] == "off":
        options["mixed_precision"] = None

    if resume_dir:
        extra = sorted(given - {"epochs"}) + [n for n, v in (
            ("--config", config_file), ("--preset", preset), ("--overwrite", overwrite),
            ("--output", output), ("--no-weight-map", no_weight_map), ("--no-augment", no_augment),
        ) if v]
        if extra:
            names = ", ".join(e if e.startswith("--") else "--" + e.replace("_", "-") for e in extra)
            raise ValueError(
                f"--resume continues with the run's recorded settings; drop {names} "
                "(only --epochs may change)"
            )
        run_dir = Path(resume_dir)
        recorded = run_dir / "config.json"
        if not recorded.is_file():
            raise FileNotFoundError(f"{run_dir} holds no run to resume ({recorded} is missing)")
        try:
            values = json.loads(recorded.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{recorded} is damaged (not valid JSON)") from None
        config = TrainConfig.from_dict(values)
        if "epochs" in given:
            config.epochs = options["epochs"]
    else:
        if no_augment and given & set(AUGMENT_FIELDS):
            raise ValueError(
                "--no-augment contradicts " + ", ".join("--" + g for g in sorted(given & set(AUGMENT_FIELDS)))
            )
        if no_weight_map and given & {"w0", "class_weights"}:
            raise ValueError("--no-weight-map contradicts --w0/--class-weights")
        values = dict(PRESETS[preset]) if preset else {}
        if config_file:
            values.update(load_config_file(config_file))
        values.update({k: options[k] for k in given})  # option names are TrainConfig's fields
        if no_weight_map:
            values.update(w0=0.0, class_weights=None)
        if no_augment:
            values.update(elastic=False, flips=False, rotation=0.0, shift=0.0, brightness=0.0,
                          contrast=0.0)
        config = TrainConfig.from_dict(values)
        config.validate()  # before reading any data: bad options fail fast
        if dry_run:
            click.echo(json.dumps(config.to_dict(), indent=2, sort_keys=True))
            return
        run_dir = Path(output or time.strftime("runs/unet-%Y%m%d-%H%M%S"))
        own = run_dir  # other workers of a multi-worker run write to RUN_DIR/worker-N
        if config.strategy == "multi-worker":
            from keras_unet.training import worker_info

            index, chief = worker_info()
            own = run_dir if chief else run_dir / f"worker-{index}"
        if (own / "model.keras").exists() or (own / "config.json").exists():
            if not overwrite:  # with --overwrite the files are replaced as the new run writes them
                raise FileExistsError(
                    f"{run_dir} holds another run; choose another --output, pass --overwrite, "
                    f"or continue it with --resume {run_dir}"
                )
    config.validate()

    from keras_unet import data as kdata
    from keras_unet.training import TrainingInterrupted, prepare_training_set, train

    train_set, val_set = _load(config, kdata, prepare_training_set)
    geo = config.geometry
    aug = config.augmentation
    switches = [n for n, on in (("elastic", aug.elastic), ("flips", aug.flips),
                                ("rotation", aug.rotation > 0), ("shift", aug.shift > 0),
                                ("grey values", aug.brightness > 0 or aug.contrast > 0)) if on]
    click.echo(
        f"Training a depth-{config.depth} U-Net with {config.filters} base filters on "
        f"{config.tile_size}px tiles (output {geo.output_size(config.tile_size)}px), "
        f"batch {config.batch_size}, {config.epochs} epochs x {config.steps_per_epoch} steps; "
        f"augmentation: {', '.join(switches) or 'off'}."
    )
    try:
        # A progress bar per epoch on a terminal; one line per epoch in logs.
        result = train(config, train_set, run_dir, val_set,
                       verbose="auto" if sys.stdout.isatty() else 2,
                       resume=bool(resume_dir), log=click.echo)
    except TrainingInterrupted as exc:
        click.echo(exc.message, err=True)
        sys.exit(130)
    click.echo(f"Model saved to {result.model_path}")
    if result.best_path:
        click.echo(f"Best model: {result.best_path}")
    if (result.model_path.parent / "curves.png").exists():
        click.echo(f"Training curves: {result.model_path.parent / 'curves.png'}")

    if export_name:
        from keras_unet.export import export_saved_model

        path = export_saved_model(
            result.model, export_dir, export_name, normalization=config.normalization,
            scale=config.input_scale, config=config.to_dict(),
        )
        click.echo(f"SavedModel exported to {path}")


def _load(config, kdata, prepare_training_set):
    """Read (or make) the training and validation sets and compute their weight maps."""
    val = None
    if config.images is None:
        n_val = 2 if not config.val_images else 0
        click.echo(f"No --images/--masks given: training on the built-in demo data (8 images"
                   + (f", {n_val} more for validation)." if n_val else ")."))
        xs, ys = kdata.demo_data(8 + n_val, 256, seed=config.seed)
        xs, ys = list(xs), list(ys)
        names = [f"demo {i}" for i in range(len(xs))]
        if n_val:
            val = (xs[8:], ys[8:], names[8:])
            xs, ys, names = xs[:8], ys[:8], names[:8]
    else:
        xs, ys, names = kdata.load_pairs(config.images, config.masks)
        click.echo(f"Read {len(xs)} image/mask pairs from {config.images} and {config.masks}.")
    if config.val_images:
        val = kdata.load_pairs(config.val_images, config.val_masks)
        click.echo(f"Read {len(val[0])} validation pairs from {config.val_images}.")
    elif config.val_fraction:
        keep, held = kdata.split_validation(len(xs), config.val_fraction, config.seed)
        val = ([xs[i] for i in held], [ys[i] for i in held], [names[i] for i in held])
        xs, ys, names = [xs[i] for i in keep], [ys[i] for i in keep], [names[i] for i in keep]
        click.echo(f"Holding out {len(held)} image(s) for validation: {', '.join(val[2])}.")
    scales = {kdata.dtype_scale(x) for x in xs}
    if len(scales) > 1:
        raise ValueError(
            f"the images mix bit depths ({sorted(scales)} as maximum values); convert them to one"
        )
    config.input_scale = scales.pop()
    kinds = {kdata.mask_kind(y, config.n_classes, config.mask_type) for y in ys}
    if "binary" in kinds and any(int(y.max()) == 255 for y in ys):
        click.echo("Binary masks: 0 is background, 255 is class 1.")
    n = len(xs) + (len(val[0]) if val else 0)
    with click.progressbar(length=n, label="Computing weight maps") as bar:
        train_set = prepare_training_set(xs, ys, config, names, progress=bar.update)
        val_set = prepare_training_set(*val[:2], config, val[2], progress=bar.update) if val else None
    return train_set, val_set

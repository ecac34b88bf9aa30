"""``keras-unet fit``: train a U-Net on folders of images and masks, or on the demo data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from . import main


@main.command()
@click.option("--images", type=click.Path(), help="Folder of images, or a multi-page TIFF stack.")
@click.option("--masks", type=click.Path(), help="Folder of masks (same file names), or a TIFF stack.")
@click.option("--mask-type", type=click.Choice(["auto", "binary", "instance", "class"]),
              default="auto", show_default=True,
              help="binary: 0 and 1/255; instance: object ids; class: class ids.")
@click.option("--output", "-o", type=click.Path(),
              help="Run directory for model.keras, config.json and history.csv "
                   "[default: runs/unet-YYYYmmdd-HHMMSS].")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --output.")
@click.option("--depth", type=int, default=5, show_default=True, help="Resolution levels.")
@click.option("--filters", type=int, default=16, show_default=True,
              help="Channels of the first level (paper: 64).")
@click.option("--padding", type=click.Choice(["valid", "same"]), default="valid", show_default=True)
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option("--batch-norm", is_flag=True, help="Batch normalisation before each ReLU.")
@click.option("--classes", "n_classes", type=int, default=2, show_default=True)
@click.option("--tile-size", type=int, default=316, show_default=True,
              help="Input tile size in px (must be valid for the network).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--steps-per-epoch", type=int, default=50, show_default=True)
@click.option("--batch-size", type=int, default=2, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate.")
@click.option("--momentum", type=float, default=0.99, show_default=True, help="SGD momentum.")
@click.option("--w0", type=float, default=10.0, show_default=True,
              help="Border weight of the weight map (0: off).")
@click.option("--sigma", type=float, default=5.0, show_default=True, help="Border width in px.")
@click.option("--class-weights", type=click.Choice(["balanced", "none"]), default="balanced",
              show_default=True)
@click.option("--normalization", type=click.Choice(["image", "fixed"]), default="image",
              show_default=True, help="image: per-image mean/std; fixed: divide by dtype max.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--export", "export_name", metavar="NAME",
              help="After training, export a SavedModel to EXPORT_DIR/NAME/<version>.")
@click.option("--export-dir", type=click.Path(), default="exported_models", show_default=True)
def fit(images, masks, mask_type, output, overwrite, export_name, export_dir, **options) -> None:
    """Train a U-Net. Without --images/--masks it trains on the built-in demo data."""
    from keras_unet.training import TrainConfig

    if options["class_weights"] == "none":
        options["class_weights"] = None
    config = TrainConfig(mask_type=mask_type, **options)
    config.validate()  # before reading any data: bad options fail fast

    run_dir = Path(output or time.strftime("runs/unet-%Y%m%d-%H%M%S"))
    if (run_dir / "model.keras").exists() or (run_dir / "config.json").exists():
        if not overwrite:  # with --overwrite the files are replaced as the new run writes them
            raise FileExistsError(
                f"{run_dir} holds another run; choose another --output or pass --overwrite"
            )

    from keras_unet import data as kdata
    from keras_unet.training import prepare_training_set, train

    if images is None and masks is None:
        click.echo("No --images/--masks given: training on the built-in demo data (8 images).")
        xs, ys = kdata.demo_data(8, 256, seed=config.seed)
        xs, ys, names = list(xs), list(ys), [f"demo {i}" for i in range(len(xs))]
    elif images is None or masks is None:
        raise ValueError("give both --images and --masks (or neither, for the demo data)")
    else:
        xs, ys, names = kdata.load_pairs(images, masks)
        click.echo(f"Read {len(xs)} image/mask pairs from {images} and {masks}.")
    config.input_scale = kdata.dtype_scale(xs[0])

    with click.progressbar(length=len(xs), label="Computing weight maps") as bar:
        data = prepare_training_set(xs, ys, config, names, progress=bar.update)
    geo = config.geometry
    click.echo(
        f"Training a depth-{config.depth} U-Net with {config.filters} base filters on "
        f"{config.tile_size}px tiles (output {geo.output_size(config.tile_size)}px), "
        f"batch {config.batch_size}, {config.epochs} epochs x {config.steps_per_epoch} steps."
    )
    # A progress bar per epoch on a terminal; one line per epoch in logs.
    result = train(config, data, run_dir, verbose="auto" if sys.stdout.isatty() else 2)
    click.echo(f"Model saved to {result.model_path}")

    if export_name:
        from keras_unet.export import export_saved_model

        path = export_saved_model(
            result.model, export_dir, export_name, normalization=config.normalization,
            scale=config.input_scale,
        )
        click.echo(f"SavedModel exported to {path}")

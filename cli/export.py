"""``keras-unet export``: write a trained model as a SavedModel for TensorFlow Serving."""

from __future__ import annotations

import click

from . import main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--name", default="unet", show_default=True, help="Model name (TF Serving MODEL_NAME).")
@click.option("--version", type=int, help="Integer version (default: the next free one).")
@click.option("--output", "-o", type=click.Path(), default="exported_models", show_default=True,
              help="Base folder; the export goes to OUTPUT/NAME/VERSION.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version.")
@click.option("--tile-size", type=int,
              help="Largest input tile of the in-graph overlap tiling [default: 572 for depth 5].")
@click.option("--batch-size", type=int, default=4, show_default=True,
              help="Tiles per forward pass inside the served graph (bounds its memory).")
@click.option("--check", is_flag=True, help="Then load it as TF Serving does (clean process, TF1 "
              "session loader, tag serve) and compare it with the Keras model.")
def export(model, name, version, output, overwrite, tile_size, batch_size, check) -> None:
    """Export MODEL (a .keras file from `keras-unet fit`) as a TF Serving SavedModel."""
    from keras_unet.export import export_model_file

    export_model_file(model, output, name, version, overwrite, tile_size, batch_size, check,
                      log=click.echo)

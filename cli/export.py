"""``keras-unet export``: write a trained model as a SavedModel for TensorFlow Serving."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--name", default="unet", show_default=True, help="Model name (TF Serving MODEL_NAME).")
@click.option("--version", type=int, help="Integer version (default: the next free one).")
@click.option("--output", "-o", type=click.Path(), default="exported_models", show_default=True,
              help="Base folder; the export goes to OUTPUT/NAME/VERSION.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version.")
def export(model, name, version, output, overwrite) -> None:
    """Export MODEL (a .keras file from `keras-unet fit`) as a TF Serving SavedModel."""
    path = Path(model)
    if not path.is_file() or path.suffix != ".keras":
        raise FileNotFoundError(
            f"{path} is not a .keras model file; give the model.keras that `keras-unet fit` wrote"
        )
    config_file = path.with_name("config.json")
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    normalization = config.get("normalization", "image")
    scale = float(config.get("input_scale", 255.0))

    from keras_unet._compat import keras
    from keras_unet.export import export_saved_model

    try:
        unet = keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken file
        raise ValueError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    out = export_saved_model(unet, output, name, version, overwrite, normalization, scale)
    click.echo(f"SavedModel exported to {out}")

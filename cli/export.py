"""``keras-unet export``: write a trained model as a SavedModel for TensorFlow Serving."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


def run_config(model_path: Path) -> dict:
    """The config.json of the run a model belongs to (beside it, or one folder up for
    checkpoints/best.keras); {} if there is none."""
    for folder in (model_path.parent, model_path.parent.parent):
        if (folder / "config.json").is_file():
            try:
                return json.loads((folder / "config.json").read_text())
            except json.JSONDecodeError:
                raise ValueError(f"{folder / 'config.json'} is damaged (not valid JSON)") from None
    return {}


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
@click.option("--check", is_flag=True,
              help="Then load the export as TF Serving does (TF1 session loader, tag serve, in a "
                   "clean process) and compare it with the Keras model.")
def export(model, name, version, output, overwrite, tile_size, batch_size, check) -> None:
    """Export MODEL (a .keras file from `keras-unet fit`) as a TF Serving SavedModel."""
    path = Path(model)
    if not path.is_file() or path.suffix != ".keras":
        raise FileNotFoundError(
            f"{path} is not a .keras model file; give the model.keras that `keras-unet fit` wrote"
        )
    config = run_config(path)
    normalization = config.get("normalization", "image")
    scale = float(config.get("input_scale", 255.0))

    from keras_unet._compat import keras
    from keras_unet.export import check_export, export_saved_model
    from keras_unet.model import geometry_of

    try:
        unet = keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a broken file
        raise ValueError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    if tile_size is not None:
        geometry_of(unet).check(tile_size, "--tile-size")
    out = export_saved_model(unet, output, name, version, overwrite, normalization, scale,
                             config=config, tile_size=tile_size, batch_size=batch_size)
    click.echo(f"SavedModel exported to {out}")
    if check:
        click.echo("Checking it the way TF Serving loads it (clean process, tag 'serve')...")
        report = check_export(out, unet, normalization, scale)
        for sig, info in sorted(report["signatures"].items()):
            ins = ", ".join(f"{k}: {v}" for k, v in sorted(info["inputs"].items()))
            outs = ", ".join(f"{k}: {v}" for k, v in sorted(info["outputs"].items()))
            click.echo(f"  {sig}({ins}) -> {outs}")
        click.echo(f"  warm-up records replayed: {report['warmup']}")
        click.echo(f"  max |difference| to the Keras model on a "
                   f"{report['image_size'][0]}x{report['image_size'][1]} image: "
                   f"{report['max_abs_diff_vs_keras']:.2e}")
        click.echo("Check passed.")

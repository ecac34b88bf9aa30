"""``keras-unet export``: a trained model as a TF Serving SavedModel or a bioimage.io package."""

from __future__ import annotations

import click

from . import main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "bioimageio"]),
              default="savedmodel", show_default=True, help="savedmodel: for TF Serving, in "
              "OUTPUT/NAME/VERSION. bioimageio: OUTPUT/NAME.zip for Fiji (deepImageJ), ilastik, "
              "napari, QuPath; needs pip install \"keras-unet[bioimageio]\".")
@click.option("--name", help="TF Serving MODEL_NAME, or the zip's name [default: a packaged "
              "model's own name (nuclei), else unet].")
@click.option("--version", type=int, help="Integer version (default: the next free one).")
@click.option("--output", "-o", type=click.Path(), default="exported_models", show_default=True,
              help="Base folder of the export.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version or zip.")
@click.option("--tile-size", type=int, help="Largest input tile of the in-graph tiling "
              "[default: the input of a 388 px output: 572 px for depth 5].")
@click.option("--batch-size", type=int, default=4, show_default=True,
              help="Tiles per forward pass inside the served graph (bounds its memory).")
@click.option("--check", is_flag=True, help="Then test it. savedmodel: load it as TF Serving does "
              "(TF1 session loader) and compare with the Keras model; bioimageio: "
              "bioimageio.core's test for each weight format, in a process without keras_unet.")
@click.option("--authors", help="bioimageio: author names, separated by ';' [default: keras-unet "
              "user].")
@click.option("--license", "license_id", help="bioimageio: SPDX licence identifier [default: MIT].")
@click.option("--description", help="bioimageio: what the model does, in a sentence or two.")
@click.option("--image", type=click.Path(), help="bioimageio: image for the test tensors and the "
              "cover [default: the run's first image].")
def export(model, fmt, name, version, output, overwrite, tile_size, batch_size, check, authors,
           license_id, description, image) -> None:
    """Export MODEL (a .keras file, run folder, packaged model: nuclei) for TF Serving/bioimage.io."""
    if fmt == "bioimageio":
        from keras_unet.bioimage import export_bioimageio_file

        export_bioimageio_file(model, output, name, overwrite=overwrite, check=check, image=image,
                               authors=authors, license=license_id, description=description,
                               ignored={"--version": version, "--tile-size": tile_size},
                               log=click.echo)
        return
    if authors or license_id or description or image:
        raise ValueError("--authors, --license, --description and --image go with "
                         "--format bioimageio")
    from keras_unet.export import export_model_file

    export_model_file(model, output, name, version, overwrite, tile_size, batch_size, check,
                      log=click.echo)

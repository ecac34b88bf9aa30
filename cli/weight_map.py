"""``keras-unet weight-map``: compute the paper's weight map for one mask and show it."""

from __future__ import annotations

import click

from keras_unet.config import TrainConfig

from . import main

FIT = TrainConfig()  # the defaults fit trains with, so the map shown is the map trained on


@main.command("weight-map")
@click.argument("mask", type=click.Path())
@click.option("--w0", type=float, default=FIT.w0, show_default=True, help="Border weight.")
@click.option("--sigma", type=float, default=FIT.sigma, show_default=True,
              help="Border width in px.")
@click.option("--class-weights", type=click.Choice(["balanced", "none"]),
              default=FIT.class_weights or "none", show_default=True,
              help="Class balancing (fit's default: none).")
@click.option("--mask-type", type=click.Choice(["auto", "binary", "instance"]), default="auto",
              show_default=True, help="binary: objects are connected components; instance: ids.")
@click.option("--border-width", type=int, default=FIT.border_width, show_default=True,
              help="Separating border px per touching object (0: off), as fit uses.")
@click.option("--output", "-o", type=click.Path(), required=True,
              help="Output path without suffix: writes OUTPUT.npy and OUTPUT.png.")
@click.option("--axes", help="Axes of a TIFF mask whose file does not say (e.g. YX).")
def weight_map(mask, w0, sigma, class_weights, mask_type, border_width, output, axes) -> None:
    """Write the weight map of MASK as .npy (exact values) and a colour-mapped .png."""
    from keras_unet.settings import as_option
    from keras_unet.visualize import weight_map_files

    try:
        weight_map_files(mask, output, w0, sigma, None if class_weights == "none" else
                         "balanced", mask_type, border_width, log=click.echo, axes=axes)
    except ValueError as exc:  # --w0, not the setting's name w0
        raise ValueError(as_option(str(exc), {"w0", "sigma", "border_width"})) from None

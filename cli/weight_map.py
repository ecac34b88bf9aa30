"""``keras-unet weight-map``: compute the paper's weight map for one mask and show it."""

from __future__ import annotations

from pathlib import Path

import click

from . import main


@main.command("weight-map")
@click.argument("mask", type=click.Path())
@click.option("--w0", type=float, default=10.0, show_default=True, help="Border weight.")
@click.option("--sigma", type=float, default=5.0, show_default=True, help="Border width in px.")
@click.option("--class-weights", type=click.Choice(["balanced", "none"]), default="balanced",
              show_default=True)
@click.option("--mask-type", type=click.Choice(["auto", "binary", "instance"]), default="auto",
              show_default=True, help="binary: objects are connected components; instance: ids.")
@click.option("--output", "-o", type=click.Path(), required=True,
              help="Output path without suffix: writes OUTPUT.npy and OUTPUT.png.")
def weight_map(mask, w0, sigma, class_weights, mask_type, output) -> None:
    """Write the weight map of MASK as .npy (exact values) and a colour-mapped .png."""
    import numpy as np

    from keras_unet.data import read_mask
    from keras_unet.visualize import weight_map_image, write_png
    from keras_unet.weights import to_instances, unet_weight_map

    labels = to_instances(read_mask(mask), mask_type)
    w = unet_weight_map(labels, w0, sigma, None if class_weights == "none" else "balanced")
    out = Path(output)
    if out.suffix in (".npy", ".png"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out.with_suffix(".npy"), w)
    write_png(out.with_suffix(".png"), weight_map_image(w))
    click.echo(
        f"{int(labels.max() > 0 and len(np.unique(labels)) - 1)} objects; "
        f"weights min {w.min():.3f}, mean {w.mean():.3f}, max {w.max():.3f}"
    )
    click.echo(f"Wrote {out.with_suffix('.npy')} and {out.with_suffix('.png')}")

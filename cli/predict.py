"""``keras-unet predict``, ``evaluate`` and ``serving-status``: segment, score, ask the server."""

from __future__ import annotations

import json

import click

from keras_unet.axes import AXES_HELP

from . import main


def _bar(label: str, stream=None):
    """A progress bar over a list of files, showing the current name."""
    def wrap(items):
        with click.progressbar(items, label=label, file=stream, item_show_func=lambda p: getattr(
                p, "name", None)) as bar:
            yield from bar
    return wrap


def instance_options(command):
    """Options of the step from probabilities to objects (defaults: the model's own)."""
    for decl, kw in reversed([
        ("--threshold", dict(type=float, help="Object probability above which a pixel is an "
                                             "object [default: the model's calibrated one].")),
        ("--min-size", dict(type=int, help="Smallest object in px [default: the model's].")),
        ("--border-width", dict(type=int, help="Separating border px to give back to objects "
                                               "[default: the model's training value].")),
        ("--split-depth", dict(type=float, help="Cut objects at necks this many px deep (0: "
                                                "off) [default: the model's calibrated one].")),
        ("--watershed", dict(is_flag=True, help="Split touching objects by a seeded watershed."))]):
        command = click.option(decl, **kw)(command)
    return command


@main.command()
@click.argument("args", nargs=-1, required=True, type=click.Path(), metavar="[MODEL] INPUTS...")
@click.option("--output", "-o", type=click.Path(), required=True, help="Folder for the results.")
@click.option("--tile-size", type=int, help="Input tile size in px (default: chosen per image).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Tiles per forward pass.")
@click.option("--tta", is_flag=True, help="Average over flips and 90-degree rotations (8x slower).")
@click.option("--save-probabilities", is_flag=True, help="Also write NAME_probabilities.npy.")
@click.option("--overlay/--no-overlay", default=True, show_default=True,
              help="Write NAME_overlay.png: the mask over the image.")
@click.option("--server", metavar="URL",
              help="Ask TF Serving at URL (e.g. http://localhost:8501) instead of a local MODEL.")
@click.option("--model", "model_name", metavar="NAME", help="With --server: the served model's name.")
@click.option("--version", "model_version", type=int, help="With --server: a model version.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="With --server: seconds in all before giving up.")
@click.option("--instances", "as_instances", is_flag=True,
              help="Also write NAME_instances.tif: one id per object (uint16).")
@click.option("--blockwise", is_flag=True, help="Strip by strip to tiled TIFF/zarr, for images "
              "larger than memory (automatic, any format, over 64 MP or 2 GiB whole).")
@click.option("--axes", help=AXES_HELP)
@instance_options
def predict(args, output, tile_size, batch_size, tta, save_probabilities, overlay, server,
            model_name, model_version, timeout, as_instances, blockwise, axes, **instance) -> None:
    """Segment INPUTS (images, folders, TIFF stacks) with MODEL (.keras, a run folder, a
    SavedModel folder, or a packaged model's name: nuclei), or with a model served by TF Serving
    (--server URL --model NAME; no MODEL then).

    Writes NAME_mask.png per image (0/255 for two classes, class ids otherwise; a multi-page
    NAME_mask.tif for TIFF stacks). A file that cannot be read is reported and skipped.
    """
    named = [f"--{k.replace('_', '-')}" for k, v in instance.items() if v not in (None, False)]
    if named and not as_instances:
        raise ValueError(f"{', '.join(named)} set{'s' * (len(named) == 1)} how objects are "
                         "cut: add --instances")
    if server:
        if not model_name:
            raise ValueError("--server needs --model NAME (the served model's name)")
        if tta or save_probabilities or tile_size or as_instances:
            raise ValueError("--tta, --tile-size, --save-probabilities and --instances work with "
                             "a local MODEL only, not with --server")
        from keras_unet.remote import predict_files_remote  # no TensorFlow on this path
        from keras_unet.serving import ServingClient

        client = ServingClient(server, model_name, model_version, timeout=timeout)
        report = predict_files_remote(client, args, output, overlay,
                                      _bar(f"Predicting with {client.model_url}"), axes)
    else:
        if model_name or model_version:
            raise ValueError("--model and --version go with --server; a local MODEL is a path")
        if len(args) < 2:
            raise ValueError("give MODEL and at least one input (or --server URL --model NAME)")
        from keras_unet.predict import predict_files

        report = predict_files(args[0], args[1:], output, tile_size, batch_size, tta, overlay,
                               save_probabilities, _bar("Predicting"),
                               instance if as_instances else None, blockwise,
                               click.progressbar, axes, click.echo)
    click.echo("\n".join(report.notes), nl=bool(report.notes))  # block-wise notes, then errors
    for line in report.failed:
        click.echo(f"Error: {line}", err=True)
    click.echo(report.summary)
    if report.failed:
        raise SystemExit(1)


@main.command("serving-status")
@click.option("--server", metavar="URL", required=True, help="TF Serving's REST address.")
@click.option("--model", "model_name", metavar="NAME", required=True, help="The model's name.")
@click.option("--version", "model_version", type=int, help="One version only.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds in all before giving up.")
@click.option("--json", "as_json", is_flag=True, help="Print TF Serving's answers as JSON.")
def serving_status(server, model_name, model_version, timeout, as_json) -> None:
    """Show a served model's versions and states, and its signatures."""
    from keras_unet.serving import ServingClient, describe_status

    client = ServingClient(server, model_name, model_version, timeout=timeout)
    status, metadata = client.status(), client.metadata()
    if as_json:
        click.echo(json.dumps({"status": status, "metadata": metadata}, indent=2))
    else:
        click.echo("\n".join(describe_status(server, model_name, status, metadata)))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--images", required=True, type=click.Path(), help="Folder of images (or TIFF stack).")
@click.option("--masks", required=True, type=click.Path(), help="Matching ground-truth masks.")
@click.option("--mask-type", type=click.Choice(["auto", "binary", "instance", "class"]),
              default="auto", show_default=True)
@click.option("--tile-size", type=int, help="Input tile size in px.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--tta", is_flag=True, help="Test-time augmentation (flips and rotations).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--axes", help=AXES_HELP)
@click.option("--groups", type=click.Path(), help="CSV of 'file name,group' lines: scores per "
              "group too. Without it, sub-folders of --images (and --masks) are the groups.")
@instance_options
def evaluate(model, images, masks, mask_type, tile_size, batch_size, tta, as_json, axes, groups,
             **instance) -> None:
    """Score MODEL (a .keras file, a run folder, or a packaged model's name: nuclei) on
    labelled images: pixel error, IoU, Dice, Rand error, instance AP at IoU 0.5-0.95, mAP, AJI,
    F1, merges and splits; overall and per group."""
    from keras_unet.evaluate import evaluate_files, format_table

    # With --json, stdout carries only the JSON; the progress goes to stderr.
    stream = click.get_text_stream("stderr") if as_json else None
    result = evaluate_files(model, images, masks, mask_type, tile_size, batch_size, tta,
                            _bar("Evaluating", stream), instance, axes, groups)
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))

"""``keras-unet fit``: train a U-Net on folders of images and masks, or on the demo data. The options
are built from :class:`keras_unet.config.TrainConfig`'s fields, declared once, in the library."""

from __future__ import annotations

import json
import sys

import click
from click.core import ParameterSource

from keras_unet.cache import CACHE_DIR_HELP, DATA_MEMORY_HELP
from keras_unet.config import PRESETS, option_fields

from . import main

TYPES = {"int": int, "float": float, "str": str}


def config_options(command):
    """Add one option per TrainConfig setting."""
    for f in reversed(option_fields()):
        meta = f.metadata
        kw = {"help": meta["help"], "show_default": True}
        if "flag" in meta:  # --jit, or --elastic/--no-elastic
            kw.update(default=f.default, **({} if "/" in meta["flag"] else {"is_flag": True}))
            command = click.option(meta["flag"], f.name, **kw)(command)
            continue
        if "choices" in meta:
            kw.update(type=click.Choice(meta["choices"]),
                      default=meta.get("none") if f.default is None else f.default)
        elif meta.get("type") == "path":
            kw.update(type=click.Path(), show_default=False)
        else:
            kw.update(type=TYPES[f.type.removesuffix("| None").strip()], default=f.default,
                      show_default=f.default is not None)
        name = meta.get("option", "--" + f.name.replace("_", "-"))
        command = click.option(name, f.name, **kw)(command)
    return command


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="JSON or YAML file of settings (same keys as config.json); options given "
                   "on the command line override it.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), help="paper: the paper's recipe (64 "
              "base filters, 572 px tiles, batch 1, SGD, momentum 0.99); --config and options "
              "override it.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last checkpoint.")
@click.option("--output", "-o", type=click.Path(),
              help="Run directory [default: runs/unet-YYYYmmdd-HHMMSS].")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --output.")
@click.option("--no-weight-map", is_flag=True, help="Plain cross-entropy: w0 0, no class weights.")
@click.option("--no-augment", is_flag=True, help="Switch every augmentation off.")
@config_options
@click.option("--export", "export_name", metavar="NAME",
              help="After training, export a SavedModel to EXPORT_DIR/NAME/<version>.")
@click.option("--export-dir", type=click.Path(), default="exported_models", show_default=True)
@click.option("--data-memory", metavar="GB", help=DATA_MEMORY_HELP)
@click.option("--cache-dir", type=click.Path(file_okay=False), help=CACHE_DIR_HELP)
@click.option("--dry-run", is_flag=True,
              help="Print the resolved settings (defaults < --preset < --config < options) as "
                   "JSON and stop.")
@click.pass_context
def fit(ctx: click.Context, config_file, preset, resume_dir, output, overwrite, no_weight_map,
        no_augment, export_name, export_dir, data_memory, cache_dir, dry_run, **options) -> None:
    """Train a U-Net. Without --images/--masks it trains on the built-in demo data."""
    from keras_unet.runs import plan_run

    given = {k: v for k, v in options.items()
             if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    for f in option_fields():  # the choice that stands for None ("off", "none")
        if f.name in given and given[f.name] == f.metadata.get("none"):
            given[f.name] = None
    run = plan_run(given, preset, config_file, resume_dir, output, overwrite, no_weight_map,
                   no_augment, export_dir if export_name else None,
                   log=lambda line: click.echo(line, err=dry_run))  # --dry-run: JSON only
    if dry_run:
        click.echo(json.dumps(run.config.to_dict(), indent=2, sort_keys=True))
        return
    from keras_unet.training import TrainingInterrupted, fit_run

    try:  # a progress bar per epoch on a terminal; one line per epoch in logs
        result = fit_run(run, click.echo, click.progressbar, "auto" if sys.stdout.isatty() else 2,
                         data_memory, cache_dir)
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

        path = export_saved_model(result.model, export_dir, export_name, config=run.config.to_dict())
        click.echo(f"SavedModel exported to {path}")

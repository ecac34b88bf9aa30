"""The ``keras-unet`` command line: a thin Click layer over :mod:`keras_unet`.

Installed as ``keras_unet.cli`` (the source lives in the top-level ``cli/`` folder). Library
modules are imported inside the commands, so ``keras-unet --help`` answers without loading
TensorFlow. Bad input ends in one line ``Error: ...`` and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

__all__ = ["main"]

# Errors that mean "the user's input is wrong": shown as one line, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError)


def quiet_keras() -> None:
    """Hide Keras' UserWarnings (e.g. about dataset shuffling) that say nothing to a CLI user."""
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")


class UNetGroup(click.Group):
    """A Click group that turns user errors from any command into one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            message = str(exc).strip().splitlines()
            # Keras wraps errors raised inside layers; keep the line that carries our message.
            line = next((m.strip() for m in message if m.strip() and "Exception encountered" not in m), "")
            raise click.ClickException(line.replace("\x1b[1m", "").replace("\x1b[0m", "")) from None
        except KeyboardInterrupt as exc:
            click.echo(getattr(exc, "message", "Interrupted."), err=True)
            sys.exit(130)


@click.group(cls=UNetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-unet", prog_name="keras-unet")
def main() -> None:
    """U-Net (Ronneberger et al. 2015) for biomedical image segmentation.

    \b
    Quick start on the built-in demo data:
      keras-unet fit --export unet      # train on CPU, export a SavedModel
    """
    quiet_keras()


from . import export as _export  # noqa: E402  (commands register themselves on ``main``)
from . import fit as _fit  # noqa: E402
from . import predict as _predict  # noqa: E402
from . import weight_map as _weight_map  # noqa: E402

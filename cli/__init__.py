"""The ``keras-unet`` command line: a thin Click layer over :mod:`keras_unet`.

Installed as ``keras_unet.cli`` (the source lives in the top-level ``cli/`` folder). Each command
parses its options, calls one library function and prints the result. TensorFlow is imported only
inside the commands, so ``--help`` and option errors answer at once. Bad input ends in one line
``Error: ...`` and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

__all__ = ["main"]

# User errors, shown as one line: every OSError (missing file, read-only folder) is the user's.
USER_ERRORS = (ValueError, OSError)


class UNetGroup(click.Group):
    """A Click group that turns user errors from any command into one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            from keras_unet.console import one_line

            raise click.ClickException(one_line(exc)) from None
        except KeyboardInterrupt as exc:
            click.echo(getattr(exc, "message", "Interrupted."), err=True)
            sys.exit(130)


@click.group(cls=UNetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-unet", prog_name="keras-unet")
@click.option("--verbose", "-v", is_flag=True,
              help="Show TensorFlow's own log lines (also: KERAS_UNET_VERBOSE=1).")
def main(verbose: bool) -> None:
    """U-Net (Ronneberger et al. 2015) for biomedical image segmentation.

    \b
    Quick start on the built-in demo data, then the packaged nuclei model:
      keras-unet fit --export unet      # train on CPU, export a SavedModel
      keras-unet predict nuclei IMAGE --instances -o out/   # no training
    """
    from keras_unet.console import quiet_tensorflow

    quiet_tensorflow(verbose)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")


from . import export as _export  # noqa: E402,F401  (commands register themselves on ``main``)
from . import fit as _fit  # noqa: E402,F401
from . import predict as _predict  # noqa: E402,F401
from . import weight_map as _weight_map  # noqa: E402,F401

"""Running the ``keras-unet`` command in-process, and the bad-input check the tests share."""

from click.testing import CliRunner

from keras_unet.cli import main


def run(*args, env=None):
    """``keras-unet ARGS`` in this process (exceptions caught, as a user would see them)."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_error_line(result, message):
    """The command failed with exactly one ``Error:`` line holding ``message``, no traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output

"""What the command line shows: TensorFlow's native log lines hidden unless asked for.

TensorFlow's C++ core writes start-up lines straight to file descriptor 2 (``I0000 ... oneDNN
custom operations are on``, ``cuInit`` failures on machines without a GPU, CPU feature banners),
before Python's logging is set up and regardless of ``TF_CPP_MIN_LOG_LEVEL`` for some of them. A
new user takes ``E0000 ... failed call to cuInit`` for the failure of their command.
:func:`quiet_tensorflow` therefore passes file descriptor 2 through a filter that drops those
lines and keeps everything else (errors, warnings, progress bars). ``--verbose`` or
``KERAS_UNET_VERBOSE=1`` shows them all. This module imports no TensorFlow.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import re
import sys
import threading
import types

__all__ = ["quiet_tensorflow", "NATIVE_LOG", "one_line", "no_bar", "show_input_warnings",
           "InputWarning"]


@contextlib.contextmanager
def no_bar(length: int, label: str):
    """A stand-in for ``click.progressbar(length=, label=)`` that shows nothing."""
    yield types.SimpleNamespace(update=lambda _n: None)


class InputWarning(UserWarning):
    """An input the model can take but may not mean (values beyond its training range, ...);
    the command line shows each as one ``Warning: ...`` line."""


def show_input_warnings() -> None:
    """Show every :class:`keras_unet.images.InputWarning` as one ``Warning: ...`` line (no
    source file and line), each time it occurs; other warnings as Python shows them."""
    import warnings

    warnings.simplefilter("always", InputWarning)
    plain = warnings.formatwarning

    def one_line_warning(message, category, filename, lineno, line=None):
        if issubclass(category, InputWarning):
            return f"Warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = one_line_warning


def one_line(exc: BaseException) -> str:
    """The line of an error message that carries it, for a one-line report.

    Keras wraps errors raised inside layers in several lines ("Exception encountered when
    calling ..."); OSErrors read "[Errno 30] Read-only file system: 'x'", which is kept.
    """
    lines = [m.strip() for m in str(exc).strip().splitlines() if m.strip()]
    line = next((m for m in lines if "Exception encountered" not in m), type(exc).__name__)
    return line.replace("\x1b[1m", "").replace("\x1b[0m", "")

# absl/glog lines (I0000 12:34:56.789 ...), and the banners TensorFlow prints around them
NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|\S+ \d\d:\d\d:\d\d\.\d+: [IWE] \S+\] )"
)

_state: dict = {}


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide TensorFlow's native log lines for the rest of the process (see the module docs).

    Makes stdout line-buffered, so that its lines reach a log file as they are written, in
    order with Python's stderr lines (which a synchronous filter writes straight to the
    terminal or file). Shows input warnings as one line each (:func:`show_input_warnings`),
    sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set) and filters file descriptor 2, where native
    code writes, through a thread (native lines may arrive a little later than Python's).
    Does nothing with ``verbose``, with ``KERAS_UNET_VERBOSE=1``, when already done, or when
    stderr has no file descriptor (inside a test runner's capture, say).
    """
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    show_input_warnings()
    if verbose or os.environ.get("KERAS_UNET_VERBOSE", "") not in ("", "0") or _state:
        return
    if sys.stderr is not sys.__stderr__:  # captured (click's CliRunner, pytest): leave it be
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing notes
    try:
        fd = sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):
        return
    original = os.dup(fd)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, fd)
    os.close(write_end)
    # Python's own writes to stderr (errors, warnings, click's lines) skip the pipe: they go
    # straight to the original descriptor through a synchronous line filter, so that they stay in
    # order with stdout in a log file (``> log 2>&1``). Only native writes go through the pump.
    previous = sys.stderr
    sys.stderr = _LineFilter(io.TextIOWrapper(
        io.FileIO(original, "w", closefd=False), encoding=previous.encoding or "utf-8",
        errors="backslashreplace", line_buffering=True, write_through=True))

    def pump() -> None:
        buffer = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                kept = [line + b"\n" for line in lines if not NATIVE_LOG.match(line)]
                if kept:
                    os.write(original, b"".join(kept))
                if buffer and not NATIVE_LOG.match(buffer) and b"\r" in buffer:
                    os.write(original, buffer)  # progress bars redraw one line with \r
                    buffer = b""
        if buffer and not NATIVE_LOG.match(buffer):
            os.write(original, buffer)

    thread = threading.Thread(target=pump, name="keras-unet-stderr", daemon=True)
    thread.start()
    _state.update(fd=fd, original=original, thread=thread, previous=previous)
    atexit.register(_restore)


class _LineFilter(io.TextIOBase):
    """A text stream that drops :data:`NATIVE_LOG` lines and passes the rest on, in the
    caller's thread (Python-level absl log lines would otherwise reach the terminal)."""

    def __init__(self, target: io.TextIOWrapper):
        self._target = target
        self._buffer = ""

    @property
    def encoding(self) -> str:
        return self._target.encoding

    @property
    def errors(self) -> str:
        return self._target.errors

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return self._target.isatty()

    @property
    def buffer(self):  # binary writes (click.echo of bytes) pass unfiltered
        self.flush()
        return self._target.buffer

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        kept = [line + "\n" for line in lines
                if not NATIVE_LOG.match(line.encode("utf-8", "backslashreplace"))]
        if "\r" in self._buffer:  # progress bars redraw one line with \r
            kept.append(self._buffer)
            self._buffer = ""
        if kept:
            self._target.write("".join(kept))
        return len(text)

    def flush(self) -> None:
        if self._buffer and not NATIVE_LOG.match(self._buffer.encode("utf-8", "backslashreplace")):
            self._target.write(self._buffer)
        self._buffer = ""
        self._target.flush()


def _restore() -> None:
    """Flush what the filter holds and give file descriptor 2 back (at exit)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_state["original"], _state["fd"])  # closes the pipe's last write end: the pump ends
    _state["thread"].join(timeout=2)
    sys.stderr = _state["previous"]

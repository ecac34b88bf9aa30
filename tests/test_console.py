"""The command line's stderr filter (keras_unet.console): native log lines hidden, Python's own
lines kept and in order with stdout in a log file."""

import subprocess
import sys
import textwrap

import pytest

from keras_unet.console import NATIVE_LOG, one_line

SCRIPT = textwrap.dedent("""
    import os, sys
    from keras_unet.console import quiet_tensorflow
    quiet_tensorflow()
    for i in range(200):
        print(f"out {i}")
        sys.stderr.write(f"err {i}\\n")
    sys.stderr.write("I0000 00:00:1700000000.000000  123 cpu_feature_guard.cc:210] python\\n")
    os.write(2, b"I0000 00:00:1700000000.000000  123 port.cc:153] native hidden\\n")
    os.write(2, b"native kept\\n")
    sys.stderr.write("Error: last line\\n")
""")


def test_python_stderr_stays_in_order_with_stdout(tmp_path):
    log = tmp_path / "log"
    with open(log, "wb") as sink:
        subprocess.run([sys.executable, "-c", SCRIPT], stdout=sink, stderr=subprocess.STDOUT,
                       check=True, env={"PATH": "", "PYTHONPATH": ":".join(sys.path)})
    lines = log.read_text().splitlines()
    ours = [line for line in lines if line.startswith(("out ", "err "))]
    assert ours == [f"{kind} {i}" for i in range(200) for kind in ("out", "err")]
    assert "native kept" in lines
    assert not any("cpu_feature_guard" in line or "native hidden" in line for line in lines)
    assert "Error: last line" in lines


@pytest.mark.parametrize("line, native", [
    (b"I0000 00:00:1700000000.000000  123 cpu_feature_guard.cc:210] banner", True),
    (b"E0000 00:00:1700000000.000000  123 cuda_executor.cc:1228] failed call to cuInit", True),
    (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
     True),
    (b"Error: --images: no such folder", False),
    (b"Epoch 1/40", False),
])
def test_native_log_pattern(line, native):
    assert bool(NATIVE_LOG.match(line)) is native


def test_one_line_skips_keras_wrapping():
    exc = ValueError("Exception encountered when calling X.\n\nthe real reason\n")
    assert one_line(exc) == "the real reason"

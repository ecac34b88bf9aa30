"""The disk cache of training data and --data-memory: reuse, rebuild on changed data, no half
cache after kill -9 or a full disk, one-line errors, and tiles equal to those held in memory."""

import errno
import os
from pathlib import Path
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from keras_unet import cache
from keras_unet.cli import main
from keras_unet.config import TrainConfig
from keras_unet.data import training_dataset, validation_tiles
from keras_unet.prepare import load_training_data

TINY_CLI = ["--depth", "2", "--filters", "2", "--tile-size", "44", "--batch-size", "2",
            "--steps-per-epoch", "2", "--epochs", "1"]


def write_pairs(folder, n=4, seed=0):
    """PNG images and instance masks of random discs, of different sizes."""
    import cv2

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        yy, xx = np.mgrid[:h, :w]
        mask = np.zeros((h, w), np.uint16)
        for k in range(1, 6):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 9)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = k
        image = (rng.integers(0, 60, (h, w)) + 120 * (mask > 0)).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"p{i}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"p{i}.png"), mask)
    return folder / "images", folder / "masks"


def config(images, masks, **kw):
    return TrainConfig(images=str(images), masks=str(masks), depth=2, tile_size=44,
                       val_fraction=0.25, **kw)


def caches(root):
    """The complete caches in ``root`` (hidden names are temporary folders and the lock)."""
    return sorted(p.name for p in root.glob("*") if not p.name.startswith("."))


def tiles(data, cfg, n=3):
    ds = training_dataset(data, cfg.geometry, cfg.tile_size, 2, cfg.seed, cfg.augmentation)
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_the_cache_gives_the_tiles_memory_gives_and_is_reused(tmp_path):
    images, masks = write_pairs(tmp_path)
    root = tmp_path / "cache"
    cfg = config(images, masks)
    in_memory, val_memory = load_training_data(cfg, data_memory=10)
    assert caches(root) == []
    lines = []
    cached, val_cached = load_training_data(config(images, masks), lines.append,
                                            data_memory=1e-6, cache_dir=root)
    assert len(caches(root)) == 1 and "writing them once to the disk cache" in lines[-1]
    assert not isinstance(cached.images[0], np.ndarray)  # read from disk, not held
    for a, b in zip(tiles(in_memory, cfg), tiles(cached, cfg)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    va, vb = (validation_tiles(v, cfg.geometry, 44) for v in (val_memory, val_cached))
    for key in va:
        np.testing.assert_array_equal(va[key], vb[key])
    for a, b in zip(val_memory.instances, val_cached.instances):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert (cached.min_object_size, cached.border_width) == (
        in_memory.min_object_size, in_memory.border_width)
    np.testing.assert_array_equal(val_memory.normalised[0], val_cached.normalised[0])

    lines.clear()  # a second run finds it
    load_training_data(config(images, masks), lines.append, data_memory=1e-6, cache_dir=root)
    assert "reading them from the disk cache" in lines[-1] and len(caches(root)) == 1

    import cv2  # a changed mask, or a changed setting, makes a new cache

    mask = cv2.imread(str(masks / "p1.png"), cv2.IMREAD_UNCHANGED)
    mask[:5, :5] = 9
    cv2.imwrite(str(masks / "p1.png"), mask)
    load_training_data(config(images, masks), lines.append, data_memory=1e-6, cache_dir=root)
    assert "writing them once" in lines[-1] and len(caches(root)) == 2
    load_training_data(config(images, masks, w0=5.0), lines.append, data_memory=1e-6,
                       cache_dir=root)
    assert "writing them once" in lines[-1] and len(caches(root)) == 3


def test_a_full_disk_leaves_no_half_cache(tmp_path, monkeypatch):
    images, masks = write_pairs(tmp_path)
    root = tmp_path / "cache"
    real, calls = cache._write, []

    def fill_up(array, values):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(array, values)

    monkeypatch.setattr(cache, "_write", fill_up)
    with pytest.raises(OSError, match="filled up after .* GB; the partial cache was removed") as e:
        load_training_data(config(images, masks), data_memory=1e-6, cache_dir=root)
    assert e.value.errno == errno.ENOSPC
    assert caches(root) == [] and not list(root.glob(".*partial*"))
    monkeypatch.setattr(cache, "_write", real)
    lines = []
    load_training_data(config(images, masks), lines.append, data_memory=1e-6, cache_dir=root)
    assert "writing them once" in lines[-1] and len(caches(root)) == 1


def test_a_build_killed_with_sigkill_is_rebuilt_never_read(tmp_path):
    images, masks = write_pairs(tmp_path)
    root = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import os, signal
        from keras_unet import cache
        from keras_unet.config import TrainConfig
        from keras_unet.prepare import load_training_data
        real, calls = cache._write, []
        def die(array, values):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            real(array, values)
        cache._write = die
        load_training_data(TrainConfig(images={str(images)!r}, masks={str(masks)!r}, depth=2,
                           tile_size=44, val_fraction=0.25), data_memory=1e-6,
                           cache_dir={str(root)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert caches(root) == [] and len(list(root.glob(".*partial*"))) == 1  # half, hidden
    lines = []
    data, _ = load_training_data(config(images, masks), lines.append, data_memory=1e-6,
                                 cache_dir=root)
    assert "writing them once" in lines[-1] and len(caches(root)) == 1
    assert not list(root.glob(".*partial*"))  # the killed build's leftovers are gone
    assert len(data.images) == 3


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_data_memory_must_be_a_positive_number(tmp_path, value):
    result = CliRunner().invoke(main, ["fit", *TINY_CLI, "--output", str(tmp_path / "r"),
                                       "--data-memory", value])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (f"Error: --data-memory must be a positive number of GB "
                                     f"(e.g. 4 or 0.5), got '{value}'")
    assert not (tmp_path / "r").exists()


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(main, ["fit", *TINY_CLI, "--output", str(tmp_path / "r"),
                                       "--cache-dir", str(tmp_path / "file" / "cache")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "--cache-dir" in result.output and "is a file, not a folder" in result.output
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("ro")
                        else real(p, mode))  # root may write anywhere: pretend it may not
    result = CliRunner().invoke(main, ["fit", *TINY_CLI, "--output", str(tmp_path / "r"),
                                       "--cache-dir", str(tmp_path / "ro" / "c")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (f"Error: --cache-dir {tmp_path / 'ro' / 'c'} cannot be "
                                     f"written ({tmp_path / 'ro'} is read-only); choose another "
                                     "path (the data cache; or raise --data-memory)")


def test_a_cache_folder_that_cannot_be_made_is_one_line_before_reading(tmp_path, monkeypatch):
    real = Path.mkdir

    def refuse(self, *args, **kwargs):  # a file system that refuses new folders (/proc, say)
        if "nomake" in str(self):
            raise FileNotFoundError(2, "No such file or directory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    images, masks = write_pairs(tmp_path)
    result = CliRunner().invoke(main, ["fit", *TINY_CLI, "--images", str(images), "--masks",
                                       str(masks), "--output", str(tmp_path / "r"),
                                       "--cache-dir", str(tmp_path / "nomake")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (f"Error: --cache-dir {tmp_path / 'nomake'} cannot be "
                                     "written (No such file or directory); choose another path "
                                     "(the data cache; or raise --data-memory)")
    assert not (tmp_path / "r").exists() and not (tmp_path / "nomake").exists()


def test_fit_trains_from_the_disk_cache(tmp_path):
    images, masks = write_pairs(tmp_path)
    args = ["fit", *TINY_CLI, "--images", images, "--masks", masks, "--val-fraction", "0.25",
            "--data-memory", "0.000001", "--cache-dir", tmp_path / "cache"]
    first = CliRunner().invoke(main, [str(a) for a in args + ["--output", tmp_path / "a"]])
    assert first.exit_code == 0, first.output
    assert "more than --data-memory 1e-06 GB: writing them once" in first.output
    assert (tmp_path / "a" / "model.keras").is_file() and "val_loss" in first.output
    second = CliRunner().invoke(main, [str(a) for a in args + ["--output", tmp_path / "b"]])
    assert second.exit_code == 0, second.output
    assert "reading them from the disk cache" in second.output


@pytest.mark.parametrize("n_bytes, shown", [(0, "0.0 MB"), (3.2e6, "3.2 MB"), (1.6e8, "160 MB"),
                                            (2.5e9, "2.50 GB"), (12.34e9, "12.3 GB")])
def test_sizes_for_people(n_bytes, shown):
    from keras_unet.cache import gb

    assert gb(n_bytes) == shown

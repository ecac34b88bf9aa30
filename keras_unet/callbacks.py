"""The Keras callbacks of a training run: NaN guard, validation metrics, checkpoints, images.

They are what :func:`keras_unet.training.train` adds to ``model.fit``; each works on its own too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ._compat import keras, tf
from .files import atomic_path, write_json_atomic
from .geometry import Geometry

__all__ = ["NaNGuard", "ValidationMetrics", "InstanceValidation", "Checkpoints", "TensorBoardImages",
           "save_model_atomic", "tensorboard_available"]


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` as a ``.keras`` file via a temporary name, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def tensorboard_available() -> bool:
    """Whether TensorBoard (which tf.summary needs) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, and remember where."""

    def __init__(self):
        super().__init__()
        self.where: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


class ValidationMetrics(keras.callbacks.Callback):
    """The validation loss, pixel error, foreground IoU and Dice on the validation tiles, added to
    the epoch's logs as ``val_loss``, ``val_pixel_error``, ``val_iou``, ``val_dice`` (so the
    progress bar, the CSV log, TensorBoard and the checkpoints see them).

    One prediction of the tiles gives all four: ``val_loss`` is the training loss, the weighted
    cross-entropy ``sum(w * -log p_label) / (H * W)`` per tile
    (:class:`keras_unet.layers.WeightedCrossEntropy`), averaged over the tiles, which is what
    Keras reports for ``validation_data`` (batches weighted by their size), from the softmax
    probabilities instead of the logits. So ``fit`` needs no second pass over the tiles."""

    def __init__(self, unet: keras.Model, tiles: dict[str, np.ndarray], batch_size: int = 2):
        super().__init__()
        self.unet, self.tiles, self.batch_size = unet, tiles, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        probs = self.unet.predict(self.tiles["image"], batch_size=self.batch_size, verbose=0)
        logs["val_loss"] = loss_from_probabilities(probs, self.tiles["labels"],
                                                   self.tiles["weights"])
        pred = np.argmax(probs, axis=-1)
        truth, valid = self.tiles["labels"], self.tiles["valid"]
        p, t = pred[valid], truth[valid]
        logs["val_pixel_error"] = float(np.mean(p != t)) if p.size else float("nan")
        ious, dices = [], []
        for k in range(1, probs.shape[-1]):
            inter = np.sum((p == k) & (t == k))
            a, b = np.sum(p == k), np.sum(t == k)
            ious.append(inter / (a + b - inter) if a + b - inter else 1.0)
            dices.append(2 * inter / (a + b) if a + b else 1.0)
        logs["val_iou"], logs["val_dice"] = float(np.mean(ious)), float(np.mean(dices))


def loss_from_probabilities(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """The U-Net paper's loss (Eq. 1) from probabilities: the mean over all ``(N, H, W)`` pixels
    of ``w * -log p_label``, with ``probs`` ``(N, H, W, K)``, ``labels`` int ``(N, H, W)`` and
    ``weights`` ``(N, H, W)``. Probabilities are floored at 1e-30 (a logit gap of about 69)."""
    chosen = np.take_along_axis(probs, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    ce = -np.log(np.maximum(chosen.astype(np.float64), 1e-30))
    return float(np.mean(weights * ce)) if ce.size else float("nan")


class InstanceValidation(keras.callbacks.Callback):
    """Instance metrics on the whole validation images, added to the epoch's logs as
    ``val_ap50``, ``val_map`` and ``val_merges``: each image is predicted with the overlap-tile
    strategy and cut into objects (:func:`keras_unet.instances.label_instances`).

    Whole images cost more than the validation loss, so this runs on the first and last epoch
    and every ``every`` epochs; the other epochs log NaN.
    """

    def __init__(self, unet: keras.Model, images: list[np.ndarray], instances: list[np.ndarray],
                 border_width: int = 1, every: int = 1, epochs: int | None = None):
        super().__init__()
        self.unet, self.images, self.instances = unet, images, instances
        self.border_width, self.every, self.epochs = border_width, max(1, every), epochs

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if epoch % self.every and epoch + 1 != self.epochs:
            logs.update(val_ap50=float("nan"), val_map=float("nan"), val_merges=float("nan"))
            return
        from .instances import label_instances
        from .metrics import instance_counts, instance_scores
        from .tiling import predict_tiled

        counts = [instance_counts(label_instances(predict_tiled(self.unet, image),
                                                  border_width=self.border_width), truth)
                  for image, truth in zip(self.images, self.instances)]
        scores = instance_scores(counts)
        logs.update(val_ap50=scores["ap50"], val_map=scores["map"],
                    val_merges=float(scores["merges"]))


class Checkpoints(keras.callbacks.Callback):
    """After each epoch with a finite loss: the training model with its optimizer to
    ``checkpoints/last.keras``; the inference U-Net to ``best.keras`` when the monitored value
    improved. Both atomic."""

    def __init__(self, folder: Path, unet: keras.Model, to_float32: Callable, monitor: str,
                 best: float = math.inf):
        super().__init__()
        self.folder, self.unet, self.to_float32 = folder, unet, to_float32
        self.monitor, self.best = monitor, best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for k, v in logs.items() if "loss" in k):
            return  # NaNGuard stops the run; the last good checkpoint stays
        save_model_atomic(self.model, self.folder / "last.keras")
        value = logs.get(self.monitor, logs.get("loss"))
        if value is not None and float(value) < self.best:
            self.best = float(value)
            save_model_atomic(self.to_float32(self.unet), self.folder / "best.keras")
            write_json_atomic(
                self.folder / "best.json",
                {"epoch": epoch + 1, "monitor": self.monitor, "value": self.best},
            )


class TensorBoardImages(keras.callbacks.Callback):
    """A few validation tiles per epoch in TensorBoard: image | prediction | weight map."""

    def __init__(self, log_dir: Path, unet: keras.Model, tiles: dict[str, np.ndarray],
                 geometry: Geometry, n: int = 3):
        super().__init__()
        self.unet, self.geometry = unet, geometry
        pick = np.linspace(0, len(tiles["image"]) - 1, min(n, len(tiles["image"]))).astype(int)
        self.tiles = {k: v[pick] for k, v in tiles.items()}
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))

    def on_epoch_end(self, epoch, logs=None):
        from .visualize import colorize

        probs = self.unet.predict(self.tiles["image"], verbose=0)
        m = self.geometry.margin
        rows = []
        for image, prob, weights in zip(self.tiles["image"], probs, self.tiles["weights"]):
            crop = image[m : image.shape[0] - m, m : image.shape[1] - m, 0] if m else image[..., 0]
            lo, hi = np.percentile(crop, (1, 99))
            grey = colorize(crop, lo, hi, colormap=1)  # COLORMAP_BONE
            fg = colorize(1.0 - prob[..., 0], 0.0, 1.0)
            wmap = colorize(weights, 0.0, max(float(weights.max()), 1e-6))
            gap = np.full((grey.shape[0], 4, 3), 255, np.uint8)
            rows.append(np.concatenate([grey, gap, fg, gap, wmap], axis=1))
        with self.writer.as_default():
            tf.summary.image("validation: image | prediction | weight map",
                             np.stack(rows), step=epoch, max_outputs=len(rows))
        self.writer.flush()

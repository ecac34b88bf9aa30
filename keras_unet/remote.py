"""Predict image files with a model served by TF Serving: the client side of ``keras-unet
predict --server``. Imports no TensorFlow (start-up well under a second).

Each file is read by the one reader (:func:`keras_unet.images.read_stack`, so the pixels are
those ``fit``, ``evaluate`` and ``predict`` see), page by page, and sent as it is:

* 8/16-bit pages of 1 or 3 channels as a lossless PNG to the export's ``predict_png`` signature;
* any other page (float, 2, 4 or more channels) as raw float32 values to ``serving_default``.

The served model applies the model's own preprocessing and the same refusals as a local one
(NaN or infinite values, values its training never meant); its error comes back as one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .axes import check_axes
from .files import check_writable
from .images import read_pages
from .outputs import (Output, PredictReport, each_file, expand_inputs, mask_image, page_names,
                      write_masks)
from .serving import ServingClient, ServingError

__all__ = ["predict_files_remote", "remote_mask", "png_payload"]


def png_payload(page: np.ndarray) -> bytes | None:
    """A page as lossless PNG bytes, or None if PNG cannot hold it exactly (float values, or
    a channel count other than 1 and 3)."""
    import cv2

    if page.dtype not in (np.uint8, np.uint16) or page.shape[2] not in (1, 3):
        return None
    ok, png = cv2.imencode(".png", page[..., 0] if page.shape[2] == 1 else page[..., ::-1])
    return png.tobytes() if ok else None  # OpenCV writes BGR


def remote_mask(client: ServingClient, page: np.ndarray, name: str) -> np.ndarray:
    """The uint8 mask of one ``(H, W, C)`` page from the served model (0/255 for two classes,
    class ids otherwise); see the module docs for the way it is sent."""
    import cv2

    bad = int(np.count_nonzero(~np.isfinite(page))) if page.dtype.kind == "f" else 0
    if bad:
        raise ValueError(f"{name}: the image holds NaN or infinite values "
                         f"({bad} pixel{'s' * (bad != 1)}); replace them "
                         "(e.g. with numpy.nan_to_num) or crop them away: the network would call "
                         "them background")
    png = png_payload(page)
    if png is not None:
        (mask_png,) = client.predict_png([png])
        return cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    answer = client.predict({"signature_name": "serving_default",
                             "inputs": {"images": page[None].astype(np.float32).tolist()}})
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    try:
        classes = np.asarray(outputs["mask"], np.int32)[0]
        n_classes = np.asarray(outputs["probabilities"], np.float32).shape[-1]
    except (KeyError, TypeError, IndexError, ValueError):
        raise ServingError(f"unexpected answer from {client.model_url}: no mask; export the "
                           "model with keras-unet export") from None
    return mask_image(classes, n_classes)


def predict_files_remote(
    client: ServingClient, inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
    overlay: bool = True, progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
    axes: str | None = None,
) -> PredictReport:
    """Like :func:`keras_unet.predict.predict_files`, with a model served by TF Serving (a
    :class:`keras_unet.serving.ServingClient`).

    Writes ``NAME_mask.png`` (a multi-page ``NAME_mask.tif`` for stacks) and
    ``NAME_overlay.png`` (``NAME_NNN_overlay.png`` per page) into ``output``. ``axes``: the
    TIFF inputs' axes (``--axes``), default the files' own.
    """
    from .visualize import overlay as overlay_image
    from .visualize import write_png

    axes = check_axes(axes)
    files = expand_inputs(inputs)
    check_writable(output)

    def one(out: Output, path: Path) -> None:
        pages = read_pages(path, axes=axes)
        masks = [remote_mask(client, page, name)
                 for page, name in zip(pages, page_names(path, len(pages)))]
        write_masks(out, path, masks)
        if overlay:
            for i, (page, mask) in enumerate(zip(pages, masks)):
                stem = path.stem if len(pages) == 1 else f"{path.stem}_{i:03d}"
                classes = mask // 255 if mask.max() == 255 else mask
                write_png(out.path(f"{stem}_overlay.png"), overlay_image(page, classes))

    def fatal(exc: Exception) -> bool:  # the server or model is missing: stop trying files
        return isinstance(exc, ServingError) and (exc.status is None or exc.status in (404, 503))

    return each_file(files, output, one, progress, fatal)

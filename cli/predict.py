"""``keras-unet predict`` and ``keras-unet evaluate``: segment images, and score the segmentation."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


def _inputs(paths: tuple[str, ...]) -> list[Path]:
    """Expand files and folders into image files (TIFF stacks count as one input)."""
    from keras_unet.data import IMAGE_SUFFIXES, list_images

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(list_images(p, "input"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    unknown = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise ValueError(f"{unknown[0]} is not an image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _failure(path: Path, exc: Exception) -> str:
    """One line for a file that could not be predicted (most messages name the file already)."""
    message = str(exc)
    return message if path.name in message else f"{path}: {message}"


def _report(failed: list[str], n_files: int, out: Path) -> None:
    """The per-file errors, a summary line, and exit status 1 if any file failed."""
    for line in failed:
        click.echo(f"Error: {line}", err=True)
    click.echo(f"Wrote masks of {n_files - len(failed)} of {n_files} inputs to {out}")
    if failed:
        raise SystemExit(1)


def _mask_image(classes, n_classes: int):
    import numpy as np

    # two classes: 0/255 so the PNG is visible; more: the class ids themselves
    return (classes * 255).astype(np.uint8) if n_classes == 2 else classes.astype(np.uint8)


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
              help="With --server: seconds per request.")
def predict(args, output, tile_size, batch_size, tta, save_probabilities, overlay, server,
            model_name, model_version, timeout) -> None:
    """Segment INPUTS (images, folders, TIFF stacks) with MODEL (.keras or SavedModel folder),
    or with a model served by TF Serving (--server URL --model NAME; no MODEL then).

    Writes NAME_mask.png per image (0/255 for two classes, class ids otherwise; a multi-page
    NAME_mask.tif for TIFF stacks). A file that cannot be read is reported and skipped.
    """
    if server:
        if not model_name:
            raise ValueError("--server needs --model NAME (the served model's name)")
        if tta or save_probabilities or tile_size:
            raise ValueError("--tta, --tile-size and --save-probabilities work with a local "
                             "MODEL only, not with --server")
        return _predict_remote(args, output, server, model_name, model_version, timeout, overlay)
    if model_name or model_version:
        raise ValueError("--model and --version go with --server; a local MODEL is a path")
    if len(args) < 2:
        raise ValueError("give MODEL and at least one input (or --server URL --model NAME)")
    model, inputs = args[0], args[1:]
    import numpy as np
    import tifffile

    from keras_unet.data import read_pages
    from keras_unet.tiling import Predictor
    from keras_unet.visualize import overlay as overlay_image
    from keras_unet.visualize import write_png

    files = _inputs(inputs)
    predictor = Predictor(model, tile_size, batch_size, tta)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with click.progressbar(files, label="Predicting", item_show_func=lambda p: p and p.name) as bar:
        for path in bar:
            try:
                pages = read_pages(path)
                masks = []
                for i, page in enumerate(pages):
                    name = path.name if len(pages) == 1 else f"{path.name}[{i}]"
                    probs = predictor(page, name)
                    masks.append(_mask_image(probs.argmax(-1), predictor.n_classes))
                    stem = path.stem if len(pages) == 1 else f"{path.stem}_{i:03d}"
                    if save_probabilities:
                        tmp = out / f".{stem}_probabilities.partial.npy"
                        np.save(tmp, probs.astype(np.float32))
                        tmp.replace(out / f"{stem}_probabilities.npy")
                    if overlay:
                        write_png(out / f"{stem}_overlay.png", overlay_image(page, probs.argmax(-1)))
                if len(pages) == 1:
                    write_png(out / f"{path.stem}_mask.png", masks[0])
                else:
                    tmp = out / f".{path.stem}_mask.partial.tif"
                    tifffile.imwrite(tmp, np.stack(masks))
                    tmp.replace(out / f"{path.stem}_mask.tif")
            except (ValueError, OSError) as exc:
                failed.append(_failure(path, exc))
    _report(failed, len(files), out)


def _predict_remote(inputs, output, server, model_name, version, timeout, overlay) -> None:
    """predict --server: each image goes to the predict_png signature as a PNG."""
    import cv2
    import numpy as np

    from keras_unet.data import read_pages
    from keras_unet.serving import ServingClient, ServingError
    from keras_unet.visualize import overlay as overlay_image
    from keras_unet.visualize import write_png

    client = ServingClient(server, model_name, version, timeout=timeout)
    files = _inputs(inputs)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with click.progressbar(files, label=f"Predicting with {client.model_url}",
                           item_show_func=lambda p: p and p.name) as bar:
        for path in bar:
            try:
                pages = read_pages(path)
                if len(pages) != 1:
                    raise ValueError(f"{path}: TIFF stacks are predicted locally only")
                page = pages[0]
                image = page if page.ndim == 2 or page.shape[2] != 3 else page[..., ::-1]  # RGB->BGR
                ok, png = cv2.imencode(".png", image)
                if not ok:
                    raise ValueError(f"{path}: cannot encode as PNG")
                (mask_png,) = client.predict_png([png.tobytes()])
                mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
                write_png(out / f"{path.stem}_mask.png", mask)
                if overlay:
                    classes = mask // 255 if mask.max() == 255 else mask
                    write_png(out / f"{path.stem}_overlay.png", overlay_image(page, classes))
            except ServingError as exc:
                if exc.status is None or exc.status in (404, 503):
                    raise  # the server or model is missing: no point trying the other files
                failed.append(f"{path}: {exc}")
            except (ValueError, OSError) as exc:
                failed.append(_failure(path, exc))
    _report(failed, len(files), out)


@main.command("serving-status")
@click.option("--server", metavar="URL", required=True, help="TF Serving's REST address.")
@click.option("--model", "model_name", metavar="NAME", required=True, help="The model's name.")
@click.option("--version", "model_version", type=int, help="One version only.")
@click.option("--json", "as_json", is_flag=True, help="Print TF Serving's answers as JSON.")
def serving_status(server, model_name, model_version, as_json) -> None:
    """Show a served model's versions and states, and its signatures."""
    from keras_unet.serving import ServingClient

    client = ServingClient(server, model_name, model_version)
    status = client.status()
    metadata = client.metadata()
    if as_json:
        click.echo(json.dumps({"status": status, "metadata": metadata}, indent=2))
        return
    click.echo(f"Model {model_name} at {server}:")
    for v in status.get("model_version_status", []):
        error = v.get("status", {}).get("error_message", "")
        click.echo(f"  version {v.get('version')}: {v.get('state')}" + (f" ({error})" if error else ""))
    sigs = metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    version = metadata.get("model_spec", {}).get("version", "?")
    click.echo(f"Signatures of version {version}:")
    for name, sig in sorted(sigs.items()):
        if name.startswith("__"):
            continue

        def describe(tensors):
            parts = []
            for alias, info in sorted(tensors.items()):
                dims = info.get("tensor_shape", {}).get("dim", [])
                shape = ",".join(str(d.get("size")) for d in dims)
                parts.append(f"{alias}: {info.get('dtype', '?').removeprefix('DT_').lower()}[{shape}]")
            return ", ".join(parts)

        click.echo(f"  {name}({describe(sig.get('inputs', {}))}) -> {describe(sig.get('outputs', {}))}")


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
def evaluate(model, images, masks, mask_type, tile_size, batch_size, tta, as_json) -> None:
    """Score MODEL on labelled images: pixel error, foreground IoU and Dice, ISBI Rand error."""
    from keras_unet.data import labels_from_mask, load_pairs
    from keras_unet.metrics import segmentation_metrics, summarize
    from keras_unet.tiling import Predictor

    xs, ys, names = load_pairs(images, masks)
    predictor = Predictor(model, tile_size, batch_size, tta)
    rows = []
    # With --json, stdout carries only the JSON; the progress goes to stderr.
    stream = click.get_text_stream("stderr") if as_json else None
    with click.progressbar(list(zip(xs, ys, names)), label="Evaluating", file=stream) as bar:
        for x, y, name in bar:
            truth, _ = labels_from_mask(y, predictor.n_classes, mask_type, name)
            if truth.shape != x.shape[:2]:
                raise ValueError(f"{name}: image and mask sizes differ ({x.shape[:2]} vs {truth.shape})")
            pred = predictor(x, name).argmax(-1)
            rows.append({"image": name, **segmentation_metrics(pred, truth)})
    overall = summarize([{k: v for k, v in r.items() if k != "image"} for r in rows])
    if as_json:
        click.echo(json.dumps({"images": rows, "mean": overall}, indent=2))
        return
    header = f"{'image':24s} {'pixel err':>9s} {'IoU':>7s} {'Dice':>7s} {'Rand err':>9s}"
    click.echo(header)
    for r in rows + [{"image": "mean", **overall}]:
        click.echo(f"{r['image'][:24]:24s} {r['pixel_error']:9.4f} {r['iou']:7.4f} "
                   f"{r['dice']:7.4f} {r['rand_error']:9.4f}")

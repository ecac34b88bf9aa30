"""The serving signatures of an export, with overlap tiling inside the graph.

``serving_default`` takes float32 images ``[batch, height, width, channels]`` of any size, in their
raw intensity range: the model's own :class:`~keras_unet.preprocess.Normalizer`, mirror padding,
the tiles and the crop back all run inside the graph. The tiles follow
:func:`keras_unet.tiling.axis_plan`, the same rule as :func:`keras_unet.tiling.predict_tiled`, so
the two give the same probabilities.

Both signatures refuse, with an ``InvalidArgument`` error (TF Serving answers 400 with its
message), what a local ``keras-unet predict`` refuses (:meth:`Normalizer.check`): NaN or infinite
values; under ``fixed`` normalisation with a recorded training dtype, values above the scale,
images within 0..1 with fractions for a model trained on integers, and PNGs of another bit
depth; in ``predict_png``, an alpha channel that varies and a channel count the model does not
take. A constant alpha is dropped, and a grey image stored as RGB is taken as
grey, as :func:`keras_unet.images.read_stack` and :meth:`Normalizer.channels_of` do. PNG pixels
are the raw values (0..255 or 0..65535), the same numbers the reader gives.
"""

from __future__ import annotations

import numpy as np

from ._compat import keras, tf
from .geometry import Geometry
from .model import geometry_of
from .preprocess import normalizer_of, tf_mirror_pad
from .tiling import axis_plan

__all__ = ["tiled_predict_fn", "serving_functions"]


def _valid_at_least(geo: Geometry, n):
    """Smallest valid input size >= ``n`` (a tensor): ``offset + factor * k``, at least the minimum."""
    f = geo.factor
    k = tf.math.floordiv(tf.maximum(n, geo.min_input_size) - geo.offset + f - 1, f)
    return geo.offset + f * k


def tiled_predict_fn(model: keras.Model, tile_size: int, batch_size: int = 4):
    """In-graph overlap-tile prediction of one normalised image ``(H, W, C)`` -> ``(H, W, K)``.

    The graph twin of :func:`keras_unet.tiling.predict_tiled` for valid-padding networks: the image
    is mirror-padded by the margin, cut into tiles of at most ``tile_size`` px (smaller for small
    images) that start every ``stride`` px, ``batch_size`` tiles per forward pass in a
    ``tf.while_loop``, and each tile's first ``stride`` x ``stride`` output block is stitched in
    place. The stride is the tile's output rounded down to the down-sampling factor, so the result
    equals one pass over the whole image, while memory stays bounded by one batch of tiles.
    Same-padding networks are run once over the image padded to a multiple of the factor.
    """
    geo: Geometry = geometry_of(model)
    geo.check(tile_size, "tile size")
    m, f = geo.margin, geo.factor
    n_classes = int(model.output_shape[-1])

    def forward(tiles):
        return tf.cast(model(tiles, training=False), tf.float32)

    if geo.padding == "same":
        def predict_same(x):
            shape = tf.shape(x)
            h, w = shape[0], shape[1]
            ph, pw = _valid_at_least(geo, h), _valid_at_least(geo, w)
            padded = tf_mirror_pad(x[None], 0, ph - h, 0, pw - w)
            return forward(padded)[0, :h, :w, :]

        return predict_same

    def axis(n):
        tile = tf.minimum(tile_size, _valid_at_least(geo, n + 2 * m))
        stride, count, total = axis_plan(n, tile, m, f)
        return tile, stride, count, total

    def predict(x):
        shape = tf.shape(x)
        h, w, c = shape[0], shape[1], shape[2]
        th, sh, ny, total_h = axis(h)
        tw, sw, nx, total_w = axis(w)
        padded = tf_mirror_pad(x[None], m, total_h - h - m, m, total_w - w - m)[0]
        n = ny * nx

        def cut(k):
            return tf.slice(padded, tf.stack([(k // nx) * sh, (k % nx) * sw, 0]),
                            tf.stack([th, tw, c]))

        def body(i, blocks):
            ks = tf.range(i, tf.minimum(i + batch_size, n))
            tiles = tf.map_fn(cut, ks, fn_output_signature=tf.TensorSpec([None, None, None],
                                                                          x.dtype))
            probs = forward(tiles)[:, :sh, :sw, :]
            return i + batch_size, blocks.write(i // batch_size, probs)

        blocks = tf.TensorArray(tf.float32, size=(n + batch_size - 1) // batch_size,
                                element_shape=tf.TensorShape([None, None, None, n_classes]),
                                infer_shape=False)
        _, blocks = tf.while_loop(lambda i, _: i < n, body, [tf.constant(0), blocks])
        grid = tf.reshape(blocks.concat(), tf.stack([ny, nx, sh, sw, n_classes]))
        full = tf.reshape(tf.transpose(grid, [0, 2, 1, 3, 4]), tf.stack([ny * sh, nx * sw, n_classes]))
        return full[:h, :w, :]

    return predict


def _bit_depth(data):
    """8 or 16: a PNG's bit depth from its header (byte 24 of IHDR); 8 for JPEG, BMP, GIF."""
    is_png = tf.equal(tf.strings.substr(data, 1, 3), "PNG")
    depth = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 24, 1), tf.uint8)[0], tf.int32)
    return tf.where(tf.logical_and(is_png, tf.equal(depth, 16)), 16, 8)


def _drop_constant_alpha(x):
    """Grey + alpha or RGBA ``(H, W, C)``: a constant alpha dropped, a varying one refused."""
    c = tf.shape(x)[2]
    has_alpha = tf.logical_or(tf.equal(c, 2), tf.equal(c, 4))
    alpha = x[..., -1]
    ok = tf.debugging.Assert(
        tf.logical_or(tf.logical_not(has_alpha),
                      tf.equal(tf.reduce_min(alpha), tf.reduce_max(alpha))),
        ["the image has a transparency (alpha) channel that varies: its colours are not what "
         "was recorded; send it without transparency"])
    with tf.control_dependencies([ok]):
        return tf.cond(has_alpha, lambda: x[..., :-1], lambda: tf.identity(x))


def _model_channels(x, channels: int):
    """``x`` with the model's channels: grey stored as RGB taken as grey, grey given to an RGB
    model as 3 equal channels, other counts refused (as :meth:`Normalizer.channels_of`)."""
    c = tf.shape(x)[2]
    if channels == 3:  # grey for an RGB model: repeated into 3 channels
        x = tf.cond(tf.equal(c, 1), lambda: tf.tile(x, [1, 1, 3]), lambda: tf.identity(x))
        c = tf.shape(x)[2]
    if channels == 1:
        grey = tf.logical_and(tf.logical_or(tf.equal(c, 1), tf.equal(c, 3)),
                              tf.reduce_all(tf.equal(x, x[..., :1])))
        ok = tf.debugging.Assert(grey, ["the model takes 1-channel images, this one has", c])
        with tf.control_dependencies([ok]):
            x = x[..., :1]
    else:
        ok = tf.debugging.Assert(tf.equal(c, channels),
                                 [f"the model takes {channels}-channel images, this one has", c])
        with tf.control_dependencies([ok]):
            x = tf.identity(x)
    return tf.ensure_shape(x, [None, None, channels])


def serving_functions(model: keras.Model, tile_size: int | None = None, batch_size: int = 4):
    """The two serving functions of an export.

    * ``images (B, H, W, C) float32`` (raw intensities) -> ``probabilities (B, H, W, K)`` float32
      and ``mask (B, H, W)`` int32;
    * ``image_bytes (B,) string`` (PNG 8/16-bit, JPEG, BMP; their raw values, 0..255 or
      0..65535, as the reader gives them) -> ``mask_png_bytes (B,)`` string
      (an 8-bit PNG: 0/255 for two classes, class ids otherwise), ``height``/``width`` (B,) int32.
    """
    normalizer = normalizer_of(model)
    geo = geometry_of(model)
    tile = tile_size or (geo.input_size_for_output(388) if geo.padding == "valid" else 512)
    one = tiled_predict_fn(model, tile, batch_size)
    channels = int(model.input_shape[-1])
    n_classes = int(model.output_shape[-1])

    fixed = normalizer.mode == "fixed" and normalizer.high is not None
    trained = np.dtype(normalizer.dtype) if normalizer.dtype else None
    trained_bits = 8 * trained.itemsize if trained is not None and trained.kind in "ui" else None
    why = (f"this model was trained with --normalization fixed on {normalizer.dtype} images "
           f"(raw values divided by {normalizer.scale:g}), so the answer would be meaningless")

    def check_values(images):
        """The raw images, after the refusals every command shares (see the module docs)."""
        images = tf.debugging.check_numerics(
            images, "the image holds NaN or infinite values; replace them (e.g. with "
                    "numpy.nan_to_num): the network would call them background")
        if not fixed:
            return images
        top = tf.reduce_max(images)
        checks = [tf.debugging.assert_less_equal(
            top, tf.constant(normalizer.scale, images.dtype),
            message=f"values above {normalizer.scale:g}, but {why}")]
        if trained_bits is not None and normalizer.high > 1:  # float32 here: fractions tell
            checks.append(tf.debugging.Assert(
                tf.logical_or(top > 1, tf.reduce_all(tf.equal(images, tf.round(images)))),
                [f"a float image of values within 0..1, but {why}; multiply it by "
                 f"{normalizer.scale:g} (it was probably scaled to 0..1)"]))
        with tf.control_dependencies(checks):
            return tf.identity(images)

    def serve_images(images):
        x = normalizer.apply(check_values(images))
        probabilities = tf.map_fn(one, x, fn_output_signature=tf.TensorSpec(
            [None, None, n_classes], tf.float32))
        return {"probabilities": probabilities,
                "mask": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

    def serve_png(image_bytes):
        def decode_one(data):
            bits = _bit_depth(data)  # decoded at their own depth: the raw values

            def decode(dtype):
                return lambda: tf.cast(tf.io.decode_image(data, channels=0, dtype=dtype,
                                                          expand_animations=False), tf.float32)

            x = tf.cond(tf.equal(bits, 16), decode(tf.uint16), decode(tf.uint8))
            checks = []
            if fixed and trained_bits is not None:
                checks.append(tf.debugging.assert_equal(
                    bits, trained_bits, message=f"a PNG of another bit depth than "
                                                f"{trained_bits}, but {why}"))
            x = _drop_constant_alpha(x)
            x = _model_channels(x, channels)
            with tf.control_dependencies(checks):
                x = normalizer.apply(check_values(x[None]))[0]
            mask = tf.argmax(one(x), axis=-1, output_type=tf.int32)
            pixels = mask * 255 if n_classes == 2 else mask
            png = tf.io.encode_png(tf.cast(pixels, tf.uint8)[..., None])
            return png, tf.shape(mask)[0], tf.shape(mask)[1]

        png, h, w = tf.map_fn(decode_one, image_bytes, fn_output_signature=(
            tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)))
        return {"mask_png_bytes": png, "height": h, "width": w}

    return serve_images, serve_png, tile

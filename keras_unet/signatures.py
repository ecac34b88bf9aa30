"""The serving signatures of an export, with overlap tiling inside the graph.

``serving_default`` takes float32 images ``[batch, height, width, channels]`` of any size, in their
raw intensity range: the model's own :class:`~keras_unet.preprocess.Normalizer`, mirror padding,
the tiles and the crop back all run inside the graph. The tiles follow
:func:`keras_unet.tiling.axis_plan`, the same rule as :func:`keras_unet.tiling.predict_tiled`, so
the two give the same probabilities.
"""

from __future__ import annotations

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


def serving_functions(model: keras.Model, tile_size: int | None = None, batch_size: int = 4):
    """The two serving functions of an export.

    * ``images (B, H, W, C) float32`` (raw intensities) -> ``probabilities (B, H, W, K)`` float32
      and ``mask (B, H, W)`` int32;
    * ``image_bytes (B,) string`` (PNG 8/16-bit, JPEG, BMP; read as [0, 1] and mapped onto the
      training images' intensity scale) -> ``mask_png_bytes (B,)`` string
      (an 8-bit PNG: 0/255 for two classes, class ids otherwise), ``height``/``width`` (B,) int32.
    """
    normalizer = normalizer_of(model)
    geo = geometry_of(model)
    tile = tile_size or (geo.input_size_for_output(388) if geo.padding == "valid" else 512)
    one = tiled_predict_fn(model, tile, batch_size)
    channels = int(model.input_shape[-1])
    n_classes = int(model.output_shape[-1])

    def serve_images(images):
        x = normalizer.apply(images)
        probabilities = tf.map_fn(one, x, fn_output_signature=tf.TensorSpec(
            [None, None, n_classes], tf.float32))
        return {"probabilities": probabilities,
                "mask": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

    def serve_png(image_bytes):
        def decode_one(data):
            # float32 in [0, 1] whatever the bit depth: 8-bit / 255, 16-bit / 65535
            x01 = tf.io.decode_image(data, channels=channels, dtype=tf.float32,
                                     expand_animations=False)
            # raw intensities on the training images' scale, then the model's own normalisation
            x = normalizer.apply(x01[None] * normalizer.scale)[0]
            mask = tf.argmax(one(x), axis=-1, output_type=tf.int32)
            pixels = mask * 255 if n_classes == 2 else mask
            png = tf.io.encode_png(tf.cast(pixels, tf.uint8)[..., None])
            return png, tf.shape(mask)[0], tf.shape(mask)[1]

        png, h, w = tf.map_fn(decode_one, image_bytes, fn_output_signature=(
            tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)))
        return {"mask_png_bytes": png, "height": h, "width": w}

    return serve_images, serve_png, tile

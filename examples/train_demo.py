"""Train on the built-in demo data from Python, predict a new image, and export for serving.

    python examples/train_demo.py

Uses the library API that `keras-unet fit` wraps; takes about a minute on a laptop CPU.
"""

import numpy as np

from keras_unet import TrainConfig, demo_data, export_saved_model, train
from keras_unet.training import prepare_training_set


def main() -> None:
    images, labels = demo_data(8, 256, seed=0)
    config = TrainConfig(depth=4, filters=16, tile_size=188, epochs=5, steps_per_epoch=40)
    data = prepare_training_set(list(images), list(labels), config)
    result = train(config, data, "runs/example-demo", verbose=2)

    # Predict an unseen image through the exported graph (any size: padding happens inside).
    path = export_saved_model(result.model, "exported_models", "demo")
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    test_image, test_labels = demo_data(1, 200, seed=42)
    mask = serve(images=tf.constant(test_image))["mask"].numpy()[0]
    truth = test_labels[0] > 0
    print(f"exported to {path}; pixel error on an unseen 200x200 demo image: "
          f"{np.mean((mask == 1) != truth):.3f}")


if __name__ == "__main__":
    main()

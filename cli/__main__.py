"""``python -m keras_unet.cli``: the same as the ``keras-unet`` command."""

from . import main

main()

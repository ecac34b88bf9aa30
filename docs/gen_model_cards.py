"""Writes one page per packaged model (``models/NAME.md``) from its ``MODEL_CARD.md``, at build time.

mkdocs-gen-files runs this script during ``mkdocs build``; nothing is written into ``docs/``. The
card is the one shipped in the package (``keras_unet/models/NAME/MODEL_CARD.md``, written by
``examples/train_nuclei_model.py`` from what it measured), copied as it is, so the site always
shows the card of the model in this checkout. A model without a card gets no page.
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "keras_unet" / "models"


def cards() -> dict[str, str]:
    """``{page path: card Markdown}`` for every packaged model that has a card."""
    return {f"models/{card.parent.name}.md": card.read_text(encoding="utf-8")
            for card in sorted(MODELS.glob("*/MODEL_CARD.md"))}


def main() -> None:
    import mkdocs_gen_files

    for page, text in cards().items():
        with mkdocs_gen_files.open(page, "w") as out:
            out.write(text)
        mkdocs_gen_files.set_edit_path(page, "../keras_unet/" + page.replace(".md", "/MODEL_CARD.md"))


if __name__ in ("__main__", "<run_path>"):
    main()

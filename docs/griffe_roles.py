"""A griffe extension for the API page: Sphinx roles in docstrings become code or links.

The docstrings cross-reference with Sphinx roles (``:func:`predict_tiled```,
``:class:`~keras_unet.preprocess.Normalizer```), which Markdown would show as raw text. Each role
becomes inline code; when it names a public name of ``keras_unet`` (documented on the API page),
it also links to that name's entry. Loaded by mkdocstrings (``mkdocs.yml``); used only by the
documentation build.
"""

from __future__ import annotations

import re

import griffe

import keras_unet

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _target(text: str) -> str | None:
    """The API page's identifier for a role's target, or None when it is not a public name."""
    parts = text.strip().split(".")
    name = parts[-1]
    module = keras_unet._EXPORTS.get(name)
    if module is None:
        return None
    if parts[:-1] in ([], ["keras_unet"], ["keras_unet", module]):
        return f"keras_unet.{module}.{name}"
    return None


def _replace(match: re.Match) -> str:
    short, text = match.groups()
    text = text.strip()
    shown = text.split(".")[-1] if short else text
    target = _target(text)
    return f"[`{shown}`][{target}]" if target else f"`{shown}`"


def convert(docstring: str) -> str:
    """``docstring`` with every Sphinx role replaced by Markdown."""
    return ROLE.sub(_replace, docstring)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)

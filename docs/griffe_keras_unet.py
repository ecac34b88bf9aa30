"""Griffe extensions for the API page: Sphinx roles become Markdown, settings show their defaults.

**Sphinx roles.**
The docstrings cross-reference with Sphinx roles (``:func:`predict_tiled```,
``:class:`~keras_unet.preprocess.Normalizer```), which Markdown would show as raw text. Each role
becomes inline code; when it names a public name of ``keras_unet`` (documented on the API page),
it also links to that name's entry.

**Settings.** :class:`~keras_unet.config.TrainConfig` declares each field once, with its default
and help text: ``zoom: float = setting(0.5, "Random zoom: ...")``. Read statically, the page
would show ``setting(...)`` as every default; instead each field shows its default value, and its
help text as its docstring (the same text ``keras-unet fit --help`` shows).

Loaded by mkdocstrings (``mkdocs.yml``); used only by the documentation build.
"""

from __future__ import annotations

import ast
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


def _setting(value) -> tuple[str, str] | None:
    """``(default, help)`` of a ``setting(default, help, ...)`` call expression, else None."""
    if not isinstance(value, griffe.ExprCall) or str(value.function) != "setting":
        return None
    args = [a for a in value.arguments if not isinstance(a, griffe.ExprKeyword)]
    if len(args) < 2:
        return None
    try:
        text = ast.literal_eval(str(args[1]))
    except (ValueError, SyntaxError):
        text = str(args[1])
    return args[0], text


class Settings(griffe.Extension):
    """Fields declared with ``setting(...)``: their default, and their help as docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_class:
            for parameter in obj.parameters:
                if found := _setting(parameter.default):
                    parameter.default = found[0]
        elif obj.is_attribute and (found := _setting(obj.value)):
            obj.value = found[0]
            if obj.docstring is None:
                obj.docstring = griffe.Docstring(found[1], parent=obj)

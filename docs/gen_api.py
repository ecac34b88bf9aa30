"""Writes the Python API page (``reference/api.md``) from ``keras_unet.__all__`` at build time.

mkdocs-gen-files runs this script during ``mkdocs build``; nothing is written into ``docs/``.
A name added to ``keras_unet._EXPORTS`` (and so to ``__all__``) appears on the page without
any edit here, grouped under the module that defines it, in the order the modules first appear
in ``_EXPORTS`` (the data's way: shapes, network, preprocessing, loss, ...). mkdocstrings then
renders each entry from its docstring; ``mkdocs build --strict`` fails if one cannot be found.

``tests/test_docs.py`` calls :func:`api_markdown` to check that every public name is listed.
Importing ``keras_unet`` here does not import TensorFlow; module docstrings are read with ``ast``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PAGE = "reference/api.md"
PACKAGE = Path(__file__).resolve().parents[1] / "keras_unet"


def _first_paragraph(node) -> str:
    text = ast.get_docstring(node) or ""
    return text.strip().split("\n\n")[0].replace("\n", " ")


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def _summary(module: str, name: str) -> str:
    """The first docstring paragraph of ``name`` in ``module``, following ``from .x import name``."""
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name == name:
            return _first_paragraph(node)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module \
                and any(alias.name == name and not alias.asname for alias in node.names):
            return _summary(node.module, name)
    return ""


ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # a Sphinx role, e.g. :func:`~keras_unet.margin`


def _cell(text: str) -> str:
    """A docstring line as Markdown safe inside a table cell (Sphinx roles become code)."""
    return ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", text).replace("|", "\\|")


def api_markdown(all_names: list[str], exports: dict[str, str]) -> str:
    """The Markdown of the API page for the public names ``all_names``.

    Args:
        all_names: ``keras_unet.__all__``.
        exports: ``keras_unet._EXPORTS``: public name -> the module (in ``keras_unet``) that
            defines it. Names of ``all_names`` not in it are documented as ``keras_unet.NAME``.
    """
    modules: dict[str, list[str]] = {}
    for name, module in exports.items():
        if name in all_names:
            modules.setdefault(module, []).append(name)
    others = [n for n in all_names if n not in exports and n != "__version__"]

    lines = [
        "# Python API",
        "",
        "Every public name of `keras_unet` (its `__all__`), rendered from the docstrings. Import",
        "them from the package itself: `from keras_unet import build_unet, predict_tiled`.",
        "`import keras_unet` does not load TensorFlow; each name loads its module on first use.",
        "",
        "This page is generated from `keras_unet.__all__` when the site is built, so it lists",
        "every public name, and only those. The modules they live in are described in",
        "[Design](../design.md).",
        "",
    ]
    if "__version__" in all_names:
        lines += ["`keras_unet.__version__`: the installed version, a string such as `1.0.0`.", ""]

    lines += ["| name | module | what it is |", "|---|---|---|"]
    for module, names in modules.items():
        for name in names:
            anchor = f"keras_unet.{module}.{name}"
            lines.append(f"| [`{name}`](#{anchor}) | `{module}` | "
                         f"{_cell(_summary(module, name))} |")
    for name in others:
        lines.append(f"| [`{name}`](#keras_unet.{name}) | | |")
    lines.append("")

    for module, names in modules.items():
        module_doc = _cell(_first_paragraph(_tree(module)))
        lines += [f"## `keras_unet.{module}`", ""]
        if module_doc:
            lines += [module_doc, ""]
        for name in names:
            lines += [f"::: keras_unet.{module}.{name}", ""]
    if others:
        lines += ["## Other names", ""]
        for name in others:
            lines += [f"::: keras_unet.{name}", ""]
    return "\n".join(lines)


def main() -> None:
    import mkdocs_gen_files

    import keras_unet

    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write(api_markdown(list(keras_unet.__all__), dict(keras_unet._EXPORTS)))
    mkdocs_gen_files.set_edit_path(PAGE, "gen_api.py")


if __name__ in ("__main__", "<run_path>"):
    main()

"""The documentation's reference pages cover the package: every public name reaches the Python
API page, every command-line option the CLI page, and the design page lists every module.

The API page is written at build time by ``docs/gen_api.py`` (mkdocs-gen-files); these tests call
its generator directly, so they need neither mkdocs nor a built site. The CLI page is rendered
here with the same mkdocs-click Markdown extension the site uses (``pip install ".[test]"``
brings it). ``mkdocs build --strict`` in ``.ci/run`` then checks that each API entry resolves.
"""

import ast
import importlib.util
import re
from pathlib import Path

import click
import markdown
import pytest
import yaml

import keras_unet
from keras_unet.cli import main

from test_layout import LAYERS, STANDALONE

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defined_or_imported(module: str) -> set[str]:
    """Names a keras_unet module defines or imports at top level (what mkdocstrings can find)."""
    names = set()
    for node in ast.parse((ROOT / "keras_unet" / f"{module}.py").read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def missing_api_entries(page: str, all_names, exports) -> list[str]:
    """Public names without an entry on the API page that mkdocstrings can resolve."""
    entries = {name: module for module, name in
               re.findall(r"^::: keras_unet\.(?:(\w+)\.)?(\w+)\s*$", page, re.M)}
    missing = []
    for name in all_names:
        if name == "__version__":
            if "`keras_unet.__version__`" not in page:
                missing.append(name)
        elif name not in entries:
            missing.append(name)
        elif entries[name] and name not in defined_or_imported(entries[name]):
            missing.append(f"{name} (not in keras_unet.{entries[name]})")
        elif entries[name] and entries[name] != exports.get(name):
            missing.append(f"{name} (documented from {entries[name]}, exported from "
                           f"{exports.get(name)})")
    return missing


def test_mkdocs_builds_the_api_page_from_the_generator():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    plugins = {k: v for p in config["plugins"] for k, v in
               (p.items() if isinstance(p, dict) else [(p, None)])}
    assert "docs/gen_api.py" in plugins["gen-files"]["scripts"]
    assert "mkdocstrings" in plugins
    pages = re.findall(r"[\w/]+\.md", str(config["nav"]))
    assert load_generator().PAGE in pages
    assert "reference/cli.md" in pages


def test_every_public_name_is_in_the_api_reference():
    page = load_generator().api_markdown(list(keras_unet.__all__), dict(keras_unet._EXPORTS))
    assert len(keras_unet.__all__) > 30
    assert missing_api_entries(page, keras_unet.__all__, keras_unet._EXPORTS) == []


def test_the_api_check_can_fail():
    """A page that lacks a name, documents it from the wrong module, or lacks the version."""
    gen = load_generator()
    exports = dict(keras_unet._EXPORTS)
    page = gen.api_markdown(list(keras_unet.__all__), exports)
    without = page.replace("::: keras_unet.geometry.margin\n", "")
    assert missing_api_entries(without, keras_unet.__all__, exports) == ["margin"]
    wrong = gen.api_markdown(list(keras_unet.__all__), {**exports, "unet_weight_map": "geometry"})
    assert missing_api_entries(wrong, keras_unet.__all__, exports) == [
        "unet_weight_map (not in keras_unet.geometry)"]
    no_version = page.replace("`keras_unet.__version__`", "")
    assert missing_api_entries(no_version, keras_unet.__all__, exports) == ["__version__"]


def walk(command: click.Command, path: tuple[str, ...]):
    """(path, command) for the command and every subcommand below it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, path + (name,))


def cli_sections(page_markdown: str) -> dict[str, str]:
    """The rendered CLI page, split by command: heading id (keras-unet-fit, ...) -> its text."""
    html = markdown.markdown(page_markdown, extensions=["attr_list", "toc", "fenced_code",
                                                        "mkdocs-click"])
    parts = re.split(r'<h\d id="(keras-unet[\w-]*)">.*?</h\d>', html)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def missing_cli_options(sections: dict[str, str]) -> list[str]:
    """Options of the click tree (hidden ones aside, as --help) absent from their command's
    section of the page."""
    missing = []
    for path, command in walk(main, ("keras-unet",)):
        text = sections.get("-".join(path), "")
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for opt in param.opts + param.secondary_opts:
                if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                    missing.append(f"{' '.join(path)} {opt}")
    return missing


@pytest.fixture(scope="module")
def cli_page() -> str:
    return (DOCS / "reference" / "cli.md").read_text()


def test_every_cli_option_is_in_the_cli_reference(cli_page):
    sections = cli_sections(cli_page)
    commands = ["-".join(path) for path, _ in walk(main, ("keras-unet",))]
    assert len(commands) >= 7 and set(commands) <= set(sections)
    assert missing_cli_options(sections) == []


def test_the_cli_check_can_fail(cli_page):
    """A command's section missing, or an option left out of one section: it fails."""
    sections = {k: v for k, v in cli_sections(cli_page).items() if k != "keras-unet-fit"}
    assert any(m.startswith("keras-unet fit ") for m in missing_cli_options(sections))
    sections = cli_sections(cli_page)
    sections["keras-unet-predict"] = sections["keras-unet-predict"].replace("--tta", "")
    assert missing_cli_options(sections) == ["keras-unet predict --tta"]


def test_the_design_page_lists_every_module():
    page = (DOCS / "design.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)\.py` \|", page, re.M))
    assert listed == (set(LAYERS) | STANDALONE) - {"_version"}


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and the site) gives a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def broken_links(markdown_text: str, base: Path) -> list[str]:
    """Relative links of a Markdown file whose file or heading does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", markdown_text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else None
        if file is not None and not file.exists():
            broken.append(target)
        elif anchor and file is not None and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(target)
    return broken


def test_readme_links_reach_the_docs():
    """The README links to docs/*.md pages (so they work on GitHub); every one, anchors
    included, must exist. (mkdocs build --strict checks the links inside docs/.)"""
    readme = (ROOT / "README.md").read_text()
    assert len(re.findall(r"\]\(docs/[\w/-]+\.md", readme)) >= 10
    assert broken_links(readme, ROOT) == []
    assert broken_links("[a](docs/guide/data.md#no-such-heading) [b](docs/nothing.md)",
                        ROOT) == ["docs/guide/data.md#no-such-heading", "docs/nothing.md"]

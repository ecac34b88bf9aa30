"""The package's structure: no import loop, every module imports only modules below it, a thin
command line that needs no TensorFlow for --help."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_unet"

# Bottom to top: the data's way through the package. A module may import only those before it.
LAYERS = [
    "_version", "files", "axes", "geometry", "config", "settings", "console", "_compat", "layers", "images",
    "preprocess", "lazyio", "weights", "targets", "model", "losses", "augment", "demo", "balance", "data", "cache", "prepare", "tiling",
    "instances", "metrics", "visualize", "outputs", "serving", "remote", "large", "pretrained", "predict", "evaluate",
    "finetune", "devices", "runs", "callbacks", "training",
    "signatures", "warmup", "bioimage_model", "bioimage", "export",
]
STANDALONE = {"loader_check"}  # run as a script in a clean process; imports no keras_unet


def package_imports(path: Path) -> set[str]:
    """keras_unet modules imported anywhere in a file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("keras_unet"):
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_unet."):
                    found.add(alias.name.split(".")[1])
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    return {m: package_imports(PACKAGE / f"{m}.py") & modules for m in modules}


def test_every_module_is_placed():
    assert set(graph()) == set(LAYERS) | STANDALONE


def find_loop(edges: dict[str, set[str]]) -> list[str] | None:
    """An import loop as a path of modules, or None (depth-first search)."""
    state: dict[str, int] = {}

    def visit(module, path):
        if state.get(module) == 1:
            return path + [module]
        if state.get(module) == 2:
            return None
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if loop := visit(target, path + [module]):
                return loop
        state[module] = 2
        return None

    for module in sorted(edges):
        if loop := visit(module, []):
            return loop
    return None


def test_no_import_loop():
    assert find_loop(graph()) is None


def test_modules_import_only_modules_below_them():
    rank = {m: i for i, m in enumerate(LAYERS)}
    upward = [f"{m} imports {t}" for m, targets in graph().items() if m in rank
              for t in targets if rank[t] >= rank[m]]
    assert not upward
    assert not graph()["loader_check"]


def test_the_checker_finds_a_loop(tmp_path):
    """The loop test can fail: two modules that import each other, one inside a function."""
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from keras_unet.c import y\n")
    (tmp_path / "c.py").write_text("import keras_unet.a\n")
    edges = {m: package_imports(tmp_path / f"{m}.py") for m in "abc"}
    assert edges == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_loop(edges) == ["a", "b", "c", "a"]
    assert find_loop({"a": {"b"}, "b": set()}) is None


def test_modules_are_short():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not long


def test_cli_is_thin_and_uses_no_private_module():
    files = list((ROOT / "cli").glob("*.py"))
    assert sum(len(p.read_text().splitlines()) for p in files) < 400  # help text grows
    for p in files:
        for module in package_imports(p):
            assert not module.startswith("_"), f"{p.name} imports keras_unet.{module}"


def test_train_fits_on_a_screen():
    tree = ast.parse((PACKAGE / "training.py").read_text())
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    assert train.end_lineno - train.lineno + 1 <= 60


def test_help_imports_no_tensorflow():
    code = ("import sys\nfrom keras_unet.cli import main\n"
            "try:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF LOADED' if 'tensorflow' in sys.modules else 'NO TF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT.parent, timeout=120)
    assert "--tile-size" in out.stdout and out.stdout.strip().endswith("NO TF"), out.stderr

"""Dependencies point one way: layers -> models -> generation -> loading -> (training) -> the apps.

Two checks: every ``import`` statement in the package, read from the source (a module-level import
of a package above is an error; a function-level one only where it is a named door below), and a
fresh interpreter importing each package, which must not pull in any package above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import minitransformer

PACKAGE = Path(minitransformer.__file__).parent

#: Rank of each part of the package: a module may import its own rank or lower, never higher.
RANKS = {
    "testing": 0,  # the tolerance policy, imported by the grading machinery and the tests
    "tokenizers": 0,  # text -> ids: needs nothing else of ours
    "layers": 1,
    "models": 2,
    "generation": 3,
    "loading": 4,
    "training": 5,
    "lora": 5,  # LoRA layers put into models, adapters in PEFT's format (training uses it)
    "quantization": 5,  # quantized Linear layers put into models, saved and loaded
    "exercises": 6,
    "viz": 7,
    "demo": 7,
    "cli": 7,
    "parity": 7,  # minitransformer parity: loading and testing against transformers
    "tour": 7,  # minitransformer tour: every step of the library, into one folder with index.html
    "__main__": 8,  # python -m minitransformer: runs the cli
    "__init__": 7,
}

#: Function-level imports of a package above, each a documented door (imported when called):
#: (importing module, imported module prefix) -> why.
DOORS = {
    ("minitransformer.models.base", "minitransformer.loading"): "PreTrainedModel.save_pretrained/from_pretrained",
    ("minitransformer.models.base", "minitransformer.generation"): "PreTrainedModel.generate",
    ("minitransformer.tokenizers.io", "minitransformer.loading.hub"): "hub ids resolved as the loader resolves them",
}


def part(module: str) -> str:
    """``minitransformer.models.gpt2`` -> ``models``; the package's own ``__init__`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, module: str) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import of ``minitransformer`` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "minitransformer" or name.startswith("minitransformer."):
                found.append((name, id(node) in top_level, node.lineno))
    return found


def all_modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append((path, ".".join(parts)))
    return out


def test_every_part_has_a_rank():
    parts = {part(module) for _, module in all_modules()}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


def test_no_import_points_up():
    wrong = []
    for path, module in all_modules():
        own = RANKS[part(module)]
        for target, top_level, line in imports(path, module):
            if RANKS[part(target)] <= own:
                continue
            door = any(module == m and target.startswith(prefix) for m, prefix in DOORS)
            if top_level or not door:
                where = "at module level" if top_level else "inside a function, not a listed door"
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({where})")
    assert not wrong, "imports that point up the layers -> models -> generation -> loading order:\n" + "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk above must be able to fail: a models module importing generation is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from minitransformer.generation import generate\n\ndef f():\n    import minitransformer.loading\n")
    found = imports(bad, "minitransformer.models.bad")
    assert found == [("minitransformer.generation", True, 1), ("minitransformer.loading", False, 4)]


@pytest.mark.parametrize("package, forbidden", [
    ("minitransformer.tokenizers", ["layers", "models", "generation", "loading"]),
    ("minitransformer.layers", ["models", "generation", "loading", "tokenizers"]),
    ("minitransformer.models", ["generation", "loading"]),
    ("minitransformer.generation", ["loading", "training"]),
    ("minitransformer.loading", ["training"]),
])
def test_importing_a_package_loads_nothing_above_it(package, forbidden):
    code = (f"import sys, {package}\n"
            "print(' '.join(sorted({m.split('.')[1] for m in sys.modules if m.startswith('minitransformer.')})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not set(loaded) & set(forbidden), f"import {package} also loaded {sorted(set(loaded) & set(forbidden))}"

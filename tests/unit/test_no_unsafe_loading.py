"""No code of the project loads data in a way that can run code (issue 12, security defaults).

Every .py file of fi_assets, fi_resources, bench and tests is parsed with `ast` (so a word in a comment or a
docstring is not a finding, and an aliased import is) and checked for:

- importing pickle, cPickle, _pickle, dill, shelve or joblib, or calling `read_pickle` (each unpickles);
- `np.load(..., allow_pickle=...)` with anything but a literal False (the default, False, is fine);
- `torch.load(...)` without a literal `weights_only=True`;
- a literal `trust_remote_code=True` (a keyword or a dict entry): running a model's own code is the user's
  choice, never a default of ours. Exempt only where a test checks the consent path (EXEMPT below).

A finding fails the test naming file:line. The scanner itself is tested on snippets, so it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("fi_assets", "fi_resources", "bench", "tests")
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "joblib"}
TRUST = "trust_remote_code=True"

# (path relative to the root, rule) → why it is allowed. Each entry must still match a finding, so none rots.
EXEMPT: dict[tuple[str, str], str] = {
    ("tests/unit/test_remote_code.py", TRUST): (
        "checks that a model's own code runs only after the user opts in, and is refused before"
    ),
}


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, else ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _kwarg(call: ast.Call, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str, str]] = []  # (line, rule, detail)
        # Local names bound to numpy / torch (`import numpy as np`) and to their load functions
        # (`from torch import load as tload`).
        self.numpy = {"numpy", "np"}
        self.torch = {"torch"}
        self.np_load: set[str] = set()
        self.torch_load: set[str] = set()

    def _add(self, node: ast.AST, rule: str, detail: str) -> None:
        self.found.append((node.lineno, rule, detail))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in UNPICKLING_MODULES:
                self._add(node, "unpickling import", f"import {alias.name}")
            if alias.name == "numpy":
                self.numpy.add(alias.asname or "numpy")
            if alias.name == "torch":
                self.torch.add(alias.asname or "torch")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] in UNPICKLING_MODULES:
            self._add(node, "unpickling import", f"from {module} import ...")
        for alias in node.names:
            if alias.name in UNPICKLING_MODULES:  # from sklearn.externals import joblib
                self._add(node, "unpickling import", f"from {module} import {alias.name}")
            if module == "numpy" and alias.name == "load":
                self.np_load.add(alias.asname or "load")
            if module == "torch" and alias.name == "load":
                self.torch_load.add(alias.asname or "load")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        if last == "read_pickle" or (last == "load" and head.split(".")[-1:] == ["joblib"]):
            self._add(node, "unpickling call", f"{name}(...)")
        if (last == "load" and head in self.numpy) or name in self.np_load:
            allow = _kwarg(node, "allow_pickle")
            if allow is not None and not _is_const(allow, False):
                self._add(node, "np.load allow_pickle", f"{name}(..., allow_pickle={ast.unparse(allow)})")
        torch_load = (last == "load" and head in self.torch) or name in self.torch_load
        if torch_load and not _is_const(_kwarg(node, "weights_only"), True):
            self._add(node, "torch.load without weights_only=True", f"{name}(...)")
        if _is_const(_kwarg(node, "trust_remote_code"), True):
            self._add(node, TRUST, f"{name}(..., {TRUST})")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if _is_const(value, True) and isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                self._add(node, TRUST, '{"trust_remote_code": True}')
        self.generic_visit(node)


def scan_source(source: str, filename: str = "<snippet>") -> list[tuple[int, str, str]]:
    """Findings in one module's source: (line, rule, detail)."""
    finder = _Finder()
    finder.visit(ast.parse(source, filename=filename))
    return sorted(finder.found)


def project_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def test_the_project_loads_nothing_unsafely() -> None:
    files = project_files()
    assert len(files) > 50 and ROOT / "bench" / "tune_judge.py" in files  # the scan sees the project
    problems, exempt_used = [], set()
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for line, rule, detail in scan_source(path.read_text(encoding="utf8"), rel):
            if (rel, rule) in EXEMPT:
                exempt_used.add((rel, rule))
            else:
                problems.append(f"{rel}:{line}: {rule}: {detail}")
    assert not problems, "unsafe loading (see this test's docstring):\n" + "\n".join(problems)
    assert exempt_used == set(EXEMPT), f"stale exemptions: {set(EXEMPT) - exempt_used}"


# ---- the scanner can fail ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "snippet, rule",
    [
        ("import pickle\npickle.loads(b'')", "unpickling import"),
        ("import cPickle as p", "unpickling import"),
        ("from dill import loads", "unpickling import"),
        ("from sklearn.externals import joblib", "unpickling import"),
        ("import joblib.numpy_pickle", "unpickling import"),
        ("import shelve", "unpickling import"),
        ("m.joblib.load('x')", "unpickling call"),
        ("import pandas as pd\npd.read_pickle('x')", "unpickling call"),
        ("import numpy as np\nnp.load('x.npy', allow_pickle=True)", "np.load allow_pickle"),
        ("import numpy as numeric\nnumeric.load('x', allow_pickle=flag)", "np.load allow_pickle"),
        ("from numpy import load\nload('x', allow_pickle=True)", "np.load allow_pickle"),
        ("import torch\ntorch.load('w.pt')", "torch.load without weights_only=True"),
        ("import torch\ntorch.load('w.pt', weights_only=False)", "torch.load without weights_only=True"),
        ("from torch import load as tl\ntl('w.pt')", "torch.load without weights_only=True"),
        ("AutoModel.from_pretrained('m', trust_remote_code=True)", TRUST),
        ("kwargs = {'trust_remote_code': True}", TRUST),
    ],
)
def test_the_scanner_finds(snippet: str, rule: str) -> None:
    found = scan_source(snippet)
    assert rule in [r for _, r, _ in found], found
    assert all(line >= 1 for line, _, _ in found)


@pytest.mark.parametrize(
    "snippet",
    [
        "# pickle.loads is never used\n'''nor import pickle'''",
        "import numpy as np\nnp.load('x.npy')\nnp.load('x.npy', allow_pickle=False, mmap_mode='r')",
        "import torch\ntorch.load('w.pt', weights_only=True, map_location='cpu')",
        "AutoModel.from_pretrained('m', trust_remote_code=False)\nf(trust_remote_code=user_choice)",
        "import json\njson.load(open('x'))",
    ],
)
def test_the_scanner_passes_safe_code(snippet: str) -> None:
    assert scan_source(snippet) == []


def test_a_finding_names_its_line() -> None:
    assert scan_source("import json\n\nimport torch\nx = torch.load(p)\n") == [
        (4, "torch.load without weights_only=True", "torch.load(...)")
    ]

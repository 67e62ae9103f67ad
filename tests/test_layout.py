"""The library's layout: the model core at the top of course_lib, lesson support in course_lib/lessons,
learner helpers in course_lib/learner, and imports that only go down (learner -> lessons -> core)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import course_lib

PKG = Path(course_lib.__file__).parent
LAYER = {"learner": 2, "lessons": 1}  # everything else is the core (0)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], 0) if len(parts) > 1 and parts[0] == "course_lib" else -1


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> list[str]:
    """Absolute names of every course_lib module ``path`` (module ``module``) imports, relative imports resolved."""
    module = module or _module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            out += [n for n in names if n.startswith("course_lib")]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("course_lib")]
    return out


SOURCES = sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_go_down(path):
    me = _layer(_module_of(path))
    up = [m for m in _imports(path) if _layer(m) > me]
    assert not up, f"{path.relative_to(PKG)} ({['core', 'lessons', 'learner'][me]}) imports from a higher layer: {up}"


def test_the_layer_test_can_fail(tmp_path):
    """The parser sees a core module reaching up, by relative and by absolute import."""
    bad = tmp_path / "probe.py"
    bad.write_text("from .lessons import ledger\nimport course_lib.learner.quiz\nfrom .. import costs\n")
    assert _imports(bad, "course_lib.probe") == ["course_lib.lessons", "course_lib.learner.quiz"]
    assert [_layer(m) for m in _imports(bad, "course_lib.probe")] == [1, 2]
    assert _imports(bad, "course_lib.lessons.probe")[-1] == "course_lib.costs"


def test_every_module_is_described_in_the_package_docstring():
    doc = course_lib.__doc__
    for path in PKG.rglob("*.py"):
        name = path.stem if path.name != "__init__.py" else path.parent.name
        if name.startswith("_") or name == "course_lib" or path.parent.name == "checks" or path.parent.name == "translate":
            continue
        assert f"``{name}``" in doc, f"course_lib/__init__.py's docstring does not list {path.relative_to(PKG)}"


@pytest.mark.parametrize("name", sorted(course_lib._SHORT_NAMES))
def test_short_names_still_import(name):
    """``from course_lib import translate`` (what older notebooks write) gives the moved module."""
    mod = importlib.import_module(f"course_lib.{course_lib._SHORT_NAMES[name]}")
    assert getattr(course_lib, name) is mod
    ns: dict = {}
    exec(f"from course_lib import {name}", ns)
    assert ns[name] is mod


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        course_lib.nope  # noqa: B018

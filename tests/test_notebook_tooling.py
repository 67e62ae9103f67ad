"""Tests for the notebook toolchain: setup cells, exercise generation, Colab install and links,
quizzes, plotting helpers, the execute post-processing and the nbval sanitizers."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import matplotlib
import matplotlib.pyplot  # noqa: F401  built here, a new machine's font-cache run of fc-list never meets a patched subprocess
import nbformat
import numpy as np
import pytest
import torch

from course_lib import colab, plotting, quiz
from course_lib.masks import causal_mask, prefix_mask

ROOT = Path(__file__).resolve().parents[1]
v4 = nbformat.v4


def _load_tool():
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sync_notebooks", module)
    spec.loader.exec_module(module)
    return module


sync = _load_tool()
SETUP = colab.render_setup_cell()


def _real_notebooks() -> list[Path]:
    return [p for d in ("notebooks", "solutions", "exercises") for p in sync.notebooks_in(ROOT / d)]


def _fake_repo(tmp_path: Path) -> Path:
    for d in ("notebooks", "solutions", "exercises"):
        (tmp_path / d).mkdir()
    return tmp_path


def _write(nb, path: Path) -> Path:
    path.write_text(sync.notebook_text(nb), encoding="utf-8")
    return path


def _first_code_source(path: Path) -> str:
    nb = sync.read_notebook(path)
    i = sync.first_code_cell_index(nb)
    assert i is not None, f"{path} has no code cell"
    return nb.cells[i].source


# --------------------------------------------------------------------------- setup cells

REAL = _real_notebooks()


@pytest.mark.parametrize(
    "notebook",
    [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in REAL] or [pytest.param(None, id="no-notebooks-yet:tmp")],
)
def test_first_code_cell_is_the_rendered_setup_cell(notebook, tmp_path):
    if notebook is None:  # no notebooks in the repository yet: exercise the same check on a fresh one
        root = _fake_repo(tmp_path)
        nb = v4.new_notebook(cells=[v4.new_markdown_cell("# Title"), v4.new_code_cell("x = 1")])
        notebook = _write(nb, root / "notebooks" / "00_tmp.ipynb")
        assert _first_code_source(notebook) != SETUP
        sync.sync_setup_cells(root)
    expected = colab.render_setup_cell(extras=sync.notebook_extras(sync.read_notebook(notebook)))
    assert _first_code_source(notebook) == expected, (
        f"{notebook}: first code cell is not course_lib.learner.colab's setup cell; run "
        "`python tools/sync_notebooks.py setup-cells`"
    )


def test_setup_cells_command_inserts_rewrites_and_is_idempotent(tmp_path):
    root = _fake_repo(tmp_path)
    titled = v4.new_notebook(cells=[v4.new_markdown_cell("# Lesson"), v4.new_code_cell("x = 1")])
    stale_cell = v4.new_code_cell(colab.SETUP_CELL_MARKER + "\nprint('old')", execution_count=3,
                                  outputs=[v4.new_output("stream", text="old\n")])
    stale = v4.new_notebook(cells=[v4.new_markdown_cell("# Sol"), stale_cell, v4.new_code_cell("y = 2")])
    prose_only = v4.new_notebook(cells=[v4.new_markdown_cell("# Only prose")])
    _write(titled, root / "notebooks" / "01_a.ipynb")
    _write(stale, root / "solutions" / "01_b.ipynb")
    _write(prose_only, root / "notebooks" / "02_c.ipynb")

    assert len(sync.sync_setup_cells(root, check=True)) == 3
    assert sync.main(["--root", str(root), "setup-cells"]) == 0

    def read_without_nav(path):  # setup-cells also writes the header/footer cells (tested with nav)
        nb = sync.read_notebook(path)
        nb.cells = [c for c in nb.cells if not c.source.startswith((colab.HEADER_MARKER, colab.FOOTER_MARKER))]
        return nb

    a = read_without_nav(root / "notebooks" / "01_a.ipynb")
    assert [c.cell_type for c in a.cells] == ["markdown", "code", "code"]
    assert a.cells[1].source == SETUP and a.cells[1].id == sync.SETUP_CELL_ID and a.cells[2].source == "x = 1"
    b = read_without_nav(root / "solutions" / "01_b.ipynb")
    assert len(b.cells) == 3 and b.cells[1].source == SETUP
    assert b.cells[1].outputs == [] and b.cells[1].execution_count is None  # stale outputs dropped
    c = read_without_nav(root / "notebooks" / "02_c.ipynb")
    assert [cell.cell_type for cell in c.cells] == ["markdown", "code"] and c.cells[1].source == SETUP
    assert (root / "exercises" / "01_b.ipynb").is_file()  # setup-cells regenerates exercises
    assert _first_code_source(root / "exercises" / "01_b.ipynb") == SETUP

    before = {p: p.read_bytes() for p in root.rglob("*.ipynb")}
    assert sync.sync_setup_cells(root) == []  # second run: nothing to do
    assert {p: p.read_bytes() for p in root.rglob("*.ipynb")} == before
    assert sync.main(["--root", str(root), "check"]) == 0


def test_setup_cell_text_is_plain_short_python_with_the_repo_url():
    lines = SETUP.splitlines()
    assert lines[0] == ("# Course setup: generated by tools/sync_notebooks.py from course_lib/learner/colab.py; "
                        "do not edit by hand.")
    ast.parse(SETUP)  # plain Python: no % magics or ! shell lines
    assert not any(line.lstrip().startswith(("%", "!")) for line in lines)
    assert len(lines) <= 18
    assert "NBVAL_CHECK_OUTPUT" not in SETUP  # prints the device: must never be compared
    assert SETUP.count(f"git+{colab.REPO_URL}@{colab.BRANCH}") == 1
    assert "describe_device" in SETUP and "setup_style()" in SETUP


def test_repo_url_lives_only_in_colab_py():
    url = colab.REPO_URL
    holders = [p.relative_to(ROOT).as_posix()
               for d in ("course_lib", "tools") for p in (ROOT / d).rglob("*.py")
               if url in p.read_text(encoding="utf-8")]
    assert holders == ["course_lib/learner/colab.py"]


def _exec_setup_cell(capsys) -> str:
    with matplotlib.rc_context():  # setup_style() changes rcParams; keep them local to this test
        exec(compile(SETUP, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    return capsys.readouterr().out


_INSTALLERS = re.compile(r"(^|[\s/])(pip3?|conda|mamba|micromamba|uv|apt|apt-get)(\s.*)?\s(install|add)\b")


def _is_install_command(args) -> bool:
    """Whether a subprocess command line installs packages (pip/conda/uv/apt … install)."""
    cmd = args[0] if args else ""
    text = cmd if isinstance(cmd, str) else " ".join(str(a) for a in cmd)
    text = re.sub(r"\S*python[\d.]*\s+-m\s+", "", text)  # "python -m pip install" -> "pip install"
    return bool(_INSTALLERS.search(" " + text))


def _forbid_installs(monkeypatch):
    """Make any package-installing subprocess fail the test; other subprocesses run as usual.

    Libraries may legitimately start helpers (matplotlib runs ``fc-list`` the first time it builds
    its font cache on a new machine), so the guard looks for what it means: an installer command.
    pyplot is imported before the patch so that its one-off font-cache build never meets the guard.
    """
    import matplotlib.pyplot  # noqa: F401  (font cache built here, outside the guard)

    def guarded(real):
        def run(*args, **kwargs):
            if _is_install_command(args or (kwargs.get("args"),)):
                raise AssertionError(f"the setup cell installed something outside Colab: {args}")
            return real(*args, **kwargs)
        return run

    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, guarded(getattr(subprocess, name)))
    monkeypatch.setattr(os, "system", guarded(os.system))


@pytest.mark.parametrize("cmd,installs", [
    (["/usr/bin/python3", "-m", "pip", "install", "-q", "x"], True),
    ([sys.executable, "-m", "pip", "install", "course_lib @ git+https://x/y@main"], True),
    ("pip install torch", True),
    ("conda install -y numpy", True),
    (["uv", "pip", "install", "x"], True),
    (["apt-get", "install", "-y", "fontconfig"], True),
    (["fc-list", "--format=%{file}\\n"], False),
    (["pip", "list"], False),
    ("git status", False),
])
def test_install_guard_recognises_installer_commands(cmd, installs):
    assert _is_install_command((cmd,)) is installs


def test_setup_cell_outside_colab_installs_nothing(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    _forbid_installs(monkeypatch)
    out = _exec_setup_cell(capsys)
    assert re.fullmatch(r"course_lib \S+ \| device: .+ \| torch threads: \d+.*\n", out), out


def test_install_guard_fails_a_setup_cell_that_installs_outside_colab(monkeypatch, capsys):
    """The guard above can fail: a setup cell that forgets its Colab condition is caught."""
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    _forbid_installs(monkeypatch)
    broken = SETUP.replace('if "google.colab" in sys.modules:', "if True:")
    assert broken != SETUP
    with pytest.raises(AssertionError, match="installed something outside Colab"):
        with matplotlib.rc_context():
            exec(compile(broken, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})


def _copy_package_source(dest: Path) -> Path:
    """The checkout's installable files (a copy, so building writes nothing into the repository)."""
    dest.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(ROOT / "course_lib", dest / "course_lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # pyproject.toml ships the saved benchmark reports inside the package (lesson 06 reads them on Colab)
    shutil.copytree(ROOT / "benchmarks" / "results", dest / "benchmarks" / "results", ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(ROOT / "results" / "claims", dest / "results" / "claims")  # and the ledger (lesson 08 on Colab)
    readme = ROOT / "README.md"
    if readme.is_file():
        shutil.copy2(readme, dest / "README.md")
    else:  # pyproject names a readme
        (dest / "README.md").write_text("course_lib\n", encoding="utf-8")
    return dest


def test_setup_cell_in_colab_pip_installs_from_the_source_and_pins_colab_packages(monkeypatch, tmp_path, capsys):
    """Run the setup cell as if in Colab: the exact pip command is checked, then really run
    (with --no-deps --target, so nothing outside tmp_path changes). The wheel is built in pip's
    isolated build environment, as on Colab, so the test does not depend on this venv's setuptools."""
    source = _copy_package_source(tmp_path / "src")
    target = tmp_path / "target"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv(colab.SOURCE_ENV, str(source))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    calls = []
    real_run = subprocess.run

    def fake_run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        extra = ["--no-deps", "--target", str(target)]
        return real_run(list(cmd) + extra, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", fake_run)
    start = time.perf_counter()
    out = _exec_setup_cell(capsys)
    assert time.perf_counter() - start < 120
    pin_file = tmp_path / colab.PIN_FILE_NAME
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", str(source), "-c", str(pin_file)]]
    targets = [a for a in calls[0][4:] if not a.startswith("-") and a != str(pin_file)]
    assert targets == [str(source)]  # torch/ipywidgets are never install targets
    from importlib.metadata import version

    assert pin_file.read_text().splitlines() == [f"{p}=={version(p)}" for p in colab.PINNED_ON_COLAB]
    assert (target / "course_lib" / "__init__.py").is_file()
    assert (target / "course_lib" / "learner" / "colab.py").read_text() == (ROOT / "course_lib" / "learner" / "colab.py").read_text()
    assert list(target.glob("course_lib-*.dist-info"))
    shipped = {p.name for p in (target / "course_lib" / "benchmark_results").glob("*.json")}
    assert shipped and shipped == {p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")}  # lesson 06's reports
    claims = {p.name for p in (target / "course_lib" / "claims_results").glob("*.json")}
    assert claims and claims == {p.name for p in (ROOT / "results" / "claims").glob("*.json")}  # lesson 08's ledger
    assert not (target / "torch").exists() and not (target / "ipywidgets").exists()
    assert "device:" in out


def test_setup_cell_default_install_source_is_the_repository_branch(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv(colab.SOURCE_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: calls.append(list(cmd)))
    _exec_setup_cell(capsys)
    spec = f"course_lib @ git+{colab.REPO_URL}@{colab.BRANCH}"
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", spec, "-c", str(tmp_path / colab.PIN_FILE_NAME)]]


def test_setup_cell_installs_a_notebooks_extras_on_colab(monkeypatch, tmp_path, capsys):
    """A notebook that names extras in its metadata gets them in its setup cell's pip spec."""
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# T"), v4.new_code_cell("x = 1")])
    nb.metadata["course"] = {"setup_extras": ["real"]}
    assert sync.apply_setup_cell(nb) and sync.setup_cell_problem(nb) is None
    source = _first_code_source(_write(nb, tmp_path / "nb.ipynb"))
    assert source == colab.render_setup_cell(extras=("real",)) != SETUP
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv(colab.SOURCE_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: calls.append(list(cmd)))
    with matplotlib.rc_context():
        exec(compile(source, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    assert calls[0][5] == f"course_lib[real] @ git+{colab.REPO_URL}@{colab.BRANCH}" == colab.install_spec(extras=("real",))
    with pytest.raises(ValueError, match="extra"):
        colab.render_setup_cell(extras=("real; rm -rf /",))


def test_configure_threads_honours_the_override_and_refuses_nonsense(monkeypatch):
    from course_lib.runtime import configure_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("COURSE_THREADS", "1")
        assert configure_threads() == "torch threads: 1 (set by you)" and torch.get_num_threads() == 1
        for bad in ("two", "0"):
            monkeypatch.setenv("COURSE_THREADS", bad)
            with pytest.raises(ValueError, match="thread"):
                configure_threads()
        monkeypatch.delenv("COURSE_THREADS")
        torch.set_num_threads(2)  # with a choice to make, it times the candidates and keeps the fastest
        summary = configure_threads()
        assert re.fullmatch(r"torch threads: [12] \(one tiny training step took 1 thread [\d.]+ ms, "
                            r"2 threads [\d.]+ ms; COURSE_THREADS=n overrides\)", summary), summary
        assert torch.get_num_threads() == int(summary.split()[2])
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- exercises


def test_exercises_are_in_sync_with_solutions():
    report = sync.sync_exercises(ROOT, check=True)
    assert report.problems == [], "run `python tools/sync_notebooks.py exercises`:\n" + "\n".join(report.problems)
    assert report.written == []


SOLUTION_CODE = '''\
import math


def attention_scale(d_k):
    """1 / sqrt(d_k)."""
    # BEGIN SOLUTION
    return 1 / math.sqrt(d_k)
    # END SOLUTION


class Head:
    def forward(self, x):
        if x is None:
            # BEGIN SOLUTION
            x = 0
            return x
            # END SOLUTION
        return x'''

EXERCISE_CODE = '''\
import math


def attention_scale(d_k):
    """1 / sqrt(d_k)."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise not done yet")


class Head:
    def forward(self, x):
        if x is None:
            # YOUR CODE HERE
            raise NotImplementedError("exercise not done yet")
        return x'''


def _solution_notebook():
    cells = [
        v4.new_markdown_cell("# Exercise 1: attention"),
        v4.new_code_cell(colab.SETUP_CELL_MARKER + "\nprint('stale setup')"),
        v4.new_code_cell(SOLUTION_CODE, execution_count=2, outputs=[v4.new_output("stream", text="hi\n")],
                         metadata={"tags": ["keep-me"], "execution": {"iopub.status.busy": "2026"}, "scrolled": True}),
        v4.new_code_cell("assert attention_scale(4) == 0.5", metadata={"tags": ["solution-only"]}),
        v4.new_markdown_cell("**Why divide?**\n\n<!-- BEGIN SOLUTION -->\nTo keep the softmax soft.\n"
                             "<!-- END SOLUTION -->\n\nNext."),
        v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nA long answer"),
        v4.new_markdown_cell("that spans cells."),
        v4.new_markdown_cell("<!-- END SOLUTION -->"),
        v4.new_markdown_cell("Solution notes", metadata={"tags": ["solution-only"]}),
        v4.new_code_cell("attention_scale(16)", execution_count=3,
                         outputs=[v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=3)]),
    ]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"  # fixed ids: two calls give the same notebook
    nb = v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"name": "weird", "display_name": "x", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {"state": {}}}
    return nb


def test_generator_turns_a_solution_into_the_expected_exercise():
    solution = _solution_notebook()
    original = json.dumps(solution, sort_keys=True)
    exercise = sync.make_exercise(solution, "solutions/01_attention.ipynb")
    assert json.dumps(solution, sort_keys=True) == original  # input untouched

    kinds_and_sources = [(c.cell_type, c.source) for c in exercise.cells]
    assert kinds_and_sources == [
        ("markdown", "# Exercise 1: attention"),
        ("code", SETUP),  # first code cell forced to the template
        ("code", EXERCISE_CODE),
        ("markdown", "**Why divide?**\n\n*(Your answer here.)*\n\nNext."),
        ("markdown", "*(Your answer here.)*"),  # a region spanning three cells collapses into one
        ("code", "attention_scale(16)"),
    ]
    code = [c for c in exercise.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[1].metadata == {"tags": ["keep-me"]}  # tags kept, timing/view metadata dropped
    assert dict(exercise.metadata) == {"kernelspec": sync.KERNELSPEC, "language_info": {"name": "python"}}
    ast.parse(EXERCISE_CODE)  # the stub is valid Python, so the unsolved notebook still runs

    text = sync.notebook_text(exercise)
    assert text == sync.notebook_text(sync.make_exercise(_solution_notebook(), "solutions/01_attention.ipynb"))
    assert text.endswith("}\n") and text.startswith('{\n "cells": [\n  {\n')  # indent=1, trailing newline
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    nbformat.validate(nbformat.reads(text, as_version=4))


@pytest.mark.parametrize(
    "source, message",
    [
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "top level"),
        ("for i in range(3):\n    # BEGIN SOLUTION\n    x = i\n    # END SOLUTION", "not inside a function body"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1", "never closed"),
        ("def f():\n    return 1\n    # END SOLUTION", "without a '# BEGIN SOLUTION'"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n# END SOLUTION", "indented differently"),
        ("def f():\n    #BEGIN SOLUTION\n    return 1\n    # END SOLUTION", "malformed marker"),
        ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION", "inside the region"),
    ],
)
def test_generator_rejects_bad_regions_naming_notebook_and_cell(source, message):
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# T"), v4.new_code_cell(SETUP), v4.new_code_cell(source)])
    nb.cells[2].id = "bad-cell"
    with pytest.raises(sync.ExerciseError) as info:
        sync.make_exercise(nb, "solutions/09_bad.ipynb")
    text = str(info.value)
    assert "solutions/09_bad.ipynb" in text and "cell 2" in text and "bad-cell" in text and message in text


def test_exercises_are_deterministic_for_solutions_without_cell_ids(tmp_path):
    root = _fake_repo(tmp_path)
    raw = json.loads(sync.notebook_text(_solution_notebook()))
    for cell in raw["cells"]:
        del cell["id"]  # hand-written JSON: nbformat would invent random ids on every read
    (root / "solutions" / "01_attention.ipynb").write_text(json.dumps(raw), encoding="utf-8")
    assert sync.sync_exercises(root).written == ["exercises/01_attention.ipynb"]
    assert sync.sync_exercises(root, check=True).problems == []


def test_generator_rejects_unclosed_markdown_region():
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nanswer"), v4.new_code_cell("x = 1")])
    with pytest.raises(sync.ExerciseError, match=r"solutions/x.ipynb: cell 1 .*inside the Markdown solution region"):
        sync.make_exercise(nb, "solutions/x.ipynb")


def test_exercises_command_writes_checks_and_reports_stale_missing_extra(tmp_path, capsys):
    root = _fake_repo(tmp_path)
    _write(_solution_notebook(), root / "solutions" / "01_attention.ipynb")
    target = root / "exercises" / "01_attention.ipynb"

    assert sync.main(["--root", str(root), "exercises", "--check"]) == 1
    assert "missing: exercises/01_attention.ipynb" in capsys.readouterr().err
    assert not target.exists()  # --check writes nothing

    assert sync.main(["--root", str(root), "exercises"]) == 0
    written = target.read_bytes()
    assert sync.main(["--root", str(root), "exercises"]) == 0 and target.read_bytes() == written  # deterministic
    assert sync.main(["--root", str(root), "exercises", "--check"]) == 0

    target.write_text(written.decode().replace("YOUR CODE HERE", "my answer"), encoding="utf-8")
    (root / "exercises" / "99_orphan.ipynb").write_text(sync.notebook_text(v4.new_notebook()), encoding="utf-8")
    assert sync.main(["--root", str(root), "exercises", "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: exercises/01_attention.ipynb" in err and "extra: exercises/99_orphan.ipynb" in err

    bad = _solution_notebook()
    bad.cells.append(v4.new_code_cell("# BEGIN SOLUTION\nx = 1\n# END SOLUTION"))
    _write(bad, root / "solutions" / "02_bad.ipynb")
    assert sync.main(["--root", str(root), "exercises"]) == 1
    assert "solutions/02_bad.ipynb: cell 10" in capsys.readouterr().err


# --------------------------------------------------------------------------- execute


def test_postprocess_numbers_cells_scrubs_paths_and_refuses_untagged_errors(tmp_path):
    root = tmp_path / "repo"
    nb_dir = root / "notebooks"
    nb_dir.mkdir(parents=True)
    home = str(Path.home())
    cells = [
        v4.new_code_cell("a", execution_count=7, metadata={"execution": {"shell.execute_reply": "t"}},
                         outputs=[v4.new_output("stream", text=f"{nb_dir}/data.tsv {root}/course_lib/x.py "
                                                              f"{home}/file /tmp/tmpab12cd34/ckpt.pt {root}2\n")]),
        v4.new_code_cell("", execution_count=None),
        v4.new_code_cell("b", execution_count=9, outputs=[
            v4.new_output("execute_result", data={"text/plain": f"'{root}'"}, execution_count=9),
            v4.new_output("display_data", data={sync.WIDGET_MIME: {"model_id": "x"}, "text/plain": "IntSlider()"}),
        ]),
        v4.new_code_cell("1/0", execution_count=10, metadata={"tags": ["raises-exception"]},
                         outputs=[v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                traceback=[f"File {nb_dir}/x.py"])]),
    ]
    nb = v4.new_notebook(cells=cells, metadata={"widgets": {"state": {}}, "language_info": {"name": "python", "version": "3.11.7"}})
    assert sync.postprocess_executed(nb, root, nb_dir, "notebooks/x.ipynb") == []
    assert [c.execution_count for c in nb.cells] == [1, None, 2, 3]
    assert nb.cells[0].metadata == {}
    text = nb.cells[0].outputs[0].text
    assert text.startswith("./data.tsv ../course_lib/x.py ~/file <tmp>/ckpt.pt ")
    assert text.endswith("repo2\n") and not text.endswith("..2\n")  # a longer sibling name is not the repo
    assert [o.output_type for o in nb.cells[2].outputs] == ["execute_result"]  # dead widget dropped
    assert nb.cells[2].outputs[0].execution_count == 2 and nb.cells[2].outputs[0].data["text/plain"] == "'..'"
    assert nb.cells[3].outputs[0].traceback == ["File ./x.py"]
    assert "widgets" not in nb.metadata and "version" not in nb.metadata["language_info"]
    assert nb.metadata["kernelspec"]["name"] == "python3"

    untagged = v4.new_notebook(cells=[v4.new_code_cell("1/0", execution_count=1, outputs=[
        v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])])
    problems = sync.postprocess_executed(untagged, root, nb_dir, "notebooks/y.ipynb")
    assert len(problems) == 1 and "notebooks/y.ipynb: cell 0" in problems[0] and "raises-exception" in problems[0]


def test_execute_runs_a_notebook_in_a_fresh_kernel_in_its_folder(tmp_path, capsys):
    root = _fake_repo(tmp_path)
    cells = [
        v4.new_markdown_cell("# Tiny"),
        v4.new_code_cell(SETUP),
        v4.new_code_cell("import os\nfrom course_lib.runtime import fast_mode\n"
                         "print(os.path.basename(os.getcwd()), fast_mode(), os.environ.get('COURSE_HEADLESS'))"),
        v4.new_code_cell("raise ValueError('expected')", metadata={"tags": ["raises-exception"]}),
        v4.new_code_cell("6 * 7"),
    ]
    path = _write(v4.new_notebook(cells=cells), root / "notebooks" / "00_tiny.ipynb")
    env_before = {k: os.environ.get(k) for k in ("COURSE_FAST", "MPLBACKEND", "COURSE_HEADLESS")}
    assert sync.main(["--root", str(root), "execute", str(path)]) == 0  # full mode: COURSE_FAST=0
    assert {k: os.environ.get(k) for k in env_before} == env_before  # restored for the caller
    assert re.search(r"notebooks/00_tiny.ipynb: \d+\.\d s", capsys.readouterr().out)
    nb = sync.read_notebook(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[0].outputs[0].text.startswith("course_lib ")
    assert code[1].outputs[0].text == "notebooks False 1\n"
    assert code[2].outputs[0].output_type == "error"
    assert code[3].outputs[0].data["text/plain"] == "42"
    assert all("execution" not in c.metadata for c in nb.cells)
    assert path.read_text(encoding="utf-8") == sync.notebook_text(nb)
    # the full-mode run's time is recorded, and the header under the title shows it
    (measured,) = sync.load_runtimes(root).values()
    assert sync.load_runtimes(root).keys() == {"notebooks/00_tiny.ipynb"} and measured["seconds"] > 0
    assert nb.cells[1].source.startswith(colab.HEADER_MARKER) and colab.format_duration(measured["seconds"]) in nb.cells[1].source


# --------------------------------------------------------------------------- quiz


@pytest.fixture
def question():
    return quiz.MultipleChoice(
        "Which mask lets query 2 attend to key 3?",
        ["causal", "bidirectional (encoder)", "neither"],
        answer="b",
        explanations=["The causal mask hides keys after the query, and 3 > 2",
                      "The encoder mask hides only padding",
                      "The encoder mask allows it"],
        id="test-mask-q",
    )


def test_grade_choice_right_and_wrong_answers(question):
    assert question.answer == 1 and question.answer_letter == "b"
    assert quiz.grade_choice(question, "b") == (True, "Correct: The encoder mask hides only padding.")
    assert quiz.grade_choice(question, "B)") == quiz.grade_choice(question, 1) == quiz.grade_choice(
        question, "bidirectional (encoder)") == (True, "Correct: The encoder mask hides only padding.")
    assert quiz.grade_choice("test-mask-q", "a") == (
        False, "Not quite, (a) is wrong: The causal mask hides keys after the query, and 3 > 2.")
    assert quiz.grade_choice("test-mask-q", "neither") == (False, "Not quite, (c) is wrong: The encoder mask allows it.")
    ok, message = quiz.grade_choice(question, "e")
    assert not ok and "not one of the options" in message and "a to c" in message
    bare = quiz.MultipleChoice("2 + 2?", ["3", "4"], answer=1)
    assert quiz.grade_choice(bare, "a") == (False, "Not quite: (a) is not the answer; think about it again, then run the next cell.")
    assert quiz.grade_choice(bare, "b") == (True, "Correct!")
    with pytest.raises(KeyError, match="no question with id"):
        quiz.grade_choice("no-such-question", "a")
    with pytest.raises(ValueError):
        quiz.MultipleChoice("?", ["x", "y"], answer="z")


def test_ask_prints_text_headless_and_reveal_prints_the_answer(question, capsys):
    assert quiz.ask(question) is None  # pytest: no frontend
    out = capsys.readouterr().out
    assert out.startswith("Which mask lets query 2 attend to key 3?\n  a) causal\n  b) bidirectional (encoder)\n  c) neither\n")
    quiz.reveal(question)
    out = capsys.readouterr().out
    assert "Answer: (b) bidirectional (encoder) - The encoder mask hides only padding." in out
    assert "not (a): The causal mask hides keys after the query, and 3 > 2." in out
    assert question.check("c") is False and capsys.readouterr().out.startswith("❌ Not quite")


def test_headless_hint_is_code_that_runs_after_the_setup_cell(capsys):
    """The printed "answer in code" hint must work where only `course_lib` is imported (the setup cell)."""
    mc = quiz.MultipleChoice("Two plus two?", ["3", "4"], answer="4", id="hint-test")
    quiz.ask(mc, widget=False)
    hint = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    assert "<letter>" in hint  # no option's letter, so the hint gives no answer away
    hint = hint.replace("<letter>", "b")
    import course_lib

    assert isinstance(eval(hint, {"course_lib": course_lib}), bool), hint


def test_ask_widget_grades_on_click(question, capsys, monkeypatch):
    pytest.importorskip("ipywidgets")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    assert quiz.ask(question, widget=True) is None  # a returned widget would show twice as a cell's last line
    (box,) = shown
    parts = box._course_parts
    assert parts["radio"].value is None  # nothing preselected
    parts["button"].click()
    assert "Pick an option" in parts["feedback"].value
    parts["radio"].value = 0
    parts["button"].click()
    assert parts["feedback"].value.startswith("❌ Not quite")
    parts["radio"].value = 1
    parts["button"].click()
    assert parts["feedback"].value == "✅ Correct: The encoder mask hides only padding."


def test_ask_as_a_cells_last_line_shows_the_widget_once(monkeypatch):
    """In a real kernel (as in JupyterLab), `ask(q)` ending a cell displays one widget and no result."""
    pytest.importorskip("ipywidgets")
    from nbclient import NotebookClient

    monkeypatch.setenv(quiz.HEADLESS_ENV, "0")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from course_lib.learner.quiz import MultipleChoice, ask\n"
        "ask(MultipleChoice('2 + 2?', ['3', '4'], answer='4'))"
    )]
    NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"], outputs
    assert sync.WIDGET_MIME in outputs[0].data


# --------------------------------------------------------------------------- plotting


@pytest.fixture
def no_figures_leak():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_plot_mask_image_is_the_mask(no_figures_leak):
    mask = torch.tensor([[True, False, False], [True, True, False]])
    fig = plotting.plot_mask(mask, title="causal", query_labels=["q0", "q1"], key_labels=["a", "b", "c"])
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    (image,) = ax.images
    np.testing.assert_array_equal(np.asarray(image.get_array()), mask.numpy().astype(float))
    assert ax.get_title() == "causal"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q0", "q1"]
    # (1, 1, T, T) masks are squeezed; wrong label counts are caught
    fig2 = plotting.plot_mask(prefix_mask(4, 2)[None, None])
    np.testing.assert_array_equal(np.asarray(fig2.axes[0].images[0].get_array()), prefix_mask(4, 2).numpy().astype(float))
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_mask(mask, key_labels=["a"])
    with pytest.raises(ValueError, match="one \\(T_q, T_k\\) matrix"):
        plotting.plot_mask(torch.ones(2, 1, 3, 3, dtype=torch.bool))


def test_plot_masks_attention_losses_bars(no_figures_leak):
    fig = plotting.plot_masks({"encoder": torch.ones(3, 3, dtype=torch.bool), "decoder": causal_mask(3)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["encoder", "decoder"]
    np.testing.assert_array_equal(np.asarray(visible[1].images[0].get_array()), np.tril(np.ones((3, 3))))

    weights = torch.softmax(torch.randn(1, 1, 2, 3), dim=-1)
    fig = plotting.plot_attention(weights, query_labels=["le", "chat"], key_labels=["the", "cat", "sat"], title="attn")
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), weights[0, 0].numpy(), rtol=1e-6)
    assert fig.axes[0].get_title() == "attn"

    fig = plotting.plot_loss_curves({"dec": [3.0, 2.0, 1.5],
                                     "enc-dec": [{"step": 0, "loss": 3.1}, {"step": 10, "loss": 1.0}]}, logy=True)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["dec"].get_ydata(), [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(lines["enc-dec"].get_xdata(), [0, 10])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"

    fig = plotting.plot_bars({"encoder": 1.0, "decoder": 2.5}, ylabel="ms")
    assert [p.get_height() for p in fig.axes[0].patches] == [1.0, 2.5]
    fig = plotting.plot_bars({"prefill": {"a": 1, "b": 2}, "decode": {"a": 3, "b": 4}})
    assert sorted(p.get_height() for p in fig.axes[0].patches) == [1, 2, 3, 4]

    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert plotting.plot_mask(causal_mask(2), ax=ax) is ax.figure  # draws on the given axes


def test_setup_style_sets_small_low_dpi_figures():
    with matplotlib.rc_context():
        plotting.setup_style()
        assert matplotlib.rcParams["figure.dpi"] == 100 and matplotlib.rcParams["savefig.dpi"] == 100
        assert matplotlib.rcParams["figure.figsize"][0] <= 6


# --------------------------------------------------------------------------- navigation cells


def test_format_duration_rounds_to_what_a_learner_needs():
    assert [colab.format_duration(s) for s in (0.4, 12, 94, 95, 151, 3599, 4800)] == [
        "about 5 s", "about 10 s", "about 95 s", "about 2 min", "about 3 min", "about 1 h 00 min", "about 1 h 20 min"]
    with pytest.raises(ValueError, match="negative"):
        colab.format_duration(-1)


def test_header_run_time_line_only_when_measured_and_flagged_when_the_machine_was_busy():
    assert "Run time" not in colab.render_header("notebooks/01_a.ipynb", None)
    run = {"seconds": 130, "machine": "Some CPU, 2 cores", "cores": 2, "date": "2026-01-02", "load_average_1min": 0.5}
    quiet = colab.render_header("notebooks/01_a.ipynb", run)
    assert "*Run time: about 2 min top to bottom in full mode on Some CPU, 2 cores (measured 2026-01-02)." in quiet
    assert "see lesson 00" in quiet and "see lesson 00" not in colab.render_header("notebooks/00.ipynb", run, fast_mode_hint=False)
    assert "busy, so an upper bound" in colab.render_header("notebooks/01_a.ipynb", {**run, "load_average_1min": 7.9})


_MD_LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")


def _nav_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith((colab.HEADER_MARKER, colab.FOOTER_MARKER))]


def _relative_links(path: Path) -> list[Path]:
    """Targets of the relative notebook links in a notebook's navigation cells, resolved from its folder."""
    from urllib.parse import unquote

    links = [m for src in _nav_cells(sync.read_notebook(path)) for m in _MD_LINK.findall(src) if "://" not in m]
    return [(path.parent / unquote(link)).resolve() for link in links]


def test_nav_links_each_lesson_to_its_practice_and_the_next_lesson(tmp_path, capsys):
    root = _fake_repo(tmp_path)
    for folder, name, title in [("notebooks", "00_start.ipynb", "00 · Start"), ("notebooks", "01_attn.ipynb", "01 · Attention"),
                                ("notebooks", "02_enc.ipynb", "02 · Encoder"), ("solutions", "01_practice_attn.ipynb", "Practice 01"),
                                ("solutions", "02_practice_enc.ipynb", "Practice 02")]:
        _write(v4.new_notebook(cells=[v4.new_markdown_cell(f"# {title}\n\nIntro."), v4.new_code_cell(SETUP),
                                      v4.new_markdown_cell("The end.")]), root / folder / name)
    assert sync.main(["--root", str(root), "nav"]) == 0
    assert sync.main(["--root", str(root), "nav"]) == 0 and "all up to date" in capsys.readouterr().out.splitlines()[-1]
    assert sync.main(["--root", str(root), "check"]) == 0

    def nav(relpath):
        nb = sync.read_notebook(root / relpath)
        assert nb.cells[0].source.startswith("# ") and nb.cells[1].source.startswith(colab.HEADER_MARKER), relpath
        assert colab.colab_badge_url(relpath) in nb.cells[1].source and "Run time" not in nb.cells[1].source  # not measured
        footer = nb.cells[-1].source if nb.cells[-1].source.startswith(colab.FOOTER_MARKER) else None
        return footer, sorted(p.relative_to(root).as_posix() for p in _relative_links(root / relpath))

    assert nav("notebooks/00_start.ipynb")[1] == ["notebooks/01_attn.ipynb"]
    footer, links = nav("notebooks/01_attn.ipynb")
    assert links == ["exercises/01_practice_attn.ipynb", "notebooks/02_enc.ipynb"] and "Practice 01" in footer
    assert "02 · Encoder" in footer and colab.colab_badge_url("exercises/01_practice_attn.ipynb") in footer
    assert nav("notebooks/02_enc.ipynb")[1] == ["exercises/02_practice_enc.ipynb"]  # the last lesson
    assert nav("solutions/01_practice_attn.ipynb")[1] == nav("exercises/01_practice_attn.ipynb")[1] == ["notebooks/02_enc.ipynb"]
    assert nav("solutions/02_practice_enc.ipynb")[0] is None  # nothing comes after it
    assert all(p.is_file() for rel in ("notebooks/01_attn.ipynb", "exercises/01_practice_attn.ipynb") for p in _relative_links(root / rel))

    # a measured run time appears in the header (the exercise shows its solution's); a hand edit is caught
    sync.record_runtime(root, "solutions/01_practice_attn.ipynb", 12.3)
    assert sync.main(["--root", str(root), "check"]) == 1
    assert sync.main(["--root", str(root), "nav"]) == 0
    for relpath in ("solutions/01_practice_attn.ipynb", "exercises/01_practice_attn.ipynb"):
        header = sync.read_notebook(root / relpath).cells[1].source
        assert "Run time: about 10 s top to bottom in full mode on " in header
    assert "timed on its worked solution `solutions/01_practice_attn.ipynb`" in header
    path = root / "notebooks" / "01_attn.ipynb"
    path.write_text(path.read_text(encoding="utf-8").replace("Open In Colab", "Open in Kaggle"), encoding="utf-8")
    assert sync.main(["--root", str(root), "check"]) == 1
    assert "notebooks/01_attn.ipynb: navigation cells" in capsys.readouterr().err


def test_nav_links_an_appendix_to_its_lesson_and_keeps_it_out_of_the_lesson_sequence(tmp_path):
    root = _fake_repo(tmp_path)
    for name, title in [("01_attn.ipynb", "01 · Attention"), ("02_enc.ipynb", "02 · Encoder"), ("A1_attn_more.ipynb", "A1 · More")]:
        nb = v4.new_notebook(cells=[v4.new_markdown_cell(f"# {title}"), v4.new_code_cell(SETUP)])
        if name.startswith("A1"):
            nb.metadata["course"] = {"appendix_to": "01_attn.ipynb"}
        _write(nb, root / "notebooks" / name)
    assert sync.main(["--root", str(root), "setup-cells"]) == 0 and sync.main(["--root", str(root), "check"]) == 0

    def links(name):
        return sorted(p.relative_to(root).as_posix() for p in _relative_links(root / "notebooks" / name))

    assert links("01_attn.ipynb") == ["notebooks/02_enc.ipynb", "notebooks/A1_attn_more.ipynb"]
    assert "**Appendix:** [A1 · More]" in sync.read_notebook(root / "notebooks" / "01_attn.ipynb").cells[-1].source
    assert links("02_enc.ipynb") == []  # the last lesson: an appendix is not the lesson after it
    appendix = sync.read_notebook(root / "notebooks" / "A1_attn_more.ipynb")
    assert _first_code_source(root / "notebooks" / "A1_attn_more.ipynb") == SETUP
    assert "**Back to the lesson:** [01 · Attention]" in appendix.cells[-1].source
    assert links("A1_attn_more.ipynb") == ["notebooks/01_attn.ipynb", "notebooks/02_enc.ipynb"]


def test_real_notebooks_carry_current_navigation_cells_whose_links_resolve():
    assert sync.sync_nav(ROOT, check=True) == []
    for path in REAL:
        assert _nav_cells(sync.read_notebook(path)), f"{path.relative_to(ROOT)} has no navigation cells (run nav)"
        missing = [str(p) for p in _relative_links(path) if not p.is_file()]
        assert not missing, f"{path.relative_to(ROOT)} links to missing notebooks: {missing}"
    for relpath, run in sync.load_runtimes(ROOT).items():  # every recorded time belongs to a notebook
        assert (ROOT / relpath).is_file() and run["seconds"] > 0, relpath


# --------------------------------------------------------------------------- Colab links and README


def test_colab_badge_url_format():
    slug = colab.repo_slug()
    assert colab.colab_badge_url("notebooks/01_attention.ipynb") == (
        f"https://colab.research.google.com/github/{slug}/blob/{colab.BRANCH}/notebooks/01_attention.ipynb")
    assert colab.colab_badge_url(ROOT / "exercises" / "01_attention.ipynb").endswith("/exercises/01_attention.ipynb")
    url = colab.colab_badge_url("notebooks/a.ipynb", repo_url="https://github.com/me/fork.git", branch="dev")
    assert url == "https://colab.research.google.com/github/me/fork/blob/dev/notebooks/a.ipynb"
    with pytest.raises(ValueError):
        colab.colab_badge_url("notebooks/a.ipynb", repo_url="https://gitlab.com/me/fork")
    assert colab.colab_badge_markdown("notebooks/a.ipynb").startswith(f"[![Open In Colab]({colab.COLAB_BADGE_IMAGE})](")


def test_colab_links_command_on_a_fake_repo(tmp_path, capsys):
    root = _fake_repo(tmp_path)
    _write(v4.new_notebook(), root / "notebooks" / "01_a.ipynb")
    _write(v4.new_notebook(), root / "solutions" / "01_b.ipynb")
    assert sync.main(["--root", str(root), "setup-cells"]) == 0  # also writes exercises/01_b.ipynb
    capsys.readouterr()
    assert sync.main(["--root", str(root), "colab-links"]) == 0  # no README: prints the block
    assert sync.COLAB_BEGIN in capsys.readouterr().out and not (root / "README.md").exists()

    (root / "README.md").write_text("# Course\n\nIntro.\n", encoding="utf-8")
    assert sync.main(["--root", str(root), "check"]) == 1
    assert sync.main(["--root", str(root), "colab-links"]) == 0
    text = (root / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# Course\n\nIntro.\n\n" + sync.COLAB_BEGIN)
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert rows == [f"| [{p}]({p}) | {colab.colab_badge_markdown(p)} |" for p in ("notebooks/01_a.ipynb", "exercises/01_b.ipynb")]
    _write(v4.new_notebook(), root / "notebooks" / "02_c.ipynb")
    problems, _ = sync.sync_colab_links(root, check=True)
    assert problems and "out of date" in problems[0]
    assert sync.main(["--root", str(root), "check"]) == 1
    assert sync.main(["--root", str(root), "setup-cells", "colab-links", "check"]) == 0  # commands chain


def test_readme_colab_links_table_is_current():
    if not (ROOT / "README.md").is_file():
        pytest.skip("no README.md yet")
    problems, _ = sync.sync_colab_links(ROOT, check=True)
    assert problems == [], "run `python tools/sync_notebooks.py colab-links`: " + "; ".join(problems)


# --------------------------------------------------------------------------- nbval sanitizers


def test_nbval_sanitize_patterns_cover_what_varies():
    from nbval.plugin import get_sanitize_patterns

    patterns = dict(get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text(encoding="utf-8")))
    assert len(patterns) >= 6

    def clean(text):
        for regex, replace in patterns.items():
            text = re.sub(regex, replace, text)
        return text

    assert clean("<Block object at 0x7f3a2c1d9e50>") == clean("<Block object at 0x55d0c0ffee00>")
    assert clean("prefill 12.3 ms, decode 1.2 s, 850 µs") == clean("prefill 9.1 ms, decode 0.8 s, 901 µs")
    assert clean("100%|██████████| 30/30 [00:01<00:00, 25.01it/s, loss=2.31]") == clean(
        " 97%|█████████▋| 29/30 [00:02<00:00, 14.2it/s]")
    assert clean("course_lib 0.1.0 | device: cpu (2 threads)") == clean(
        "course_lib 0.1.0 | device: cuda (Tesla T4), autocast dtype float16")
    assert clean("1234.5 tokens/s") == clean("99 tokens/s")
    assert clean('  b) 4\nPredict first, then answer in code, e.g. course_lib.learner.quiz.check("x", "a").\n') == clean(
        '  b) 4\nPredict first, then answer in code with your letter: course_lib.learner.quiz.check("x", "<letter>")\n')
    assert clean("saved /tmp/tmpa1b2c3d4/ckpt.pt") == clean("saved /tmp/tmpzz99yy88/ckpt.pt")
    # `execute` stores paths into the notebook's folder as ./...; a live nbval run prints them absolute
    assert clean("/home/me/course/notebooks/data.tsv\n/srv/ci/solutions\n") == clean("./data.tsv\n.\n")
    # what must still be compared is left alone
    for stable in ("tensor([[ True, False],\n        [ True,  True]])", "loss 2.31 after 30 steps", "shape (2, 5, 64)"):
        assert clean(stable) == stable


# --------------------------------------------------------------------------- kernel start-up


def test_kernel_start_retries_only_a_kernel_that_died_at_start_up():
    # the repository's conftest.py by path: `import conftest` finds tests/conftest.py first
    spec = importlib.util.spec_from_file_location("repo_root_conftest", ROOT / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    KERNEL_DIED, start_kernel_with_retry = root_conftest.KERNEL_DIED, root_conftest.start_kernel_with_retry

    calls = []

    def flaky(**kwargs):
        calls.append(kwargs["stderr"])
        kwargs["stderr"].write("port already in use\n")
        if len(calls) < 3:
            raise RuntimeError(KERNEL_DIED)
        return "km", "kc"

    assert start_kernel_with_retry(flaky, attempts=3) == ("km", "kc") and len(calls) == 3

    calls.clear()
    with pytest.raises(RuntimeError, match="(?s)attempt 2 of 2.*port already in use"):
        start_kernel_with_retry(flaky, attempts=2)

    def broken(**kwargs):
        calls.append(1)
        raise RuntimeError("No such kernel named python3")

    calls.clear()
    with pytest.raises(RuntimeError, match="(?s)No such kernel.*attempt 1 of 3"):
        start_kernel_with_retry(broken)
    assert calls == [1]  # any other start-up error is not retried


def test_nbval_starts_kernels_through_the_retry():
    import nbval.kernel

    assert getattr(nbval.kernel.start_new_kernel, "_course_retry", False)


def test_dist_mode_is_in_the_configuration():
    """Plain `pytest -n 2` must keep a notebook's cells on one worker."""
    import tomllib

    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--dist loadfile" in addopts


def test_a_setup_cell_stub_is_replaced_not_left_beside_the_setup_cell():
    """An authoring stub ("# setup cell placeholder") takes the setup cell's place when it comes first, is
    removed when a setup cell precedes it, and `check` reports one left behind."""
    first = v4.new_notebook(cells=[v4.new_markdown_cell("# T"), v4.new_code_cell("# setup cell placeholder"),
                                   v4.new_code_cell("x = 1")])
    assert sync.apply_setup_cell(first) and sync.setup_cell_problem(first) is None
    assert [c.source for c in first.cells[1:]] == [SETUP, "x = 1"]
    after = v4.new_notebook(cells=[v4.new_code_cell(SETUP), v4.new_code_cell("# setup cell: generated"),
                                   v4.new_code_cell("x = 1")])
    assert "leftover setup-cell stub (cell 1)" in sync.setup_cell_problem(after)
    assert sync.apply_setup_cell(after) and [c.source for c in after.cells] == [SETUP, "x = 1"]
    assert sync.setup_cell_problem(after) is None
    kept = v4.new_notebook(cells=[v4.new_code_cell(SETUP), v4.new_code_cell("# the setup cell above installs it\nx = 1")])
    assert not sync.apply_setup_cell(kept) and len(kept.cells) == 2  # code that mentions it is not a stub

#!/usr/bin/env python
"""Keep the course notebooks consistent: setup cells, exercises, executed outputs, Colab links.

    python tools/sync_notebooks.py setup-cells            # first code cell of every notebook := the template (and nav)
    python tools/sync_notebooks.py exercises [--check]    # exercises/NAME.ipynb from solutions/NAME.ipynb
    python tools/sync_notebooks.py execute [--fast] [PATH ...]   # run in a fresh kernel, save outputs
    python tools/sync_notebooks.py colab-links            # README.md table of "Open in Colab" badges
    python tools/sync_notebooks.py nav                    # each notebook's badge + run-time header and next-steps footer
    python tools/sync_notebooks.py check                  # all of the above as checks; writes nothing

Conventions (see also course_lib/learner/colab.py):

* The setup cell is the first *code* cell (a Markdown title may come before it). Its text comes
  from ``course_lib.learner.colab.render_setup_cell()``; never edit it by hand.
* In ``solutions/``, a code region between a line ``# BEGIN SOLUTION`` and a line
  ``# END SOLUTION`` (same indentation, inside a function body) becomes, in ``exercises/``::

      # YOUR CODE HERE
      raise NotImplementedError("exercise not done yet")

  Markdown between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` (in one cell or
  spanning several Markdown cells) becomes ``*(Your answer here.)*``. Cells tagged
  ``solution-only`` are left out. Outputs are cleared and metadata normalised, so the output is
  byte-for-byte deterministic.
* ``execute`` runs each notebook top to bottom in a fresh ``python3`` kernel with the notebook's
  folder as working directory (``COURSE_FAST=1`` only with ``--fast``; ``COURSE_HEADLESS=1`` so
  quizzes print text instead of widgets), then numbers cells 1..n, drops timing metadata and
  widget state, replaces machine paths in text outputs, and refuses error outputs except in cells
  tagged ``raises-exception``. A full-mode run records its wall time in ``tools/notebook_runtimes.json``
  (with the machine and date), which the run-time line of the notebook's header shows.
* ``nav`` keeps two generated Markdown cells in every lesson and solution (exercises inherit them,
  re-pointed at themselves): a header under the title (Colab badge; run time once measured) and a
  footer at the end (the lesson's practice notebook, its appendices and the next lesson). The text comes
  from ``course_lib.learner.colab.render_header`` / ``render_footer``; never edit those cells by hand.
* An **appendix** is a notebook ``notebooks/A<n>_*.ipynb`` (engineering depth moved out of a lesson).
  Its notebook metadata names its lesson, ``{"course": {"appendix_to": "05_translator.ipynb"}}``: the
  lesson's footer links to it, its own footer links back to the lesson and on to the lesson after it,
  and it is not a step in the lesson sequence. It gets the setup cell and is executed and tested like a lesson.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import site
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # works from a plain checkout too (course_lib not installed)
    sys.path.insert(0, str(ROOT))

from course_lib.learner.colab import (  # noqa: E402
    FOOTER_MARKER,
    HEADER_MARKER,
    SETUP_CELL_MARKER,
    colab_badge_markdown,
    render_footer,
    render_header,
    render_setup_cell,
)

LESSON_DIR, SOLUTION_DIR, EXERCISE_DIR = "notebooks", "solutions", "exercises"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
SOLUTION_ONLY_TAG = "solution-only"
RAISES_TAG = "raises-exception"
SETUP_CELL_ID = "course-setup"
HEADER_CELL_ID, FOOTER_CELL_ID = "course-header", "course-footer"
RUNTIMES_FILE = "tools/notebook_runtimes.json"

CODE_STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise not done yet")')
MARKDOWN_STUB = "*(Your answer here.)*"
_CODE_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION[ \t]*$")
_CODE_END = re.compile(r"^(?P<indent>[ \t]*)# END SOLUTION[ \t]*$")
_CODE_MARKERISH = re.compile(r"^\s*#.*\b(BEGIN|END)[ _]SOLUTION\b", re.IGNORECASE)
_MD_MARKER = re.compile(r"<!--\s*(BEGIN|END) SOLUTION\s*-->")

COLAB_BEGIN = "<!-- COLAB-LINKS:BEGIN -->"
COLAB_END = "<!-- COLAB-LINKS:END -->"

CELL_TIMEOUT_S = 1800
SIZE_WARN_BYTES = 2 * 1024 * 1024
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_KEEP_CELL_METADATA = ("tags", "jupyter", "editable", "deletable", "slideshow")


class ExerciseError(ValueError):
    """A solution notebook that cannot be turned into an exercise (the message names notebook and cell)."""


# --------------------------------------------------------------------------- notebook files


def notebooks_in(folder: Path) -> list[Path]:
    """The notebooks directly inside ``folder``, sorted (checkpoints and hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook; cells of an nbformat >= 4.5 file that lack an id get a deterministic one
    (nbformat would invent random ids, which would make generated exercises differ on every run)."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if data.get("nbformat") == 4 and data.get("nbformat_minor", 0) >= 5:
        cells = data.get("cells", [])
        used = {c["id"] for c in cells if isinstance(c.get("id"), str)}
        stem = re.sub(r"[^A-Za-z0-9_-]", "-", Path(path).stem)[:48] or "cell"
        changed = False
        for i, cell in enumerate(cells):
            if not isinstance(cell.get("id"), str):
                new_id, n = f"{stem}-{i}", 0
                while new_id in used:
                    n += 1
                    new_id = f"{stem}-{i}-{n}"
                cell["id"] = new_id
                used.add(new_id)
                changed = True
        if changed:
            text = json.dumps(data)
    return nbformat.reads(text, as_version=4)


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The exact file text Jupyter would save (sorted keys, indent=1, UTF-8, trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that. Returns whether it wrote."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


# --------------------------------------------------------------------------- setup cells


def first_code_cell_index(nb) -> int | None:
    return next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)


def _new_code_cell(nb, source: str, preferred_id: str):
    cell = nbformat.v4.new_code_cell(source)
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        used = {c.get("id") for c in nb.cells}
        new_id, n = preferred_id, 0
        while new_id in used:  # deterministic, unlike nbformat's random ids
            n += 1
            new_id = f"{preferred_id}-{n}"
        cell["id"] = new_id
    else:
        cell.pop("id", None)
    return cell


def notebook_extras(nb) -> tuple[str, ...]:
    """Optional-dependency groups a notebook asks its setup cell to install on Colab
    (notebook metadata ``{"course": {"setup_extras": [...]}}``)."""
    return tuple(nb.metadata.get("course", {}).get("setup_extras", ()))


def _is_setup_stub(cell) -> bool:
    """A code cell holding one comment about the setup cell ("# setup cell placeholder"): a stub written
    while authoring, which the generated setup cell replaces."""
    lines = cell.source.strip().splitlines()
    return (cell.cell_type == "code" and len(lines) == 1 and lines[0].startswith("#")
            and "setup cell" in lines[0].lower() and not lines[0].startswith(SETUP_CELL_MARKER.split(":")[0]))


def apply_setup_cell(nb, source: str | None = None) -> bool:
    """Make the first code cell the setup cell; returns whether ``nb`` changed.

    Setup-cell stubs (:func:`_is_setup_stub`) after the first code cell are removed. A first code cell
    that starts with the setup marker, or is such a stub, is rewritten (outputs cleared, since they
    came from the old text); otherwise a new setup cell is inserted before it (or, in a notebook
    without code, after a leading Markdown title).
    """
    source = render_setup_cell(extras=notebook_extras(nb)) if source is None else source
    i = first_code_cell_index(nb)
    stubs = [j for j, c in enumerate(nb.cells) if j != i and _is_setup_stub(c)]
    for j in reversed(stubs):
        del nb.cells[j]
    if i is not None and nb.cells[i].source == source:
        return bool(stubs)
    if i is not None and (nb.cells[i].source.lstrip().startswith(SETUP_CELL_MARKER.split(":")[0])
                          or _is_setup_stub(nb.cells[i])):
        nb.cells[i].source = source
        nb.cells[i].outputs = []
        nb.cells[i].execution_count = None
        return True
    if i is None:
        i = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(i, _new_code_cell(nb, source, SETUP_CELL_ID))
    return True


def setup_cell_problem(nb) -> str | None:
    """Why ``nb``'s first code cell is not the current setup cell, or None when it is."""
    i = first_code_cell_index(nb)
    if i is None:
        return "has no code cell (expected the setup cell)"
    stubs = [j for j, c in enumerate(nb.cells) if j != i and _is_setup_stub(c)]
    if stubs:
        return f"a leftover setup-cell stub (cell {stubs[0]}) besides the setup cell"
    source = nb.cells[i].source
    if source == render_setup_cell(extras=notebook_extras(nb)):
        return None
    if source.lstrip().startswith(SETUP_CELL_MARKER.split(":")[0]):
        return f"setup cell (cell {i}) differs from course_lib/learner/colab.py's template"
    return f"first code cell (cell {i}) is not the setup cell"


def sync_setup_cells(root: Path, check: bool = False, folders=(LESSON_DIR, SOLUTION_DIR)) -> list[str]:
    """Rewrite (or, with ``check``, report) setup cells in ``folders``. Returns the problems/changes."""
    messages = []
    for folder in folders:
        for path in notebooks_in(root / folder):
            nb = read_notebook(path)
            if check:
                problem = setup_cell_problem(nb)
                if problem:
                    messages.append(f"{rel(path, root)}: {problem}")
            elif apply_setup_cell(nb):
                write_if_changed(path, notebook_text(nb))
                messages.append(f"{rel(path, root)}: setup cell updated")
    return messages


# --------------------------------------------------------------------------- exercises


_UNPARSED = object()


def _function_line_ranges(source: str) -> list[tuple[int, int]] | None:
    """(line after ``def``, last line) of every function in a code cell, or None if it does not parse."""
    # IPython magics and shell escapes are not Python; blank them out, keeping line numbers.
    lines = [
        (line[: len(line) - len(line.lstrip())] + "pass") if line.lstrip().startswith(("%", "!")) else line
        for line in source.split("\n")
    ]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    return [
        (node.lineno + 1, node.end_lineno)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def strip_code_solutions(source: str, where: str = "cell") -> str:
    """Replace every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region by the exercise stub.

    Raises ExerciseError (mentioning ``where``) on a region outside a function body, unbalanced or
    nested markers, mismatched indentation, or a malformed marker line.
    """
    lines = source.split("\n")
    functions = _UNPARSED
    out: list[str] = []
    open_indent: str | None = None
    open_line = 0
    for n, line in enumerate(lines, start=1):
        begin, end = _CODE_BEGIN.match(line), _CODE_END.match(line)
        if not begin and not end:
            if _CODE_MARKERISH.match(line):
                raise ExerciseError(
                    f"{where}, line {n}: malformed marker {line.strip()!r}; "
                    "write exactly '# BEGIN SOLUTION' or '# END SOLUTION' on a line of its own."
                )
            if open_indent is None:
                out.append(line)
            continue
        if begin:
            indent = begin["indent"]
            if open_indent is not None:
                raise ExerciseError(f"{where}, line {n}: '# BEGIN SOLUTION' inside the region opened on line {open_line}.")
            if indent == "":
                raise ExerciseError(
                    f"{where}, line {n}: '# BEGIN SOLUTION' at top level. Solution regions must be inside a "
                    "function body: the exercise replaces them with `raise NotImplementedError`, which at top "
                    "level would stop the unsolved notebook."
                )
            if functions is _UNPARSED:
                functions = _function_line_ranges(source)  # None when the cell does not parse
            if functions is not None and not any(first <= n <= last for first, last in functions):
                raise ExerciseError(
                    f"{where}, line {n}: '# BEGIN SOLUTION' is indented but not inside a function body "
                    "(a loop or `if` at top level runs when the cell runs, so the exercise's "
                    "`raise NotImplementedError` would stop the unsolved notebook). Move it into a function."
                )
            open_indent, open_line = indent, n
            out.extend(indent + stub for stub in CODE_STUB)
        else:
            if open_indent is None:
                raise ExerciseError(f"{where}, line {n}: '# END SOLUTION' without a '# BEGIN SOLUTION' above it.")
            if end["indent"] != open_indent:
                raise ExerciseError(
                    f"{where}, line {n}: '# END SOLUTION' is indented differently from its '# BEGIN SOLUTION' "
                    f"(line {open_line})."
                )
            open_indent = None
    if open_indent is not None:
        raise ExerciseError(f"{where}, line {open_line}: '# BEGIN SOLUTION' is never closed by '# END SOLUTION'.")
    return "\n".join(out)


def _clean_cell_metadata(cell) -> None:
    md = cell.get("metadata", {})
    cell["metadata"] = nbformat.NotebookNode({k: md[k] for k in _KEEP_CELL_METADATA if k in md and md[k]})


def normalized_metadata() -> dict:
    return {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}


NBVAL_CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def make_exercise(solution: nbformat.NotebookNode, name: str = "solution notebook") -> nbformat.NotebookNode:
    """The exercise notebook generated from a solution notebook (the input is not modified)."""
    nb = copy.deepcopy(solution)
    cells = []
    md_open_at: str | None = None  # where an unclosed Markdown region started
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id")
        where = f"{name}: cell {index}" + (f" (id {cell_id})" if cell_id else "")
        if SOLUTION_ONLY_TAG in _tags(cell):
            continue
        if cell.cell_type == "markdown":
            text, pos, started_open, had_marker = "", 0, md_open_at is not None, False
            for m in _MD_MARKER.finditer(cell.source):
                had_marker = True
                if m.group(1) == "BEGIN":
                    if md_open_at is not None:
                        raise ExerciseError(f"{where}: '<!-- BEGIN SOLUTION -->' inside the region opened at {md_open_at}.")
                    text += cell.source[pos:m.start()] + MARKDOWN_STUB
                    md_open_at = where
                else:
                    if md_open_at is None:
                        raise ExerciseError(f"{where}: '<!-- END SOLUTION -->' without a '<!-- BEGIN SOLUTION -->' before it.")
                    md_open_at = None
                pos = m.end()
            if md_open_at is None:
                text += cell.source[pos:]
            if started_open and not text.strip():
                continue  # wholly inside a region that spans cells
            if had_marker:
                cell.source = text.strip("\n")
        elif md_open_at is not None:
            raise ExerciseError(
                f"{where}: a {cell.cell_type} cell inside the Markdown solution region opened at {md_open_at}; "
                f"close the region first, or tag the cell '{SOLUTION_ONLY_TAG}'."
            )
        elif cell.cell_type == "code":
            cell.source = strip_code_solutions(cell.source, where)
            # An unsolved exercise prints "not implemented yet" where the solution printed a verdict,
            # so nbval must only run its cells (catching errors), not compare their outputs.
            cell.source = "\n".join(l for l in cell.source.split("\n") if l.strip() != NBVAL_CHECK_MARKER)
            cell.outputs = []
            cell.execution_count = None
        _clean_cell_metadata(cell)
        cells.append(cell)
    if md_open_at is not None:
        raise ExerciseError(f"{md_open_at}: '<!-- BEGIN SOLUTION -->' is never closed by '<!-- END SOLUTION -->'.")
    nb.cells = cells
    nb.metadata = nbformat.NotebookNode(normalized_metadata())
    apply_setup_cell(nb)
    return nb


@dataclass
class ExerciseReport:
    written: list[str]
    problems: list[str]  # errors, stale/missing files (in check mode), extra exercises


def sync_exercises(root: Path, check: bool = False) -> ExerciseReport:
    """Generate exercises/NAME.ipynb for every solutions/NAME.ipynb (``check``: only compare)."""
    report = ExerciseReport([], [])
    solutions = notebooks_in(root / SOLUTION_DIR)
    expected_names = {p.name for p in solutions}
    plan = None
    for path in solutions:
        target = root / EXERCISE_DIR / path.name
        try:
            exercise = make_exercise(read_notebook(path), rel(path, root))
        except ExerciseError as err:
            report.problems.append(f"error: {err}")
            continue
        if has_nav(exercise):  # the solution's badge and run time, re-pointed at the exercise
            plan = nav_plan(root) if plan is None else plan
            apply_nav(exercise, plan[f"{EXERCISE_DIR}/{path.name}"])
        text = notebook_text(exercise)
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            continue
        if check:
            state = "missing" if current is None else "stale"
            report.problems.append(f"{state}: {rel(target, root)} (from {rel(path, root)})")
        else:
            write_if_changed(target, text)
            report.written.append(rel(target, root))
    for extra in notebooks_in(root / EXERCISE_DIR):
        if extra.name not in expected_names:
            report.problems.append(
                f"extra: {rel(extra, root)} has no {SOLUTION_DIR}/{extra.name}; exercises are generated, "
                "so add the solution or delete the exercise"
            )
    return report


# --------------------------------------------------------------------------- navigation cells


def load_runtimes(root: Path) -> dict[str, dict]:
    """Measured full-mode run times, keyed by notebook path relative to the root ({} if none yet)."""
    path = root / RUNTIMES_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_runtime(root: Path, relpath: str, seconds: float) -> None:
    """Store a full-mode run's wall time, with the machine it ran on and the date."""
    from course_lib.bench import hardware_info

    info = hardware_info()
    machine = f"{info['cpu']}, {info['cpu_cores_usable']} cores" + (f", {info['gpu']}" if info.get("gpu") else "")
    runtimes = load_runtimes(root)
    runtimes[relpath] = {"seconds": round(seconds, 1), "machine": machine, "cores": info["cpu_cores_usable"],
                         "date": time.strftime("%Y-%m-%d"),
                         "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    text = json.dumps(dict(sorted(runtimes.items())), indent=1, ensure_ascii=False) + "\n"
    write_if_changed(root / RUNTIMES_FILE, text)


def notebook_title(nb, fallback: str) -> str:
    """The text of the notebook's first Markdown heading line (``# 03 · The causal decoder``)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            break
    return fallback


def _number(path: Path) -> str:
    return path.name.split("_", 1)[0]


_APPENDIX_NAME = re.compile(r"A\d+_")


def is_appendix(path: Path) -> bool:
    """``notebooks/A1_*.ipynb`` and the like: an appendix to a lesson, not a lesson of its own."""
    return _APPENDIX_NAME.match(Path(path).name) is not None


def appendix_lesson(nb) -> str | None:
    """The lesson file an appendix names in its metadata (``{"course": {"appendix_to": "05_x.ipynb"}}``)."""
    course = nb.metadata.get("course")
    return course.get("appendix_to") if isinstance(course, dict) else None


@dataclass
class NavCells:
    header: str
    footer: str | None


def nav_plan(root: Path) -> dict[str, NavCells]:
    """The header and footer every lesson, solution and exercise should carry, keyed by relative path.

    A lesson ``NN_*`` links to the practice notebook ``exercises/NN_*``, to its appendices and to the
    next lesson; an appendix links back to its lesson and on to the next one; a practice notebook links
    to the lesson after its own. Exercises show their solution's run time.
    """
    runtimes = load_runtimes(root)
    lessons = [p for p in notebooks_in(root / LESSON_DIR) if not is_appendix(p)]
    appendices = {p: appendix_lesson(read_notebook(p)) for p in notebooks_in(root / LESSON_DIR) if is_appendix(p)}
    solutions = notebooks_in(root / SOLUTION_DIR)
    titles = {p: notebook_title(read_notebook(p), p.stem) for p in [*lessons, *appendices, *solutions]}
    practice = {_number(p): p for p in solutions}

    def next_lesson(number: str):
        later = [p for p in lessons if _number(p) > number]
        return (f"{LESSON_DIR}/{later[0].name}", titles[later[0]]) if later else None

    plan = {}
    for path in lessons:
        relpath = f"{LESSON_DIR}/{path.name}"
        sol = practice.get(_number(path))
        exercise = (f"{EXERCISE_DIR}/{sol.name}", titles[sol]) if sol else None
        extras = [(f"{LESSON_DIR}/{a.name}", titles[a]) for a, owner in appendices.items() if owner == path.name]
        plan[relpath] = NavCells(render_header(relpath, runtimes.get(relpath), fast_mode_hint=path != lessons[0]),
                                 render_footer(relpath, exercise, next_lesson(_number(path)), appendices=extras))
    for path, owner in appendices.items():
        relpath, lesson = f"{LESSON_DIR}/{path.name}", root / LESSON_DIR / (owner or "")
        back = (f"{LESSON_DIR}/{lesson.name}", titles[lesson]) if lesson in titles else None
        plan[relpath] = NavCells(render_header(relpath, runtimes.get(relpath)),
                                 render_footer(relpath, None, next_lesson(_number(lesson)) if back else None, lesson=back))
    for path in solutions:
        sol_rel, ex_rel = f"{SOLUTION_DIR}/{path.name}", f"{EXERCISE_DIR}/{path.name}"
        after = next_lesson(_number(path))
        plan[sol_rel] = NavCells(render_header(sol_rel, runtimes.get(sol_rel)), render_footer(sol_rel, None, after))
        plan[ex_rel] = NavCells(render_header(ex_rel, runtimes.get(sol_rel), measured_as=sol_rel if sol_rel in runtimes else None),
                                render_footer(ex_rel, None, after))
    return plan


def _is_nav(cell, marker: str) -> bool:
    return cell.cell_type == "markdown" and cell.source.startswith(marker)


def _new_markdown_cell(nb, source: str, preferred_id: str):
    cell = nbformat.v4.new_markdown_cell(source)
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        used = {c.get("id") for c in nb.cells}
        new_id, n = preferred_id, 0
        while new_id in used:
            n += 1
            new_id = f"{preferred_id}-{n}"
        cell["id"] = new_id
    else:
        cell.pop("id", None)
    return cell


def apply_nav(nb, cells: NavCells) -> bool:
    """Put the header right under the title (or first, without a title) and the footer last
    (removed when there is none). Returns whether ``nb`` changed."""
    before = [(c.cell_type, c.source) for c in nb.cells]
    headers = [c for c in nb.cells if _is_nav(c, HEADER_MARKER)]
    if headers:
        headers[0].source = cells.header
        nb.cells = [c for c in nb.cells if c is headers[0] or not _is_nav(c, HEADER_MARKER)]
    else:
        at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ") else 0
        nb.cells.insert(at, _new_markdown_cell(nb, cells.header, HEADER_CELL_ID))
    footers = [c for c in nb.cells if _is_nav(c, FOOTER_MARKER)]
    nb.cells = [c for c in nb.cells if not _is_nav(c, FOOTER_MARKER)]
    if cells.footer is not None:
        footer = footers[0] if footers else _new_markdown_cell(nb, cells.footer, FOOTER_CELL_ID)
        footer.source = cells.footer
        nb.cells.append(footer)
    return [(c.cell_type, c.source) for c in nb.cells] != before


def has_nav(nb) -> bool:
    return any(_is_nav(c, HEADER_MARKER) for c in nb.cells)


def sync_nav(root: Path, check: bool = False, only: set[str] | None = None) -> list[str]:
    """Apply (or, with ``check``, verify) the navigation cells of lessons and solutions, and verify
    exercises (they are regenerated from their solutions). ``only``: relative paths to touch."""
    messages = []
    for relpath, cells in nav_plan(root).items():
        path = root / relpath
        generated = relpath.startswith(EXERCISE_DIR + "/")  # written by sync_exercises, which also reports it missing
        if (only is not None and relpath not in only) or (generated and not (check and path.is_file())):
            continue
        nb = read_notebook(path)
        if not apply_nav(nb, cells):
            continue
        if check:
            messages.append(f"{relpath}: navigation cells (badge, run time, next steps) out of date (run nav)")
            continue
        write_if_changed(path, notebook_text(nb))
        messages.append(f"{relpath}: navigation cells updated")
    return messages


# --------------------------------------------------------------------------- Colab links


def colab_table(root: Path) -> str:
    rows = ["| Notebook | Open in Colab |", "|---|---|"]
    for folder in (LESSON_DIR, EXERCISE_DIR):
        for path in notebooks_in(root / folder):
            relpath = f"{folder}/{path.name}"
            rows.append(f"| [{relpath}]({relpath.replace(' ', '%20')}) | {colab_badge_markdown(relpath)} |")
    if len(rows) == 2:
        rows.append("| *(no notebooks yet)* | |")
    return "\n".join(rows)


def colab_block(root: Path) -> str:
    return f"{COLAB_BEGIN}\n{colab_table(root)}\n{COLAB_END}"


def sync_colab_links(root: Path, check: bool = False) -> tuple[list[str], list[str]]:
    """Update (or check) README.md's Colab table. Returns (problems, notes)."""
    readme = root / "README.md"
    block = colab_block(root)
    if not readme.is_file():
        return [], [f"README.md does not exist; add this block where the Colab links should go:\n\n{block}\n"]
    text = readme.read_text(encoding="utf-8")
    n_begin, n_end = text.count(COLAB_BEGIN), text.count(COLAB_END)
    if n_begin == 0 and n_end == 0:
        if check:
            return [f"README.md lacks the {COLAB_BEGIN} ... {COLAB_END} block (run colab-links)"], []
        write_if_changed(readme, text.rstrip("\n") + "\n\n" + block + "\n")
        return [], [f"README.md: appended the Colab links block at the end (move the whole block where it belongs)"]
    start, end = text.find(COLAB_BEGIN), text.find(COLAB_END)
    if n_begin != 1 or n_end != 1 or end < start:
        return [f"README.md must hold exactly one {COLAB_BEGIN} followed by one {COLAB_END}"], []
    new_text = text[:start] + block + text[end + len(COLAB_END):]
    if new_text == text:
        return [], []
    if check:
        return ["README.md: the Colab links table is out of date (run colab-links)"], []
    write_if_changed(readme, new_text)
    return [], ["README.md: Colab links table updated"]


# --------------------------------------------------------------------------- execution


def path_replacements(root: Path, nb_dir: Path) -> list[tuple[re.Pattern, str]]:
    """(pattern, replacement) pairs that turn machine paths in outputs into portable text."""
    pairs: list[tuple[str, str]] = []
    nb_dir, root = nb_dir.resolve(), root.resolve()
    pairs.append((str(nb_dir), "."))
    try:
        nb_dir.relative_to(root)
        pairs.append((str(root), os.path.relpath(root, nb_dir)))
    except ValueError:
        pairs.append((str(root), "<repo>"))
    sites = set(site.getsitepackages()) | {site.getusersitepackages()}
    pairs += [(str(Path(s).resolve()), "<site-packages>") for s in sites if s]
    pairs += [(os.path.realpath(sys.prefix), "<python>"), (os.path.realpath(sys.base_prefix), "<python>")]
    home = str(Path.home().resolve())
    if home not in ("/", ""):
        pairs.append((home, "~"))
    tmp = os.path.realpath(tempfile.gettempdir())
    out: list[tuple[re.Pattern, str]] = []
    seen = set()
    for path, repl in sorted(pairs, key=lambda p: -len(p[0])):
        if path in seen or path in ("/", ""):
            continue
        seen.add(path)
        out.append((re.compile(re.escape(path) + r"(?![\w.-])"), repl))
    # temporary directories: /tmp/tmpab12cd34/x -> <tmp>/x
    for t in dict.fromkeys([tmp, "/tmp", "/var/tmp"]):
        out.append((re.compile(r"(?:/private)?" + re.escape(t) + r"(?:/tmp[\w-]{4,})?(?![\w.-])"), "<tmp>"))
    return out


def scrub_text(text: str, replacements) -> str:
    for pattern, repl in replacements:
        text = pattern.sub(lambda _m, r=repl: r, text)
    return text


def _scrub_output(output, replacements) -> None:
    if output.get("output_type") == "stream":
        output["text"] = scrub_text(output.get("text", ""), replacements)
    elif output.get("output_type") == "error":
        output["evalue"] = scrub_text(output.get("evalue", ""), replacements)
        output["traceback"] = [scrub_text(t, replacements) for t in output.get("traceback", [])]
    else:
        data = output.get("data", {})
        for mime, value in list(data.items()):
            if mime.startswith("text/") and isinstance(value, str):
                data[mime] = scrub_text(value, replacements)
            elif mime.startswith("text/") and isinstance(value, list):
                data[mime] = [scrub_text(v, replacements) for v in value]


def postprocess_executed(nb, root: Path, nb_dir: Path, name: str) -> list[str]:
    """Tidy an executed notebook in place. Returns error descriptions (error outputs in untagged cells)."""
    errors = []
    replacements = path_replacements(root, nb_dir)
    count = 0
    for index, cell in enumerate(nb.cells):
        md = cell.setdefault("metadata", nbformat.NotebookNode())
        md.pop("execution", None)
        md.pop("ExecuteTime", None)
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") in ("display_data", "execute_result"):
                if WIDGET_MIME in output.get("data", {}) or not output.get("data"):
                    continue  # a widget (tqdm bar, quiz) is dead without its state; its text repr is noise
                if output.get("output_type") == "execute_result":
                    output["execution_count"] = cell.execution_count
            if output.get("output_type") == "error" and RAISES_TAG not in _tags(cell):
                errors.append(f"{name}: cell {index} stored an error ({output.get('ename')}: "
                              f"{output.get('evalue')}) but is not tagged '{RAISES_TAG}'")
            _scrub_output(output, replacements)
            outputs.append(output)
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    if isinstance(nb.metadata.get("language_info"), dict):
        nb.metadata["language_info"].pop("version", None)  # machine-specific; keeps diffs quiet
    return errors


#: nbclient's message when a kernel exits before answering; the only start-up failure retried.
KERNEL_DIED = "Kernel died before replying to kernel_info"
KERNEL_START_ATTEMPTS = 3


def kernel_environment(fast: bool) -> dict[str, str]:
    """Environment changes for the kernels `execute` starts (they inherit this process's environment)."""
    return {"COURSE_FAST": "1" if fast else "0", "COURSE_HEADLESS": "1", "PYTHONHASHSEED": "0"}


def execute_notebook(path: Path, root: Path, fast: bool = False, timeout: int = CELL_TIMEOUT_S,
                     kernel_name: str = "python3") -> tuple[float, list[str]]:
    """Run ``path`` top to bottom in a fresh kernel and save it in place (only if it ran cleanly).

    Returns (wall seconds, problems). A cell error outside a ``raises-exception`` cell is a problem
    and leaves the file untouched.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = path.resolve()
    name = rel(path, root)
    nb = read_notebook(path)
    saved_env = {k: os.environ.get(k) for k in (*kernel_environment(fast), "MPLBACKEND")}
    os.environ.update(kernel_environment(fast))
    os.environ.pop("MPLBACKEND", None)  # let ipykernel pick the inline backend so figures are saved
    client = NotebookClient(
        nb,
        timeout=timeout,
        startup_timeout=180,
        kernel_name=kernel_name,
        allow_errors=False,
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                client.execute()
                break
            except RuntimeError as err:  # retry only a kernel that died at start-up (port race)
                if KERNEL_DIED not in str(err) or attempt == KERNEL_START_ATTEMPTS:
                    raise
                print(f"{name}: kernel died at start-up (attempt {attempt}); retrying", file=sys.stderr)
    except CellExecutionError as err:
        return time.perf_counter() - start, [f"{name}: a cell raised (file left unchanged):\n{err}"]
    except Exception as err:  # noqa: BLE001 - timeouts, dead kernels: report and go on
        return time.perf_counter() - start, [f"{name}: execution failed (file left unchanged): {type(err).__name__}: {err}"]
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    wall = time.perf_counter() - start
    problems = postprocess_executed(nb, root, path.parent, name)
    if problems:
        return wall, [p + " (file left unchanged)" for p in problems]
    text = notebook_text(nb)
    write_if_changed(path, text)
    size = len(text.encode("utf-8"))
    if size > SIZE_WARN_BYTES:
        print(f"WARNING: {name} is {size / 2**20:.1f} MB (> {SIZE_WARN_BYTES / 2**20:.0f} MB); "
              "shrink figures or outputs", file=sys.stderr)
    return wall, []


# --------------------------------------------------------------------------- commands


def _print_all(lines, stream=None) -> None:
    for line in lines:
        print(line, file=stream or sys.stdout)


def cmd_setup_cells(root: Path) -> int:
    changes = sync_setup_cells(root) + sync_nav(root)  # the nav cells' badges name the repository too
    _print_all(changes)
    report = sync_exercises(root)
    _print_all(f"{p}: written" for p in report.written)
    _print_all(report.problems, sys.stderr)
    if not changes and not report.written:
        print("setup cells: all up to date")
    return 1 if report.problems else 0


def cmd_exercises(root: Path, check: bool) -> int:
    report = sync_exercises(root, check=check)
    _print_all(f"{p}: written" for p in report.written)
    _print_all(report.problems, sys.stderr)
    if not report.written and not report.problems:
        print(f"exercises: {len(notebooks_in(root / SOLUTION_DIR))} in sync")
    return 1 if report.problems else 0


def cmd_colab_links(root: Path) -> int:
    problems, notes = sync_colab_links(root)
    _print_all(notes)
    _print_all(problems, sys.stderr)
    if not problems and not notes:
        print("README.md: Colab links up to date")
    return 1 if problems else 0


def cmd_nav(root: Path) -> int:
    changes = sync_nav(root)
    _print_all(changes)
    report = sync_exercises(root)
    _print_all(f"{p}: written" for p in report.written)
    _print_all(report.problems, sys.stderr)
    if not changes and not report.written:
        print("navigation cells: all up to date")
    return 1 if report.problems else 0


def cmd_check(root: Path) -> int:
    problems = sync_setup_cells(root, check=True, folders=(LESSON_DIR, SOLUTION_DIR, EXERCISE_DIR))
    problems += sync_exercises(root, check=True).problems
    problems += sync_nav(root, check=True)
    colab_problems, notes = sync_colab_links(root, check=True)
    problems += colab_problems
    for note in notes:
        print(f"note: {note}")
    _print_all(problems, sys.stderr)
    n = sum(len(notebooks_in(root / d)) for d in (LESSON_DIR, SOLUTION_DIR, EXERCISE_DIR))
    print(f"check: {n} notebooks, {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_execute(root: Path, paths: list[str], fast: bool, timeout: int) -> int:
    if paths:
        targets = [Path(p).resolve() for p in paths]
    else:
        targets = notebooks_in(root / LESSON_DIR) + notebooks_in(root / SOLUTION_DIR)
    problems = []
    for path in targets:
        if not path.is_file() or path.suffix != ".ipynb":
            problems.append(f"{path}: not a notebook file")
            continue
        if path.parent == (root / EXERCISE_DIR).resolve():
            problems.append(f"{rel(path, root)}: exercises are generated from solutions/; execute the solution instead")
            continue
        print(f"executing {rel(path, root)} ({'fast' if fast else 'full'} mode) ...", flush=True)
        wall, errs = execute_notebook(path, root, fast=fast, timeout=timeout)
        print(f"  {rel(path, root)}: {wall:.1f} s" + ("  FAILED" if errs else ""), flush=True)
        problems += errs
        if not errs and not fast:
            record_runtime(root, rel(path, root), wall)  # a full run: the header's run-time line shows it
            _print_all(sync_nav(root, only={rel(path, root)}))
    if any(p.parent == (root / SOLUTION_DIR).resolve() for p in targets):
        report = sync_exercises(root)
        _print_all(f"{p}: written" for p in report.written)
        problems += report.problems
    _print_all(problems, sys.stderr)
    return 1 if problems else 0


COMMANDS = ("setup-cells", "exercises", "execute", "colab-links", "nav", "check")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Several commands may follow each other: sync_notebooks.py setup-cells colab-links",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup-cells", help="rewrite the setup cell and navigation cells of every notebook, then regenerate exercises")
    p_ex = sub.add_parser("exercises", help="generate exercises/ from solutions/")
    p_ex.add_argument("--check", action="store_true", help="write nothing; exit 1 if any exercise is stale/missing/extra")
    p_run = sub.add_parser("execute", help="run notebooks in a fresh kernel and save their outputs")
    p_run.add_argument("--fast", action="store_true", help="COURSE_FAST=1 (short schedules); default is full mode")
    p_run.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell (default %(default)s)")
    p_run.add_argument("paths", nargs="*", help="notebooks to run (default: notebooks/ and solutions/)")
    sub.add_parser("colab-links", help="rewrite the Colab links table in README.md")
    sub.add_parser("nav", help="rewrite each notebook's header (Colab badge, run time) and footer (next steps)")
    sub.add_parser("check", help="run every consistency check; write nothing")
    return parser


def run_command(args) -> int:
    root = args.root.resolve()
    if args.command == "setup-cells":
        return cmd_setup_cells(root)
    if args.command == "exercises":
        return cmd_exercises(root, args.check)
    if args.command == "execute":
        return cmd_execute(root, args.paths, args.fast, args.timeout)
    if args.command == "colab-links":
        return cmd_colab_links(root)
    if args.command == "nav":
        return cmd_nav(root)
    return cmd_check(root)


def main(argv: list[str] | None = None) -> int:
    """Run one or more commands in order; exit status 1 if any of them reported a problem."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    starts = [i for i, token in enumerate(argv) if token in COMMANDS]
    if len(starts) <= 1:
        return run_command(parser.parse_args(argv))
    global_opts = argv[: starts[0]]
    chunks = [argv[a:b] for a, b in zip(starts, starts[1:] + [len(argv)])]
    parsed = [parser.parse_args(global_opts + chunk) for chunk in chunks]  # all parse before any runs
    return max(run_command(args) for args in parsed)


if __name__ == "__main__":
    sys.exit(main())

"""The test suite runs practice notebooks (solutions/, exercises/) in full mode and lessons in fast mode.

Checked the way nbval meets it: a pytest run, in a scratch repository with this conftest.py, of one
notebook per folder whose cell asserts the COURSE_FAST its kernel was started with.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _notebook_expecting(folder: Path, value: str) -> None:
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import os\nassert os.environ['COURSE_FAST'] == {value!r}, os.environ['COURSE_FAST']")]
    nbformat.write(nb, folder / "probe.ipynb")


def test_practice_notebooks_run_in_full_mode_and_lessons_in_fast_mode(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    _notebook_expecting(tmp_path / "notebooks", "1")
    _notebook_expecting(tmp_path / "solutions", "0")
    _notebook_expecting(tmp_path / "exercises", "0")
    # as CI starts it: COURSE_FAST unset (this process's conftest has set it)
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_FAST", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax",
         "--nbval-current-env", "notebooks", "solutions", "exercises"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]

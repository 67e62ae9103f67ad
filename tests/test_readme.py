"""The README's quickstart is what a learner runs and what CI runs.

Its ```bash blocks are, in order: the environment (a venv line and a conda line), 1. install and
open the course in JupyterLab, 2. install and run the test suite (verbatim in .ci/run). The
JupyterLab command is started here exactly as written, and its server must show the whole
repository (exercises/ and solutions/ included), not only the opened notebook's folder.
"""
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quickstart() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def _quickstart_blocks() -> list[list[str]]:
    """Each ```bash block of the quickstart as its command lines (comments and blanks dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", _quickstart(), flags=re.S)
    return [[line for line in b.splitlines() if line.strip() and not line.startswith("#")] for b in blocks]


def _open_course_command() -> str:
    """The part of step 1 that starts JupyterLab (after the install)."""
    (line,) = _quickstart_blocks()[1]
    (command,) = [part.strip() for part in line.split("&&") if "jupyter lab" in part]
    return command


def test_quickstart_is_an_environment_then_two_commands():
    env, open_course, run_tests = _quickstart_blocks()
    assert len(env) == 2 and env[0].startswith("python -m venv ") and "activate" in env[0], env
    assert env[1].startswith("conda env create -f environment.yml && conda activate "), env
    assert len(open_course) == 1 and 'pip install -e ".[course]"' in open_course[0]
    assert "--ServerApp.root_dir=. notebooks/00_start_here.ipynb" in _open_course_command()  # root = the repository
    assert len(run_tests) == 1 and "pytest" in run_tests[0]


def test_conda_line_activates_the_environment_it_creates():
    name = re.search(r"^name:\s*(\S+)", (ROOT / "environment.yml").read_text(encoding="utf-8"), flags=re.M)[1]
    assert _quickstart_blocks()[0][1].split("conda activate ", 1)[1].split()[0] == name


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _quickstart_blocks()[2][0] in [line.strip() for line in ci]


def test_cpu_torch_hint_comes_after_the_environment_and_before_the_first_install():
    quick = _quickstart()
    assert quick.index("python -m venv") < quick.index("download.pytorch.org/whl/cpu") < quick.index('pip install -e ".[course]"')


def test_ci_runs_the_suite_with_an_empty_home():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for var in ("HOME", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "XDG_CACHE_HOME"):
        assert f"export {var}=" in ci or f" {var}=" in ci, var
    assert ci.index('export HOME="$FRESH_HOME"') < ci.index("pytest")


def test_ci_installs_cpu_torch_before_the_package():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("torch==2.13.0") < ci.index('-e ".[dev')


# ------------------------------------------------------------------ JupyterLab as the README starts it

STARTUP_TIMEOUT_S = 60


def _get_json(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _server_info(runtime_dir: Path, proc: subprocess.Popen, log: Path) -> dict:
    """The server's runtime file (port, token, root_dir), once it answers; fails with the server's log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        info_file = runtime_dir / f"jpserver-{proc.pid}.json"
        if info_file.is_file():
            try:
                info = json.loads(info_file.read_text())
                _get_json(f"http://127.0.0.1:{info['port']}/api/status", info["token"])
                return info
            except (ValueError, KeyError, OSError):
                pass  # file half written or server not answering yet
        time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_jupyterlab_started_as_the_readme_says_serves_the_whole_repository(tmp_path):
    pytest.importorskip("jupyterlab")
    argv = shlex.split(_open_course_command())
    assert argv[:4] == ["python", "-m", "jupyter", "lab"], argv
    token = secrets.token_hex(16)
    # Only what a test needs on top of the README's command: no browser, a free port, a known token.
    argv = [sys.executable, *argv[1:], "--no-browser", "--ServerApp.port=0", f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI often run as root; Jupyter refuses that otherwise
    runtime_dir = tmp_path / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime_dir), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = tmp_path / "jupyterlab.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    info = None
    try:
        info = _server_info(runtime_dir, proc, log)
        base = f"http://127.0.0.1:{info['port']}"
        root = _get_json(f"{base}/api/contents", token)
        folders = {item["name"] for item in root["content"] if item["type"] == "directory"}
        assert {"notebooks", "exercises", "solutions"} <= folders, (info["root_dir"], sorted(folders))
        # the notebook the README opens lies under that root, and is the one JupyterLab opens
        assert _get_json(f"{base}/api/contents/notebooks/00_start_here.ipynb?content=0", token)["type"] == "notebook"
        (opener,) = runtime_dir.glob(f"jpserver-file-to-run-{proc.pid}-open.html")
        assert "/lab/tree/notebooks/00_start_here.ipynb" in opener.read_text()
    finally:
        if info is not None:
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{info['port']}/api/shutdown", method="POST",
                    headers={"Authorization": f"token {token}"}), timeout=5)
            except OSError:  # already gone: terminate below
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_readme_lesson_table_claims_match_the_ledger():
    """The README's "claims tested" column says what course_lib.lessons.ledger.CLAIM_LESSONS says (one source)."""
    from course_lib.lessons.ledger import claims_by_lesson

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d\d) \| [^\n]*\| ([0-9, ]+) \|$", text, flags=re.M))
    expected = {lesson: ", ".join(map(str, claims)) for lesson, claims in claims_by_lesson().items()}
    assert {k: rows.get(k) for k in expected} == expected

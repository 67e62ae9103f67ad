"""The README's quickstart is what CI runs: the test command must appear verbatim in .ci/run."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_exactly_two_commands():
    cmds = _quickstart_commands()
    assert len(cmds) == 2, cmds
    assert "jupyter lab notebooks/00_start_here.ipynb" in cmds[0]  # root = the repository
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _quickstart_commands()[1] in [line.strip() for line in ci]


def test_cpu_torch_hint_comes_before_the_first_install():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quickstart", 1)[1]
    assert quick.index("download.pytorch.org/whl/cpu") < quick.index('pip install -e ".[course]"')


def test_ci_runs_the_suite_with_an_empty_home():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for var in ("HOME", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "XDG_CACHE_HOME"):
        assert f"export {var}=" in ci or f" {var}=" in ci, var
    assert ci.index('export HOME="$FRESH_HOME"') < ci.index("pytest")


def test_ci_installs_cpu_torch_before_the_package():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("torch==2.13.0") < ci.index('-e ".[dev')

"""Where lesson 08 reads the claims ledger: the repository's results/claims when it exists, else the copy
a regular install of course_lib carries as the package course_lib.claims_results (Colab)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course_lib.lessons import ledger

ROOT = Path(__file__).resolve().parents[1]


def _folders(monkeypatch, tmp_path):
    repo, shipped = tmp_path / "repo" / "results" / "claims", tmp_path / "site" / "course_lib" / "claims_results"
    monkeypatch.setattr(ledger, "RESULTS_FOLDERS", (repo, shipped))
    return repo, shipped


def test_the_shipped_copy_is_read_when_the_repository_folder_is_absent(monkeypatch, tmp_path):
    repo, shipped = _folders(monkeypatch, tmp_path)
    ledger.record_claim(2, "supported", "shipped evidence", lesson="03_decoder_clm", section="1.", save=True, folder=shipped)
    assert ledger.results_dir() == shipped
    assert [e["evidence"] for e in ledger.load_ledger()[2]] == ["shipped evidence"]
    # a learner's full-mode rerun of one lesson replaces that lesson's shipped file and keeps the others
    ledger.record_claim(5, "no clear difference", "shipped 02", lesson="02_encoder_mlm", section="1.", save=True, folder=shipped)
    ledger.record_claim(2, "nuanced", "my own run", lesson="03_decoder_clm", section="1.", save=True)
    assert not repo.exists()
    saved = ledger.load_ledger()
    assert [e["evidence"] for e in saved[2]] == ["my own run"] and [e["evidence"] for e in saved[5]] == ["shipped 02"]


def test_the_repository_folder_wins_when_it_exists(monkeypatch, tmp_path):
    repo, shipped = _folders(monkeypatch, tmp_path)
    ledger.record_claim(2, "supported", "shipped", lesson="03_decoder_clm", section="1.", save=True, folder=shipped)
    ledger.record_claim(2, "nuanced", "repository", lesson="03_decoder_clm", section="1.", save=True, folder=repo)
    assert ledger.results_dir() == repo
    assert [e["evidence"] for e in ledger.load_ledger()[2]] == ["repository"]


def test_with_neither_folder_a_run_creates_the_repository_one_and_the_ledger_is_empty(monkeypatch, tmp_path):
    repo, _ = _folders(monkeypatch, tmp_path)
    assert ledger.results_dir() == repo
    assert all(entries == [] for entries in ledger.load_ledger().values())
    ledger.record_claim(1, "supported", "first run", lesson="02_encoder_mlm", section="1.", save=True)
    assert (repo / "02_encoder_mlm.json").is_file()


def test_the_default_folders_are_the_repository_then_where_an_install_puts_the_package():
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "course_lib.claims_results" in setup["packages"]
    assert setup["package-dir"]["course_lib.claims_results"] == "results/claims"
    assert setup["package-data"]["course_lib.claims_results"] == ["*.json"]
    assert ledger.RESULTS_FOLDERS == (ROOT / "results" / "claims", ROOT / "course_lib" / "claims_results")
    assert ledger.results_dir() == ROOT / "results" / "claims"  # a checkout reads its own results


def test_a_regular_install_carries_the_ledger_and_reads_it(tmp_path):
    """Build a wheel from a copy of the sources, install it into a bare folder, and load the ledger from there."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "course_lib", "benchmarks/results", "results/claims"):
        target = src / name
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, target)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "whl"), str(src)], check=True)
    (wheel,) = (tmp_path / "whl").glob("*.whl")
    shipped = {Path(n).name for n in zipfile.ZipFile(wheel).namelist() if n.startswith("course_lib/claims_results/")}
    assert shipped == {p.name for p in (ROOT / "results" / "claims").glob("*.json")} and shipped
    subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    probe = ("import json, course_lib; from course_lib.lessons.ledger import load_ledger, results_dir; "
             "print(json.dumps([course_lib.__file__, str(results_dir()), sum(map(len, load_ledger().values()))]))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, cwd=tmp_path).stdout
    module, folder, entries = json.loads(out.splitlines()[-1])
    assert Path(module).is_relative_to(tmp_path / "site") and folder == str(tmp_path / "site" / "course_lib" / "claims_results")
    assert entries == sum(len(json.loads(p.read_text())) for p in (ROOT / "results" / "claims").glob("*.json"))

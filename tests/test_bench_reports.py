"""Saved benchmark reports, as lesson 06 reads them: from the repository, from the copy a regular
install of course_lib carries (Colab), or one line saying what is missing and why."""
from pathlib import Path

from course_lib import bench

ROOT = Path(__file__).resolve().parents[1]


def _save(folder: Path, slug: str, value: float) -> None:
    bench.save_report({"slug": slug, "value": value}, folder, markdown=f"# {slug}\n")


def test_saved_reports_round_trip_from_the_first_folder_that_has_any(tmp_path, capsys):
    empty, first, second = tmp_path / "empty", tmp_path / "first", tmp_path / "second"
    empty.mkdir()
    _save(first, "xeon", 2.0)
    _save(first, "latency-xeon", 1.0)
    _save(second, "other", 3.0)
    capsys.readouterr()
    reports = bench.saved_reports((tmp_path / "absent", empty, first, second))
    assert list(reports) == ["latency-xeon", "xeon"]  # name order, .md files ignored
    assert reports["xeon"] == {"slug": "xeon", "value": 2.0}
    assert capsys.readouterr().out == ""


def test_saved_reports_without_any_say_what_is_missing_in_one_line(tmp_path, capsys):
    assert bench.saved_reports((tmp_path / "absent", tmp_path)) == {}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "benchmarks/results/" in out and "run_benchmarks.py" in out


def test_the_repository_results_are_found_first():
    assert bench.RESULTS_FOLDERS[0] == ROOT / "benchmarks" / "results"
    assert set(bench.saved_reports()) == {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")}


# ------------------------------------------------------------------ the copy a regular install carries


def _pyproject_setuptools() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_pyproject_lists_every_package_and_maps_the_results_folder():
    config = _pyproject_setuptools()
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "course_lib").rglob("__init__.py")}
    shipped_data = {"course_lib.benchmark_results", "course_lib.claims_results"}  # tests/test_ledger_shipped.py: the ledger
    assert set(config["packages"]) == on_disk | shipped_data, "a new subpackage must be listed"
    assert config["package-dir"]["course_lib.benchmark_results"] == "benchmarks/results"
    assert bench.RESULTS_FOLDERS[1] == ROOT / "course_lib" / "benchmark_results"  # where that install puts it
    # that an install really carries them: tests/test_notebook_tooling.py's Colab setup-cell install test


"""Build the course website, offline, from what is committed: ``python tools/build_site.py``.

Stages the pages into ``_site/src`` (git-ignored), builds them with Sphinx + MyST-NB
(``site/conf.py``) into ``_site/html``, then checks the result:

* every Sphinx warning fails the build unless a line of ``site/warnings-allowlist.txt`` matches it;
* every internal link, image, script and stylesheet resolves, and so does every ``#anchor``;
  nothing is loaded from the network (MathJax and its fonts are bundled in ``site/_static``); external
  links are listed in ``_site/external-links.txt``, never fetched.

Notebooks are rendered from their saved outputs; nothing is executed. Needs the ``site`` extra:
``python -m pip install -e ".[site]"``. Open ``_site/html/index.html`` in a browser afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # course_lib from this checkout
CONF_DIR = ROOT / "site"
DEFAULT_OUT = ROOT / "_site"
NOTEBOOK_FOLDERS = ("notebooks", "exercises", "solutions")  # staged under the same names
RESULTS = ROOT / "benchmarks" / "results"
ALLOWLIST = CONF_DIR / "warnings-allowlist.txt"
#: README sections left off the home page (for maintainers, or about the site itself).
HOME_SKIP = ("Fast mode", "For maintainers", "Read the course as a website")


# --------------------------------------------------------------------------- what the site holds


def notebooks(folder: str) -> list[Path]:
    """The notebooks of ``notebooks/``, ``exercises/`` or ``solutions/``, in file-name order."""
    return sorted((ROOT / folder).glob("*.ipynb"))


def library_modules() -> list[str]:
    """Every public module of course_lib (dotted names, packages included, ``_private`` ones not)."""
    names = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def results_files() -> list[Path]:
    """The committed benchmark results (``.md`` tables and their ``.json`` data)."""
    return sorted(p for p in RESULTS.iterdir() if p.suffix in (".md", ".json"))


def notebook_title(path: Path) -> str:
    """The first Markdown heading of a notebook (its page title on the site)."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError(f"{path.relative_to(ROOT)} has no '# title' heading in a Markdown cell; add one.")


# --------------------------------------------------------------------------- staging


def _toctree(caption: str, entries: list[str]) -> str:
    return "\n".join(["```{toctree}", f":caption: {caption}", ":hidden:", "", *entries, "```", ""])


def home_page() -> str:
    """The README (less the maintainers' sections), with a local Colab badge and the site's navigation."""
    from course_lib.learner.colab import COLAB_BADGE_IMAGE

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.split(r"(?m)^(?=## )", text)
    kept = [s for s in sections if not any(s.startswith(f"## {skip}") for skip in HOME_SKIP)]
    text = "".join(kept).replace(COLAB_BADGE_IMAGE, "_assets/colab-badge.svg")
    pages = [p.relative_to(ROOT).with_suffix("").as_posix() for p in notebooks("notebooks")]
    appendices = [p for p in pages if re.match(r"A\d+_", p.split("/")[-1])]  # A1_*: a lesson's engineering appendix
    lessons = [p for p in pages if p not in appendices]
    exercises = [p.relative_to(ROOT).with_suffix("").as_posix() for p in notebooks("exercises")]
    solutions = [f"Solution: {notebook_title(p)} <{p.relative_to(ROOT).with_suffix('').as_posix()}>"
                 for p in notebooks("solutions")]
    nav = [
        _toctree("Lessons", lessons),
        *([_toctree("Appendices", appendices)] if appendices else []),
        _toctree("Exercises", exercises),
        _toctree("Solutions", solutions),
        _toctree("Results", ["claims", "benchmarks/index"]),
        _toctree("Reference", ["api/index", "troubleshooting"]),
    ]
    return text.rstrip() + "\n\n" + "\n".join(nav)


def api_pages() -> dict[str, str]:
    """``api/index.rst`` (the package docstring and the module list) and one page per module.

    reStructuredText, not Markdown: autodoc writes reST, and the docstrings are reST."""
    modules = library_modules()

    def title(text: str) -> str:
        return f"{text}\n{'=' * len(text)}\n"

    pages = {"api/index.rst": "\n".join([
        title("Library reference"),
        "One page per module of ``course_lib``, generated from its docstrings.", "",
        ".. automodule:: course_lib", "   :no-members:", "",
        ".. toctree::", "   :maxdepth: 1", "", *[f"   {m}" for m in modules], ""])}
    for name in modules:
        pages[f"api/{name}.rst"] = f"{title(name)}\n.. automodule:: {name}\n"
    return pages


def claims_page() -> str:
    """The claims ledger of lesson 08, computed from the committed ``results/claims/*.json``."""
    from course_lib.lessons.ledger import COMBINE_RULE, VERDICTS, load_ledger, render_ledger

    lesson08 = next((p for p in notebooks("notebooks") if p.name.startswith("08_")), None)
    table = render_ledger(load_ledger())
    # The ledger links lesson to lesson (``05_translator.ipynb#...``); from the site root they live in notebooks/.
    table = re.sub(r"\]\((\d\d_[^)/]*?\.ipynb)", r"](notebooks/\1", table)
    source = f"[lesson 08](notebooks/{lesson08.name})" if lesson08 else "lesson 08"
    return "\n".join([
        "---", "html_theme.sidebar_secondary.remove: true", "---", "",  # the table needs the width
        "# The claims ledger", "",
        f"Claims about the three families, each put to an experiment. The verdicts below are the ones the "
        f"lessons computed and saved in `results/claims/`; {source} reads the same files and explains how to "
        "read them.", "",
        "## Verdicts", "", "A verdict is one of: " + ", ".join(f"*{v}*" for v in VERDICTS) + ".", "",
        COMBINE_RULE, "",
        "## The ledger", "", "````{container} ledger", table, "````", ""])


def benchmark_pages() -> dict[str, str]:
    """One page per results table, its JSON data linked from it; an index page listing them all."""
    pages: dict[str, str] = {}
    tables = [p for p in results_files() if p.suffix == ".md"]
    data = [p for p in results_files() if p.suffix == ".json"]
    for md in tables:
        text = md.read_text(encoding="utf-8").rstrip() + "\n"
        twin = md.with_suffix(".json")
        if twin.exists():
            text += f"\nThe measurements as data: {{download}}`{twin.name} <{twin.name}>`.\n"
        pages[f"benchmarks/results/{md.name}"] = text
    orphans = [p for p in data if not p.with_suffix(".md").exists()]
    pages["benchmarks/index.md"] = "\n".join([
        "# Benchmark results", "",
        "Speed and quality measured by the scripts in `benchmarks/`, each file from one run, with the "
        "hardware it ran on named at its top. `benchmarks/README.md` in the repository gives the command "
        "behind each file.", "",
        "```{toctree}", ":maxdepth: 1", "", *[f"results/{p.stem}" for p in tables], "```", "",
        *([f"Data without a table: " + ", ".join(f"{{download}}`{p.name} <results/{p.name}>`" for p in orphans), ""]
          if orphans else [])])
    return pages


def staged_notebook(path: Path) -> str:
    """The notebook as the site shows it: its own "Open in Colab" badge is dropped (every notebook page
    has the links bar, see site/_templates/page.html) and any other badge image is the local copy."""
    from course_lib.learner.colab import COLAB_BADGE_IMAGE, colab_badge_markdown

    nb = json.loads(path.read_text(encoding="utf-8"))
    badge = colab_badge_markdown(path.relative_to(ROOT).as_posix())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"]).replace(badge, "").replace(COLAB_BADGE_IMAGE, "../_assets/colab-badge.svg")
            cell["source"] = text
    return json.dumps(nb, ensure_ascii=False, indent=1)


def stage(build: Path) -> Path:
    """Write every page source into ``build/src`` (a fresh copy each time) and return that folder."""
    src = build / "src"
    if src.exists():
        shutil.rmtree(src)
    for folder in NOTEBOOK_FOLDERS:
        (src / folder).mkdir(parents=True)
        for nb in notebooks(folder):
            (src / folder / nb.name).write_text(staged_notebook(nb), encoding="utf-8")
    (src / "benchmarks" / "results").mkdir(parents=True)
    for p in results_files():
        if p.suffix == ".json":
            shutil.copy2(p, src / "benchmarks" / "results" / p.name)
    (src / "_assets").mkdir()
    shutil.copy2(CONF_DIR / "_static" / "colab-badge.svg", src / "_assets" / "colab-badge.svg")
    pages = {"index.md": home_page(), "claims.md": claims_page(),
             "troubleshooting.md": (CONF_DIR / "troubleshooting.md").read_text(encoding="utf-8"),
             **api_pages(), **benchmark_pages()}
    for name, text in pages.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text, encoding="utf-8")
    return src


# --------------------------------------------------------------------------- build


def read_allowlist(path: Path = ALLOWLIST) -> list[re.Pattern]:
    """Regular expressions, one a line (``#`` starts a comment), each matching a tolerated warning."""
    lines = [line.split(" #", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [re.compile(line) for line in lines if line and not line.startswith("#")]


def unexpected_warnings(log: str, allow: list[re.Pattern]) -> list[str]:
    """The warnings (and errors) in a Sphinx log that no allowlist pattern matches."""
    found = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    return [line for line in found if not any(p.search(line) for p in allow)]


def copy_notebooks(html: Path) -> None:
    """Each notebook beside its page, for the "Download notebook" link."""
    for folder in NOTEBOOK_FOLDERS:
        for nb in notebooks(folder):
            shutil.copy2(nb, html / folder / nb.name)


def build(out: Path = DEFAULT_OUT) -> dict:
    """Stage and build the site into ``out/html``; return what happened (pages, seconds, warnings)."""
    start = time.perf_counter()
    src = stage(out)
    html = out / "html"
    log = out / "sphinx-warnings.log"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(CONF_DIR), "-d", str(out / "doctrees"),
           "-w", str(log), "--keep-going", str(src), str(html)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    if proc.returncode != 0 and not (html / "index.html").exists():
        raise RuntimeError(f"sphinx-build failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    copy_notebooks(html)
    warnings = log.read_text(encoding="utf-8") if log.exists() else ""
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if p.relative_to(html).parts[0] != "_static")
    return {"seconds": time.perf_counter() - start, "pages": pages, "warnings": warnings,
            "unexpected": unexpected_warnings(warnings, read_allowlist())}


# --------------------------------------------------------------------------- link check (offline)


class _PageParser(HTMLParser):
    """Collects a page's anchors (``id``/``name``) and every URL it links to or loads."""

    LOADS = {("script", "src"), ("img", "src"), ("source", "src"), ("iframe", "src"), ("link", "href")}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (kind, url): kind "link" for <a>, "load" for assets

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.urls.append(("link", a["href"]))
        for t, attr in self.LOADS:
            if tag == t and a.get(attr):
                rel = (a.get("rel") or "").lower()
                if tag == "link" and not any(r in rel for r in ("stylesheet", "preload", "icon", "modulepreload")):
                    kind = "link"  # <link rel="next|prev|index|search|canonical"> navigates, loads nothing
                else:
                    kind = "load"
                self.urls.append((kind, a[attr]))


@dataclass
class LinkReport:
    internal: int = 0
    with_anchor: int = 0
    external: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


def check_links(html: Path) -> LinkReport:
    """Resolve every internal URL and ``#anchor`` of the built site; list (never fetch) external ones.

    A page or stylesheet that loads anything from the network is a problem: the site must work offline.
    """
    html = html.resolve()
    parsed: dict[Path, _PageParser] = {}
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] == "_static":
            continue  # the themes' template fragments, not pages of the site
        parser = _PageParser()
        parser.feed(page.read_text(encoding="utf-8"))
        parsed[page] = parser
    report = LinkReport()

    def resolve(base: Path, url: str, kind: str, where: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ftp") or url.startswith("//"):
            if kind == "load":
                report.problems.append(f"{where}: loads {url} from the network (bundle it under _static)")
            else:
                report.external.add(url)
            return
        if parts.scheme in ("mailto", "data", "javascript", "tel"):
            return
        if parts.scheme:
            report.problems.append(f"{where}: unknown URL scheme in {url!r}")
            return
        target = (base.parent / unquote(parts.path)).resolve() if parts.path else base
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(html):
            report.problems.append(f"{where}: {url} points outside the site")
            return
        report.internal += 1
        if not target.exists():
            report.problems.append(f"{where}: {url} -> {target.relative_to(html)} does not exist")
            return
        if parts.fragment and target.suffix == ".html":
            report.with_anchor += 1
            if unquote(parts.fragment) not in parsed[target].ids:
                report.problems.append(f"{where}: {url} -> no anchor #{unquote(parts.fragment)} "
                                       f"in {target.relative_to(html)}")

    for page, parser in parsed.items():
        for kind, url in parser.urls:
            if url.strip() and url.strip() != "#":
                resolve(page, url.strip(), kind, page.relative_to(html).as_posix())
    for css in sorted(html.rglob("*.css")):
        for m in _CSS_URL.finditer(css.read_text(encoding="utf-8", errors="replace")):
            url = (m.group(1) or m.group(2)).strip()
            if not url.startswith(("data:", "#")):
                resolve(css, url.split("?")[0].split("#")[0] if "://" not in url else url, "load",
                        css.relative_to(html).as_posix())
    return report


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: _site)")
    args = ap.parse_args(argv)
    result = build(args.out)
    html = args.out / "html"
    links = check_links(html)
    (args.out / "external-links.txt").write_text("".join(f"{u}\n" for u in sorted(links.external)), encoding="utf-8")
    print(f"built {len(result['pages'])} pages in {result['seconds']:.1f} s into {html}")
    print(f"checked {links.internal} internal links ({links.with_anchor} with an anchor); "
          f"{len(links.external)} external links listed in {args.out / 'external-links.txt'} (not fetched)")
    failed = False
    if result["unexpected"]:
        failed = True
        print(f"\n{len(result['unexpected'])} Sphinx warning(s) not in {ALLOWLIST.relative_to(ROOT)}:")
        print("\n".join(result["unexpected"]))
    if links.problems:
        failed = True
        print(f"\n{len(links.problems)} broken link(s):")
        print("\n".join(links.problems))
    if not failed:
        print(f"no unexpected warnings, no broken links. Open {html / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

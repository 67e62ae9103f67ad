"""The course website: it builds offline with no unlisted warning, every link and anchor resolves,
every notebook, module and results file is in its navigation, and a real browser renders it.

The site is built once per session by ``tools/build_site.py`` into ``_site/`` (about a minute on two
cores). Needs the ``site`` extra; the browser test needs Debian's ``chromium``. Locally each is
skipped with the reason when missing; in CI (``CI`` set) a missing one fails, since .ci/run installs both.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_site"
HTML = OUT / "html"
SHOTS = OUT / "screenshots"
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

from course_lib.learner.colab import colab_badge_url  # noqa: E402

SITE_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_copybutton")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(what: str) -> None:
    """Skip locally, fail in CI: CI installs everything this file needs (.ci/run)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: see .ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def site():
    """Build the site once (a subprocess, as a learner runs it) and return its report."""
    missing = [m for m in SITE_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        _missing(f"the site extra is not installed ({', '.join(missing)}): python -m pip install -e '.[site]'")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_site.py"), "--out", str(OUT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return {"returncode": proc.returncode, "output": proc.stdout + proc.stderr}


def _repo_notebooks() -> list[str]:
    """Every notebook of the course, from the file system (not from the build script's lists)."""
    return sorted(p.relative_to(ROOT).as_posix() for d in ("notebooks", "exercises", "solutions")
                  for p in (ROOT / d).glob("*.ipynb"))


def _links(page: Path) -> set[str]:
    """Every internal href of a built page, as a path relative to the site root (no anchor)."""
    parser = build_site._PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    out = set()
    for kind, url in parser.urls:
        parts = urlsplit(url)
        if kind == "link" and not parts.scheme and parts.path:
            out.add((page.parent / unquote(parts.path)).resolve().relative_to(HTML.resolve()).as_posix())
    return out


# --------------------------------------------------------------------------- build and links


def test_site_builds_without_unlisted_warnings(site):
    assert site["returncode"] == 0, site["output"]
    assert "no unexpected warnings, no broken links" in site["output"], site["output"]


def test_every_internal_link_and_anchor_resolves_and_nothing_loads_from_the_network(site):
    report = build_site.check_links(HTML)
    assert report.problems == []
    assert report.internal > 1000 and report.with_anchor > 50  # the checker really walked the site
    listed = (OUT / "external-links.txt").read_text(encoding="utf-8").split()
    assert all(u.startswith(("http://", "https://")) for u in listed)


def test_link_checker_catches_a_broken_anchor_a_missing_page_and_a_cdn_script(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="b.html#nowhere">b</a><a href="c.html">c</a>'
                                     '<a href="#top">up</a><script src="https://cdn.example.org/x.js"></script>'
                                     '<a href="https://example.org/">ext</a>')
    (tmp_path / "b.html").write_text('<p id="here">B</p><a href="a.html#top">a</a>')
    report = build_site.check_links(tmp_path)
    assert len(report.problems) == 3, report.problems
    assert any("#nowhere" in p for p in report.problems)
    assert any("c.html" in p and "does not exist" in p for p in report.problems)
    assert any("cdn.example.org" in p and "network" in p for p in report.problems)
    assert report.external == {"https://example.org/"}


def test_allowlist_lets_only_listed_warnings_through():
    log = "x.md:3: WARNING: tolerated thing [misc]\ny.ipynb:9: WARNING: undefined label: 'z'\nplain line\n"
    allow = [re.compile(r"tolerated thing")]
    assert build_site.unexpected_warnings(log, allow) == ["y.ipynb:9: WARNING: undefined label: 'z'"]
    assert all(isinstance(p, re.Pattern) for p in build_site.read_allowlist())


def test_navigation_lists_every_notebook_module_and_results_file(site):
    """A new lesson, exercise, module or benchmark result that the site does not link fails here."""
    nav = _links(HTML / "index.html")  # the sidebar on the home page is the whole navigation
    for nb in _repo_notebooks():
        assert nb.replace(".ipynb", ".html") in nav, f"{nb} is not in the site's navigation"
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in (ROOT / "course_lib").rglob("*.py")]
    api_nav = _links(HTML / "api" / "index.html")
    for name in modules:
        if name != "course_lib" and not any(part.startswith("_") for part in name.split(".")):
            assert f"api/{name}.html" in api_nav, f"module {name} has no page in the library reference"
    results_nav = _links(HTML / "benchmarks" / "index.html")
    for result in sorted((ROOT / "benchmarks" / "results").glob("*")):
        if result.suffix == ".md":
            assert f"benchmarks/results/{result.stem}.html" in results_nav, f"{result.name} has no page"
        elif result.suffix == ".json":
            page = HTML / "benchmarks" / "results" / f"{result.stem}.html"
            linked = {Path(p).name for p in _links(page if page.exists() else HTML / "benchmarks" / "index.html")}
            assert result.name in linked, f"{result.name} is not linked from the results pages"
    for page in ("claims.html", "troubleshooting.html", "api/index.html", "benchmarks/index.html"):
        assert page in nav, page


def test_every_notebook_page_has_its_colab_link_and_the_notebook_to_download(site):
    for nb in _repo_notebooks():
        page = HTML / nb.replace(".ipynb", ".html")
        text = page.read_text(encoding="utf-8")
        assert f'href="{colab_badge_url(nb)}"' in text, f"{page.name}: no Open in Colab link to {nb}"
        download = re.search(r'<a class="course-link course-link-download" href="([^"]+)" download>', text)
        assert download, f"{page.name}: no Download notebook link"
        copy = page.parent / unquote(download.group(1))
        assert copy.read_bytes() == (ROOT / nb).read_bytes(), f"{page.name}: the download is not the committed {nb}"


def test_claims_page_shows_every_claim_and_its_saved_verdict(site):
    from course_lib.lessons.ledger import CLAIMS, load_ledger, summarise

    text = (HTML / "claims.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", text, flags=re.S)
    for claim, verdict in summarise(load_ledger()).items():
        row = next((r for r in rows if re.search(rf"<td[^>]*><p>{claim}</p></td>", r)), None)
        assert row is not None, f"claim {claim} has no row in the ledger"
        assert (verdict or "not yet measured") in row, f"claim {claim}: expected verdict {verdict!r}"
    assert len(CLAIMS) >= 12


def test_bundled_mathjax_is_the_official_release_unchanged():
    """site/_static/mathjax holds files from the npm package mathjax@3.2.2; SHA256SUMS pins each one."""
    import hashlib

    folder = ROOT / "site" / "_static" / "mathjax"
    sums = dict(line.split(maxsplit=1)[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    files = {f"./{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
    assert files - set(sums) == {"./LICENSE", "./SHA256SUMS", "./PROVENANCE.txt"}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


# --------------------------------------------------------------------------- a real browser

BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(site):
    """The built site over HTTP on 127.0.0.1 (a free port), as a learner's browser would get it."""
    assert (HTML / "index.html").exists(), site["output"]
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    if CHROMIUM is None:
        _missing("chromium is not installed (Debian: apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed: python -m pip install -e '.[site]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=BROWSER_FLAGS, viewport={"width": 1280, "height": 860})
        offsite: list[str] = []
        failed: list[str] = []
        context.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        def only_local(route):  # the site must work offline: refuse (and remember) anything else
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                offsite.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        yield context, offsite, failed
        context.close()


def _lesson_pages() -> list[str]:
    """Three lessons spread over the course (first with maths, middle, last); appendices (A1_*) are not lessons."""
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if not re.match(r"A\d+_", p.name))
    picks = [lessons[1], lessons[len(lessons) // 2], lessons[-1]] if len(lessons) >= 3 else lessons
    return [f"notebooks/{name.replace('.ipynb', '.html')}" for name in picks]


_RENDER_STATE = """() => {
  const article = document.querySelector('article.bd-article');
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, script, mjx-container, .highlight').forEach(e => e.remove());
  const text = copy.innerText;
  // Sphinx's maths: each must hold MathJax's output
  const mathNodes = [...article.querySelectorAll('span.math.notranslate, div.math.notranslate')];
  return {
    mathNodes: mathNodes.length,
    unrendered: mathNodes.filter(m => !m.querySelector('mjx-container'))
                         .map(m => m.textContent.slice(0, 80)),
    rawDollar: (text.match(/\\$[^$\\s][^$\\n]{0,200}?\\$/g) || []).slice(0, 5),
    rawParen: (text.match(/\\\\\\(|\\\\\\[/g) || []).length,
    images: [...article.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
    navLinks: [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')].map(a => a.href),
  };
}"""


def _open(page, url: str) -> dict:
    page.goto(url, wait_until="load")
    # Sphinx loads MathJax only on pages with maths; wait until it has typeset them all.
    page.wait_for_function("() => !document.querySelector('script[src*=\"mathjax\"]') || "
                           "(window.MathJax && MathJax.startup && MathJax.startup.promise)", timeout=30000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")
    return page.evaluate(_RENDER_STATE)


def test_browser_home_and_three_lessons_render_formulas_images_and_navigation(browser, server):
    context, offsite, failed = browser
    page = context.new_page()
    lessons_html = [nb.replace(".ipynb", ".html") for nb in _repo_notebooks() if nb.startswith("notebooks/")]
    seen_math = seen_images = 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in ["index.html", *_lesson_pages()]:
        state = _open(page, f"{server}/{path}")
        assert state["unrendered"] == [], f"{path}: formulas left unrendered: {state['unrendered'][:3]}"
        assert state["rawDollar"] == [], f"{path}: raw $...$ in the text: {state['rawDollar']}"
        assert state["rawParen"] == 0, f"{path}: raw \\( or \\[ left in the text"
        broken = [i["src"] for i in state["images"] if not i["ok"]]
        assert broken == [], f"{path}: images that did not load: {broken}"
        nav = {urlsplit(h).path.lstrip("/") for h in state["navLinks"]}
        missing = [lesson for lesson in lessons_html if lesson not in nav]
        assert missing == [], f"{path}: the navigation does not list {missing}"
        seen_math += state["mathNodes"]
        seen_images += len(state["images"])
        if path == _lesson_pages()[0]:
            page.screenshot(path=str(SHOTS / "lesson.png"))  # the top: links bar, title, first formulas
    assert seen_math > 0 and seen_images > 0, "the pages checked had no formula or no image: pick other lessons"
    _open(page, f"{server}/index.html")
    page.screenshot(path=str(SHOTS / "home.png"))
    assert offsite == [], f"the site tried to load from the network: {offsite[:5]}"
    assert failed == [], f"requests that failed: {failed[:5]}"
    page.close()


def test_browser_search_box_finds_the_kv_cache_lesson(browser, server):
    context, offsite, failed = browser
    page = context.new_page()
    page.goto(f"{server}/index.html", wait_until="load")
    page.locator("button.search-button-field").first.click()
    box = page.locator("form.bd-search input[name=q]:visible").first
    box.fill("KV cache")
    box.press("Enter")
    page.wait_for_url("**/search.html?**")
    page.wait_for_selector("#search-results ul.search li a", timeout=30000)
    found = {urlsplit(a).path.lstrip("/") for a in page.eval_on_selector_all(
        "#search-results ul.search li a", "links => links.map(a => a.href)")}
    expected = {nb.replace(".ipynb", ".html") for nb in _repo_notebooks() if nb.startswith("notebooks/")
                and "KV cache" in (ROOT / nb).read_text(encoding="utf-8")}
    assert expected, "no lesson mentions 'KV cache' any more: change the search term of this test"
    assert found & expected, f"searching 'KV cache' found {sorted(found)[:8]}, none of the lessons {sorted(expected)}"
    assert offsite == [], f"the site tried to load from the network: {offsite[:5]}"
    assert failed == [], f"requests that failed: {failed[:5]}"
    page.close()

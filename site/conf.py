"""Sphinx configuration of the course website (Sphinx + MyST-NB + sphinx-book-theme: Jupyter Book 1's engine).

Do not run sphinx-build on this folder directly: ``python tools/build_site.py`` first stages the pages
(the README as home page, the notebooks with their saved outputs, one page per course_lib module, the
claims ledger, the benchmark results) into ``_site/src`` and then builds them with this file.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # autodoc imports course_lib from this checkout
sys.path.insert(0, str(Path(__file__).parent))  # course_site.py: this site's small Sphinx extension

from course_lib.learner.colab import BRANCH, REPO_URL  # noqa: E402  (the one source of the repository's address)

project = "Encoder, Decoder, Encoder–Decoder"
author = "the course authors"
copyright = "the course authors, MIT licence"
root_doc = "index"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx_copybutton", "course_site"]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# ---- notebooks: render the committed outputs, never execute (fast and deterministic)
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget manager from a CDN: saved notebooks hold no widget state anyway
nb_merge_streams = True  # one output block per cell, not one per print flush
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_update_mathjax = False  # MathJax is configured below

# Headings get Jupyter's anchors (spaces become hyphens), so the lessons' links to sections work here too.
myst_heading_anchors = 6
myst_heading_slug_func = "course_site.jupyter_anchor"

# ---- maths: MathJax 3.2.2 bundled in _static/mathjax (the official npm files; see PROVENANCE.txt), no CDN
mathjax_path = "mathjax/tex-chtml-full.js"
mathjax3_config = {
    "tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
    # typeset only Sphinx's maths and notebook outputs, never code
    "options": {"ignoreHtmlClass": "tex2jax_ignore|mathjax_ignore|document",
                "processHtmlClass": "tex2jax_process|mathjax_process|math|output_area",
                "enableMenu": False},
}

# ---- the library reference: one page per module, from the docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# ---- look
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": REPO_URL,
    "repository_branch": BRANCH,
    "use_repository_button": True,
    "use_download_button": False,  # each notebook page links the committed notebook itself (page.html)
    "home_page_in_toc": False,  # the site title above the navigation links home
    "navbar_persistent": [],  # no top bar holding a second search box: the sidebar has one
    "show_toc_level": 2,
    "show_navbar_depth": 1,
    "navigation_with_keys": False,
}
copybutton_exclude = ".linenos, .gp, .go"


"""The course website's own Sphinx extension: Jupyter-style heading anchors and the notebook links bar."""
from __future__ import annotations

from pathlib import Path

from course_lib.learner.colab import colab_badge_url


def jupyter_anchor(heading: str) -> str:
    """Jupyter's anchor for a heading: the text with spaces turned into hyphens (case and punctuation kept)."""
    return heading.strip().replace(" ", "-")


def notebook_links(app, pagename, templatename, context, doctree) -> None:
    """Every notebook page gets "Open in Colab" (URL from course_lib.learner.colab) and "Download notebook"."""
    if pagename not in app.env.all_docs:
        return
    source = Path(app.env.doc2path(pagename, False))
    if source.suffix != ".ipynb":
        return
    repo_path = source.as_posix()  # the staged tree mirrors the repository's layout
    context["course_colab_url"] = colab_badge_url(repo_path)
    context["course_download_url"] = source.name  # tools/build_site.py copies the notebook beside its page
    context["course_repo_path"] = repo_path


def setup(app):
    app.connect("html-page-context", notebook_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

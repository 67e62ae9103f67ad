"""Repository-wide pytest setup; also applies to ``pytest --nbval-lax notebooks/ exercises/``.

nbval's kernels inherit this process's environment, so these settings reach the notebooks too.
"""
import os
import sys
from pathlib import Path

import pytest

# Lessons' training cells shrink their schedules (course_lib.runtime.fast_mode()); a caller's
# COURSE_FAST applies to every notebook. The practice notebooks are cheap (~10 s each), so they run
# in full mode, the mode learners use: a loop that only breaks at full length fails here.
CALLER_FAST = os.environ.get("COURSE_FAST")
os.environ.setdefault("COURSE_FAST", "1")
FULL_MODE_FOLDERS = ("solutions", "exercises")
ROOT = Path(__file__).resolve().parent


def notebook_course_fast(path: Path) -> str:
    """The COURSE_FAST value a notebook's kernel gets under pytest."""
    if CALLER_FAST is not None:
        return CALLER_FAST
    return "0" if Path(path).resolve().parent in {ROOT / f for f in FULL_MODE_FOLDERS} else "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """nbval starts a notebook's kernel while setting up its first cell; the kernel inherits this
    process's environment, so COURSE_FAST is set for exactly that moment."""
    if item.path.suffix != ".ipynb":
        yield
        return
    saved = os.environ["COURSE_FAST"]
    os.environ["COURSE_FAST"] = notebook_course_fast(item.path)
    try:
        yield
    finally:
        os.environ["COURSE_FAST"] = saved


# One thread per process: pytest-xdist runs two workers (and each notebook a kernel) on 2 cores,
# and oversubscribed BLAS threads make tiny models many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No GUI windows; nbval never compares images anyway.
os.environ["MPLBACKEND"] = "Agg"
# Quizzes (course_lib.learner.quiz.ask) print text instead of widgets nobody will click.
os.environ.setdefault("COURSE_HEADLESS", "1")

if "matplotlib" in sys.modules:  # imported before this file by a plugin: switch it as well
    import matplotlib

    matplotlib.use("Agg", force=True)



#: The one start-up failure worth retrying: the kernel process exited before answering (e.g. the
#: port race of picking a free port, closing it, and the kernel binding it a moment later).
KERNEL_DIED = "Kernel died before replying to kernel_info"


def start_kernel_with_retry(start, *args, attempts: int = 3, **kwargs):
    """Call a kernel starter (``jupyter_client.manager.start_new_kernel``), keeping the kernel's stderr
    and retrying only when the kernel died at start-up; any other error is raised at once."""
    import tempfile

    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryFile("w+") as err:
            kwargs["stderr"] = err
            try:
                return start(*args, **kwargs)
            except RuntimeError as exc:
                if KERNEL_DIED not in str(exc) or attempt == attempts:
                    err.seek(0)
                    raise RuntimeError(f"{exc} (attempt {attempt} of {attempts}); kernel stderr:\n{err.read()[-3000:]}") from exc
                print(f"kernel died at start-up (attempt {attempt} of {attempts}); retrying", file=sys.stderr)


def _patch_nbval_kernel_start() -> None:
    try:
        import nbval.kernel
    except ImportError:  # nbval not installed: nothing to patch
        return
    original = nbval.kernel.start_new_kernel
    if getattr(original, "_course_retry", False):
        return

    def start_new_kernel(*args, **kwargs):
        return start_kernel_with_retry(original, *args, **kwargs)

    start_new_kernel._course_retry = True
    nbval.kernel.start_new_kernel = start_new_kernel


_patch_nbval_kernel_start()

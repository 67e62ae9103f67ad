"""Repository-wide pytest setup; also applies to ``pytest --nbval-lax notebooks/ exercises/``.

nbval's kernels inherit this process's environment, so these settings reach the notebooks too.
"""
import os
import socket
import sys

import pytest

# Training cells shrink their schedules (course_lib.runtime.fast_mode()); a caller may override.
os.environ.setdefault("COURSE_FAST", "1")
# One thread per process: pytest-xdist runs two workers (and each notebook a kernel) on 2 cores,
# and oversubscribed BLAS threads make tiny models many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No GUI windows; nbval never compares images anyway.
os.environ["MPLBACKEND"] = "Agg"
# Quizzes (course_lib.quiz.ask) print text instead of widgets nobody will click.
os.environ.setdefault("COURSE_HEADLESS", "1")

if "matplotlib" in sys.modules:  # imported before this file by a plugin: switch it as well
    import matplotlib

    matplotlib.use("Agg", force=True)



@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on, for torchrun / gloo tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Instant feedback for the exercise notebooks: ``from course_lib.checks import check_…``.

One module per lesson — :mod:`.attention` (01), :mod:`.mlm` (02), :mod:`.clm` (03),
:mod:`.seq2seq` (04), :mod:`.translation` (05) — on top of the shared machinery in :mod:`._core`
(cases, known-wrong variants with hints, the one-sentence verdicts, :func:`use_or_reference`).
Every public name of every lesson module is re-exported here. See :mod:`._core` for how to write
a new check.
"""
from __future__ import annotations

from ._core import *  # noqa: F401,F403
from ._core import use_or_reference  # noqa: F401
from .attention import *  # noqa: F401,F403
from .clm import *  # noqa: F401,F403
from .mlm import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .translation import *  # noqa: F401,F403
from .recipe import *  # noqa: F401,F403
from . import attention, clm, mlm, recipe, seq2seq, translation  # noqa: F401

__all__ = sorted(
    {"use_or_reference"} | set(attention.__all__) | set(mlm.__all__) | set(clm.__all__) | set(seq2seq.__all__) | set(translation.__all__) | set(recipe.__all__)
)

# lesson 06 (latency): KV-cache bytes and decode-step FLOPs by hand
from . import latency  # noqa: E402,F401
from .latency import *  # noqa: E402,F401,F403

__all__ = sorted(set(__all__) | set(latency.__all__))

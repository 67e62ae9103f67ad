"""Old name of :mod:`course_lib.checks.translation` (lesson 05's checks), kept so that
``from course_lib import checks_translation as checks`` keeps working."""
from __future__ import annotations

from .checks.translation import *  # noqa: F401,F403
from .checks.translation import __all__  # noqa: F401
from .checks.translation import _bleu_cases  # noqa: F401

"""``python -m course_lib.lessons.translate ...``: the translator's command line (see :mod:`.cli`)."""
from .cli import main

if __name__ == "__main__":
    main()

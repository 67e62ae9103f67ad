""""Predict, then run" multiple-choice questions.

A notebook asks a question *before* the cell that settles it::

    q = MultipleChoice(
        "Which mask lets query 2 see key 3?",
        ["causal", "bidirectional (encoder)", "neither"],
        answer="b",
        explanations=["Causal hides keys after the query: 3 > 2.",
                      "The encoder mask hides only padding.",
                      "The encoder mask allows it."],
        id="mask-1",
    )
    ask(q)           # radio buttons + Check button in Jupyter/Colab; plain text elsewhere
    q.check("b")     # the same grading, typed: prints the feedback, returns True/False

``grade_choice`` is the pure grading function behind both; ``reveal`` prints the answer (used in
``solutions/``). ``ask`` uses only ipywidgets APIs common to 7.7 (Colab) and 8.x, and prints text
instead of widgets where no frontend can show them: outside IPython kernels, when ipywidgets is
missing, and when ``COURSE_HEADLESS=1`` (set by ``tools/sync_notebooks.py execute`` and the test
suite, so saved notebooks show readable text instead of dead widgets).
"""
from __future__ import annotations

import html
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

HEADLESS_ENV = "COURSE_HEADLESS"
LETTERS = string.ascii_lowercase

#: Questions created with an ``id``, so ``grade_choice("mask-1", "b")`` works.
QUESTIONS: dict[str, "MultipleChoice"] = {}


def _letter(i: int) -> str:
    return LETTERS[i]


@dataclass
class MultipleChoice:
    """One multiple-choice question.

    ``answer`` may be given as a 0-based index, a letter (``"b"``) or the option's text; it is
    stored as the index. ``explanations`` (optional) says why each option is right or wrong: a list
    aligned with ``options`` or a dict keyed by index, letter or option text.
    """

    question: str
    options: Sequence[str]
    answer: int | str
    explanations: Sequence[str | None] | Mapping[int | str, str] | None = None
    id: str | None = None
    _explanations: list[str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str):
            raise TypeError(f"question must be text (a str); got {type(self.question).__name__}.")
        if isinstance(self.options, str):
            raise TypeError(f"options must be a list of option texts, not one string ({self.options!r}); e.g. ['causal', 'bidirectional'].")
        self.options = [str(o) for o in self.options]
        _check_options(self.options)
        if len(self.options) < 2:
            raise ValueError(f"a multiple-choice question needs at least 2 options; got {len(self.options)}.")
        if len(self.options) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} options; got {len(self.options)}.")
        index = _resolve(self, self.answer)
        if index is None:
            raise ValueError(f"answer {self.answer!r} is not one of the options {self.options}.")
        self.answer = index
        self._explanations = [None] * len(self.options)
        if isinstance(self.explanations, Mapping):
            for key, text in self.explanations.items():
                i = _resolve(self, key)
                if i is None:
                    raise ValueError(f"explanation key {key!r} is not one of the options.")
                self._explanations[i] = text
        elif self.explanations is not None:
            if len(self.explanations) != len(self.options):
                raise ValueError(f"got {len(self.explanations)} explanations for {len(self.options)} options.")
            self._explanations = [None if e is None else str(e) for e in self.explanations]
        if self.id is not None:
            QUESTIONS[self.id] = self

    @property
    def answer_letter(self) -> str:
        return _letter(self.answer)

    def explanation(self, option: int | str) -> str | None:
        i = _resolve(self, option)
        return None if i is None else self._explanations[i]

    def text(self) -> str:
        """The question and lettered options as plain text."""
        lines = [self.question.strip()]
        lines += [f"  {_letter(i)}) {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines)

    def check(self, chosen: int | str) -> bool:
        """Grade ``chosen`` (a letter such as ``"b"``, a 0-based index, or the option text), print the feedback."""
        ok, message = grade_choice(self, chosen)
        print(("✅ " if ok else "❌ ") + message)
        return ok


_LETTER_RE = re.compile(r"\(?([A-Za-z])[).]?")  # how an answer letter may be written: b, B, b), (b), b.


def _check_options(options: list[str]) -> None:
    """Every option must be answerable without ambiguity: not empty, not a repeat of another, and not
    text that reads as the answer letter of a different option (an option "b" at position (a))."""
    seen: dict[str, int] = {}
    for i, text in enumerate(options):
        key = text.strip().casefold()
        if not key:
            raise ValueError(f"option ({_letter(i)}) is empty; every option needs a text.")
        if key in seen:
            raise ValueError(f"options ({_letter(seen[key])}) and ({_letter(i)}) are both {text.strip()!r}; make every option different.")
        seen[key] = i
        m = _LETTER_RE.fullmatch(text.strip())
        if m and i != LETTERS.index(m.group(1).lower()) < len(options):
            raise ValueError(f"option ({_letter(i)}) is the text {text.strip()!r}, which reads as the answer letter of option "
                             f"({m.group(1).lower()}); reword it (e.g. 'option {text.strip()}') or reorder the options so each sits at its own letter.")


def _resolve(mc: MultipleChoice, chosen) -> int | None:
    """Index of the option meant by ``chosen`` (index, letter, "b)", "(b)", or option text), else None."""
    if isinstance(chosen, bool):
        return None
    if isinstance(chosen, int):
        return chosen if 0 <= chosen < len(mc.options) else None
    if not isinstance(chosen, str):
        return None
    s = chosen.strip()
    m = _LETTER_RE.fullmatch(s)
    if m and LETTERS.index(m.group(1).lower()) < len(mc.options):  # a letter first (options never read as another's letter)
        return LETTERS.index(m.group(1).lower())
    folded = [o.strip().casefold() for o in mc.options]
    return folded.index(s.casefold()) if s.casefold() in folded else None


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _get(question_id_or_obj) -> MultipleChoice:
    if isinstance(question_id_or_obj, MultipleChoice):
        return question_id_or_obj
    try:
        return QUESTIONS[question_id_or_obj]
    except (KeyError, TypeError):
        known = ", ".join(sorted(QUESTIONS)) or "none yet"
        raise KeyError(f"no question with id {question_id_or_obj!r} (known: {known}); run the cell that defines it first.") from None


def grade_choice(question_id_or_obj: str | MultipleChoice, chosen: int | str) -> tuple[bool, str]:
    """Grade one answer: ``(correct, one-sentence feedback)``. Pure: prints and stores nothing.

    ``chosen`` is a letter (``"b"``), a 0-based index, or the option's text. A wrong answer's
    feedback is that option's explanation, so it says *why* it is wrong.
    """
    mc = _get(question_id_or_obj)
    i = _resolve(mc, chosen)
    if i is None:
        last = _letter(len(mc.options) - 1)
        return False, f"{chosen!r} is not one of the options; answer with a letter from a to {last}."
    why = mc._explanations[i]
    if i == mc.answer:
        return True, ("Correct: " + _sentence(why)) if why else "Correct!"
    if why:
        return False, f"Not quite, ({_letter(i)}) is wrong: " + _sentence(why)
    return False, f"Not quite: ({_letter(i)}) is not the answer; think about it again, then run the next cell."


def reveal(question_id_or_obj: str | MultipleChoice) -> None:
    """Print the question, the answer and every option's explanation (for solutions)."""
    mc = _get(question_id_or_obj)
    print(mc.text())
    why = mc._explanations[mc.answer]
    print(f"Answer: ({mc.answer_letter}) {mc.options[mc.answer]}" + (f" - {_sentence(why)}" if why else ""))
    for i, (option, expl) in enumerate(zip(mc.options, mc._explanations)):
        if i != mc.answer and expl:
            print(f"  not ({_letter(i)}): {_sentence(expl)}")


def _widgets_wanted() -> bool:
    """True when a Jupyter frontend can probably show widgets (see the module docstring)."""
    if os.environ.get(HEADLESS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # plain Python, pytest, terminal IPython
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _html(text: str) -> str:
    escaped = html.escape(text.strip())
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return escaped.replace("\n", "<br>")


def _widget(mc: MultipleChoice):
    # Only APIs common to ipywidgets 7.7 (Colab) and 8.x: HTML, RadioButtons, Button.on_click, VBox, Layout.
    import ipywidgets as widgets

    question = widgets.HTML(value=f"<b>{_html(mc.question)}</b>")
    labels = [(f"{_letter(i)}) {o}", i) for i, o in enumerate(mc.options)]
    try:
        radio = widgets.RadioButtons(options=labels, value=None, layout=widgets.Layout(width="auto"))
    except Exception:  # pragma: no cover - an ipywidgets without "nothing selected" support
        radio = widgets.RadioButtons(options=labels, layout=widgets.Layout(width="auto"))
    button = widgets.Button(description="Check", button_style="primary")
    feedback = widgets.HTML(value="")

    def on_click(_button) -> None:
        if radio.value is None:
            feedback.value = "<i>Pick an option first.</i>"
            return
        ok, message = grade_choice(mc, radio.value)
        feedback.value = ("✅ " if ok else "❌ ") + _html(message)

    button.on_click(on_click)
    box = widgets.VBox([question, radio, button, feedback])
    box._course_parts = {"radio": radio, "button": button, "feedback": feedback}  # for tests
    return box


def ask(mc: MultipleChoice | str, widget: bool | None = None) -> None:
    """Show a question: radio buttons and a Check button in Jupyter/Colab, else plain text.

    ``widget=True``/``False`` forces one form. Returns nothing, so ``ask(q)`` as a cell's last
    line shows the question once (a returned widget would be displayed a second time).
    Never raises in a headless run (nbclient, nbval): any widget failure falls back to text.
    """
    mc = _get(mc)
    if widget if widget is not None else _widgets_wanted():
        try:
            from IPython.display import display

            display(_widget(mc))
            return None
        except Exception:  # noqa: BLE001 - a question must never stop a notebook
            pass
    print(mc.text())
    # spelled out in full: the setup cell imports course_lib, nothing imports check() by itself
    how = f'course_lib.learner.quiz.check("{mc.id}", "<letter>")' if mc.id else 'QUESTION.check("<letter>")'
    print(f"Predict first, then answer in code with your option's letter in place of <letter>: {how}")
    return None


def check(question_id_or_obj: str | MultipleChoice, chosen: int | str) -> bool:
    """Grade and print the feedback (text form of the Check button); returns whether it was right."""
    return _get(question_id_or_obj).check(chosen)


def grade_quiz(answers: Mapping[str, int | str]) -> tuple[int, list[tuple[str, bool, str]]]:
    """Grade several answers keyed by question id: ``(number right, [(id, correct, feedback), ...])``.

    Pure, like :func:`grade_choice`; an unknown id raises the same ``KeyError``.
    """
    if not isinstance(answers, Mapping):
        raise TypeError(f"answers must be a dict of question id -> answer, e.g. {{'mask-1': 'b'}}; got {type(answers).__name__}.")
    results = [(qid, *grade_choice(qid, chosen)) for qid, chosen in answers.items()]
    return sum(ok for _, ok, _ in results), results


def check_quiz(answers: Mapping[str, int | str]) -> int:
    """Grade several answers keyed by question id, print one line each and the score; returns the score."""
    right, results = grade_quiz(answers)
    for qid, ok, message in results:
        print(("✅ " if ok else "❌ ") + f"{qid}: {message}")
    print(f"{right} of {len(results)} right.")
    return right

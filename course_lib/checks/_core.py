"""Shared machinery of the exercise checks (see the package docstring). Instant feedback for the exercise notebooks.

Each ``check_<name>(fn)`` runs a learner's function against the library's reference
implementation on several seeded cases (edge cases included: padding, a fully masked row, a
batch of one, length one) and answers in **one sentence**:

* success: prints ``✅ <name>: all N cases match.`` and returns ``True``;
* the function still raises ``NotImplementedError``: prints ``⏳ <name>: not implemented yet …``
  and returns ``False`` *without raising*, so an unsolved notebook runs top to bottom;
* a wrong answer: raises ``AssertionError`` whose message names the likely mistake. The check
  finds it by comparing the learner's output with *known-wrong* variants of the reference
  (missing 1/√d_k, softmax over the wrong axis, an inverted mask, unshifted targets, …);
* any other exception: re-raised as an ``AssertionError`` with one sentence naming it.

``use_or_reference(mine, reference)`` lets a later task build on an earlier one: it returns the
learner's function when it passes its check, the library's otherwise, and says which.

The signatures the checks expect (the exercise notebooks state them too)::

    scaled_dot_product_attention(q, k, v, mask=None) -> out (..., T_q, d_v)
    causal_mask(t) -> bool (t, t)
    padding_mask(tokens, pad_id=0) -> bool (B, 1, 1, T)
    prefix_mask(t, prefix_len) -> bool (t, t)
    split_heads(x, n_heads) -> (B, H, T, D)          merge_heads(x) -> (B, T, H*D)
    cross_attention(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None) -> (B, T, d)
        (weights are (d, d) matrices used as ``x @ w_q``; no biases)
    mlm_corrupt(tokens, vocab_size, mask_id, p=0.15) -> (inputs, labels)
    mlm_loss(logits, labels) -> scalar          clm_loss(logits, tokens, pad_id=0) -> scalar
    shift_right(targets, bos_id) -> (B, T)      seq2seq_loss(logits, targets, pad_id=0) -> scalar
    greedy_decode_with_cache(model, prompt, max_new_tokens, eos_id=2, pad_id=0) -> (B, <= max_new_tokens)
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..losses import IGNORE

__all__ = ["use_or_reference", "register"]

# The course's special token ids (course_lib.tokenizer): PAD 0, BOS 1, EOS 2, UNK 3, MASK 4, SEP 5.
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID = 0, 1, 2, 3, 4, 5
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID)
NINF = float("-inf")



# --------------------------------------------------------------------------------------------
# machinery
# --------------------------------------------------------------------------------------------
class _NotImplementedYet(Exception):
    """The learner's function raised NotImplementedError."""


class _Fail(Exception):
    """One-sentence diagnosis; turned into an AssertionError at the top of the check."""


@dataclass
class _Case:
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class _Variant:
    """A known-wrong implementation and the sentence that explains the mistake.
    ``hint`` may use ``{got}`` and ``{expected}`` (the two shapes)."""

    fn: Callable[..., Any]
    hint: str


def _clone(obj):
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _shape(t) -> tuple:
    return tuple(t.shape)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _call(name: str, fn: Callable, case: _Case):
    """Call the learner's function on a copy of the case's inputs."""
    try:
        with torch.no_grad():
            return fn(*_clone(case.args), **_clone(case.kwargs))
    except NotImplementedError:
        raise _NotImplementedYet from None
    except Exception as e:  # noqa: BLE001 - any learner error becomes one friendly sentence
        raise _Fail(f"{name} raised {_one_line(e).rstrip('.')} on the case '{case.name}'; read the error, fix the cell above and run it again.") from None


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x))
    return x


def _same(a, b, *, lenient: bool = False, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Do two results agree? ``lenient`` also accepts agreement once NaN/±inf become 0 (used only
    for matching known-wrong variants, whose NaNs a learner may have zeroed)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, lenient=lenient, atol=atol, rtol=rtol) for x, y in zip(a, b))
    a, b = _as_tensor(a), _as_tensor(b)
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        return False
    if a.numel() == 1 and b.numel() == 1:  # a loss: accept a 0-d tensor, a (1,) tensor or a float
        a, b = a.reshape(()), b.reshape(())
    if a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool or not (a.is_floating_point() or b.is_floating_point()):
        return torch.equal(a.long(), b.long())
    a, b = a.detach().double(), b.detach().double()
    if torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True) and torch.equal(a.isinf(), b.isinf()):
        return True
    if lenient:
        z = lambda t: torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.allclose(z(a), z(b), atol=atol, rtol=rtol)
    return False


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _diagnose(name: str, case: _Case, got, expected, variants: Sequence[_Variant], *, is_mask: bool = False) -> str | None:
    """None if ``got`` matches ``expected``; otherwise one sentence naming the likely mistake."""
    if got is None:
        return f"{name} returned None on the case '{case.name}'; did you forget the `return` statement?"
    if is_mask and isinstance(got, Tensor) and got.dtype != torch.bool:
        if got.is_floating_point() and bool(torch.isinf(got).any()):
            return (
                f"{name} returned an additive float mask (0 / -inf); in this course a mask is boolean with "
                "True = may attend, so return a torch.bool tensor."
            )
        if got.shape == expected.shape and torch.equal(got != 0, expected):
            return f"{name} returned dtype {got.dtype} but masks in this course are boolean (True = may attend): add `.bool()` or build it with a comparison."
    if _same(got, expected):
        return None
    got_cmp = got.ne(0) if (is_mask and isinstance(got, Tensor) and got.dtype != torch.bool) else got
    for v in variants:
        try:
            with torch.no_grad():
                wrong = v.fn(*_clone(case.args), **_clone(case.kwargs))
        except Exception:  # noqa: BLE001 - a variant that cannot run on this case tells us nothing
            continue
        if _same(wrong, expected):
            continue  # this mistake is invisible on this case
        if _same(got_cmp, wrong) or _same(got_cmp, wrong, lenient=True):
            try:
                hint = v.hint.format(got=_fmt(_shape(got)), expected=_fmt(_shape(expected)))
            except Exception:  # noqa: BLE001
                hint = v.hint
            return f"{name}: {hint.rstrip('.')} (seen on the case '{case.name}')."
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            if isinstance(got, (int, float)) and expected.numel() == 1:
                pass
            else:
                return f"{name} returned a {type(got).__name__} on the case '{case.name}' but should return a torch.Tensor of shape {_fmt(_shape(expected))}."
        got_t = _as_tensor(got)
        if expected.numel() == 1 and got_t.numel() != 1:
            return (
                f"{name} returned a tensor of shape {_fmt(_shape(got_t))} on the case '{case.name}' but should return a single "
                "number (the mean over the counted tokens), shape ()."
            )
        if got_t.numel() != 1 and got_t.shape != expected.shape:
            return f"{name} returned shape {_fmt(_shape(got_t))} but the expected shape is {_fmt(_shape(expected))} on the case '{case.name}'."
        if got_t.is_floating_point() and bool(torch.isnan(got_t).any()) and not bool(torch.isnan(expected).any()):
            return f"{name} returned NaN on the case '{case.name}', where the reference has finite values; look for a softmax or mean over an empty set."
        if got_t.is_floating_point() and expected.is_floating_point():
            diff = (got_t.detach().double().reshape(expected.shape) - expected.double()).abs().nan_to_num(nan=float("inf")).max().item()
            return f"{name} gives different values from the reference on the case '{case.name}' (largest difference {diff:.3g}); compare your code with the formula above, step by step."
        wrong = int((got_t.reshape(expected.shape).long() != expected.long()).sum())
        return f"{name} differs from the reference in {wrong} of {expected.numel()} entries on the case '{case.name}'; compare your code with the formula above."
    return f"{name} gives a different result from the reference on the case '{case.name}'."


def _ok(name: str, n: int, what: str = "cases match") -> bool:
    print(f"✅ {name}: all {n} {what}.")
    return True


def _pending(name: str) -> bool:
    print(f"⏳ {name}: not implemented yet — fill in the cell above and run it again.")
    return False


def _run(name: str, fn: Callable, cases: Sequence[_Case], reference: Callable, variants: Sequence[_Variant], *, is_mask: bool = False) -> bool:
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")
    try:
        with torch.random.fork_rng(devices=[]):  # a check never changes the notebook's random state
            for case in cases:
                torch.manual_seed(0)
                with torch.no_grad():
                    expected = reference(*_clone(case.args), **_clone(case.kwargs))
                got = _call(name, fn, case)
                problem = _diagnose(name, case, got, expected, variants, is_mask=is_mask)
                if problem:
                    raise _Fail(problem)
    except _NotImplementedYet:
        return _pending(name)
    except _Fail as e:
        raise AssertionError(str(e)) from None
    return _ok(name, len(cases))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def _padded_tokens(g: torch.Generator, lengths: Sequence[int], t: int, vocab: int = 20, bos: bool = False, eos: bool = False) -> Tensor:
    """Right-padded ids ``(B, t)``: ordinary tokens (ids >= 6), optional BOS/EOS, then PAD."""
    out = torch.full((len(lengths), t), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(len(SPECIAL_IDS), vocab, (n,), generator=g)
        if bos and n > 0:
            row[0] = BOS_ID
        if eos and n > 1:
            row[-1] = EOS_ID
        out[i, :n] = row
    return out

def _nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-position −log p(target); targets equal to IGNORE give 0."""
    safe = targets.clamp(min=0)
    out = -F.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    return out.masked_fill(targets == IGNORE, 0.0)


_MEAN = "the loss is a sum; return the mean over the counted tokens, so batches with different padding are comparable."

def _logits_case(g: torch.Generator, b: int, t: int, v: int, scale: float = 2.0) -> Tensor:
    return _randn(g, b, t, v) * scale


# 6. CLM loss
# --------------------------------------------------------------------------------------------
def _pads_ignored(t: Tensor, pad_id: int) -> Tensor:
    return t.masked_fill(t == pad_id, IGNORE)



# --------------------------------------------------------------------------------------------
# the registry of checks, for use_or_reference
# --------------------------------------------------------------------------------------------
_CHECKS: dict[str, Callable[[Callable], bool]] = {}


def register(name: str):
    """Decorator: make ``check_<name>`` known to :func:`use_or_reference` under ``name``."""

    def deco(check: Callable[[Callable], bool]) -> Callable[[Callable], bool]:
        _CHECKS[name] = check
        return check

    return deco


def _check_name(*fns: Callable, name: str | None) -> str | None:
    if name is not None:
        if name not in _CHECKS:
            raise ValueError(f"no check named {name!r}; known: {', '.join(_CHECKS)}.")
        return name
    for f in fns:
        n = getattr(f, "__name__", "")
        for cand in (n, n.removeprefix("my_"), n.removeprefix("reference_")):
            if cand in _CHECKS:
                return cand
    return None


def use_or_reference(learner_fn: Callable, reference_fn: Callable, name: str | None = None) -> Callable:
    """Return ``learner_fn`` if it passes its check (run silently), else ``reference_fn``; print which.

    A later task can then rely on an earlier one without depending on it being solved::

        sdpa = use_or_reference(scaled_dot_product_attention, course_lib.scaled_dot_product_attention)

    The check is found from the functions' names (``my_``/``reference_`` prefixes are dropped) or
    from ``name=``; a function without a check is used as it is.
    """
    label = name or getattr(learner_fn, "__name__", None) or getattr(reference_fn, "__name__", "function")
    ref_label = getattr(reference_fn, "__module__", "course_lib") or "course_lib"
    ref_label = "course_lib" if ref_label.startswith("course_lib") else ref_label
    if learner_fn is None or not callable(learner_fn):
        print(f"→ {label}: using {ref_label}'s version (yours is not defined).")
        return reference_fn
    check = _check_name(learner_fn, reference_fn, name=name)
    if check is None:
        print(f"→ {label}: using yours (there is no check for it).")
        return learner_fn
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            ok = _CHECKS[check](learner_fn)
    except AssertionError:
        print(f"→ {check}: using {ref_label}'s version for now (yours does not pass its check yet).")
        return reference_fn
    if not ok:
        print(f"→ {check}: using {ref_label}'s version for now (yours is not implemented yet).")
        return reference_fn
    print(f"→ {check}: using yours (it passes its check).")
    return learner_fn

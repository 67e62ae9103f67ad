"""The machinery every exercise check shares.

A check ``check_<name>(fn)`` runs a learner's function against a reference on seeded
:class:`Case` s and answers in **one friendly sentence**:

* success: prints ``✅ <name>: all N cases match.`` and returns ``True``;
* the function still raises ``NotImplementedError``: prints ``⏳ <name>: not implemented yet …``
  and returns ``False`` *without raising*, so an unsolved notebook runs top to bottom;
* anything wrong: raises ``AssertionError`` with one sentence naming the likely mistake (never a
  traceback; a learner's exception becomes one sentence too).

How to write a check (see :mod:`.seq2seq` for a short one, :mod:`.clm` for a custom one)::

    @register("shift_right")                       # known to use_or_reference under this name
    def check_shift_right(fn):
        cases = [Case("no padding", (targets, 1)), Case("bos_id=9", (targets, 9)), ...]
        return run_check("shift_right", fn, cases, reference, VARIANTS,
                         arg_names=("targets", "bos_id"), output="ids")

What :func:`run_check` does for every case, in this order:

1. **copies** the inputs (one ``copy.deepcopy`` of args and kwargs together, so a case that passes
   the *same* tensor several times — self-attention's ``f(x, x, x, mask)`` — stays aliased in the
   copy; ``nn.Module`` s are shared, not copied), calls ``fn`` under ``torch.no_grad()``, then
   compares the copies with pristine ones: a function that **changed an input in place** fails with
   "your function changed its input `q` in place …" (``arg_names`` names the inputs);
2. checks the **type** of the result with ``output``: ``"ids"`` (integer tensors: token ids, BOS
   columns, beam indices), ``"mask"`` (torch.bool), ``"loss"`` (a floating tensor with one element,
   not a Python number), ``"float"``; a tuple or dict of these for tuple / dict results; plus the
   device of every returned tensor;
3. compares the values with the reference (:func:`same`); on a mismatch it runs every known-wrong
   :class:`Variant` on the same case and, if the learner's result equals one that differs from the
   reference here, raises that variant's hint. :func:`variant_grid` builds single mistakes *and*
   pairs of mistakes ("two mistakes: …; and …") from one formula with flags;
4. when no variant matches, the check's ``probes`` run: they call the learner's function again on
   diagnostic inputs and name what they see (attention weights read with V = identity: weight on
   hidden keys, rows not summing to 1, the softmax's temperature; a mean loss's implied denominator;
   a loss that ignores other rows or the targets; uniform cross-attention that must not depend on x);
   then :func:`structural_hint` compares the result with transforms of the reference (transposed,
   inverted, a mask that sees the future or lacks the diagonal, tokens shifted along the sequence,
   fields swapped, a constant factor, probabilities not summing to 1 or leaking onto removed entries).
   Otherwise a generic sentence about shape (naming the axis that differs), dtype, NaN or the largest
   difference ("infinite", never 1.8e+308).

After all cases pass, ``properties`` (callables taking ``fn`` and raising :class:`Fail`) test what
values alone cannot: :func:`loss_backward_property` calls ``backward()`` (nothing-to-count case
included), statistical tests run with a fixed seed, decoding checks count the positions each model
call processes. Checks never change the notebook's random state.

Rules of thumb for cases: edge cases (a batch of one, length one, padding, a fully masked row,
nothing to predict), rows with *different* numbers of counted tokens (mean over tokens vs mean of
per-row means), and **every argument at a non-default value in some case** (``pad_id``, ``eos_id``,
``bos_id``, ``mask_id``, ``vocab_size`` …) so a hard-coded constant is caught. Pass keyword-only
arguments of the library's signature as keywords.

:func:`use_or_reference` lets a later task build on an earlier one: it returns the learner's
function when it passes its check, the library's otherwise, and says which.
"""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import IGNORE

__all__ = ["use_or_reference", "register"]

# The course's special token ids (course_lib.tokenizer): PAD 0, BOS 1, EOS 2, UNK 3, MASK 4, SEP 5.
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID = 0, 1, 2, 3, 4, 5
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID)
NINF = float("-inf")


# --------------------------------------------------------------------------------------------
# cases, variants, failures
# --------------------------------------------------------------------------------------------
class NotImplementedYet(Exception):
    """The learner's function raised NotImplementedError."""


class Fail(Exception):
    """One-sentence diagnosis; turned into an AssertionError at the top of the check."""


@dataclass
class Case:
    """One input of a check. Pass the *same* object twice in ``args`` to test aliasing."""

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class Variant:
    """A known-wrong implementation and the sentence that explains the mistake.
    ``hint`` may use ``{got}`` and ``{expected}`` (the two shapes)."""

    fn: Callable[..., Any]
    hint: str


def variant_grid(formula: Callable[..., Any], axes: dict[str, dict[Any, str]], *, max_mistakes: int = 2,
                 pairs: bool = True) -> list[Variant]:
    """Known-wrong variants from one ``formula(*args, **flags)``. ``axes`` maps a flag to
    ``{value: hint}``; the *first* value of each flag is the correct one (its hint is unused).
    Returns every single mistake, then (``pairs``) every pair of mistakes on two different flags,
    whose hint is ``"two mistakes: <hint 1>; and <hint 2>"``."""
    wrong = [(flag, value, hint) for flag, opts in axes.items() for i, (value, hint) in enumerate(opts.items()) if i > 0]

    def make(combo):
        flags = {f: v for f, v, _ in combo}
        fn = lambda *a, **kw: formula(*a, **kw, **flags)  # noqa: E731
        if len(combo) == 1:
            return Variant(fn, combo[0][2])
        parts = [h.rstrip(". ") for _, _, h in combo]
        return Variant(fn, "two mistakes: " + parts[0] + "; and " + parts[1][:1].lower() + parts[1][1:])

    out = [make((w,)) for w in wrong]
    if pairs and max_mistakes >= 2:
        out += [make(c) for c in itertools.combinations(wrong, 2) if c[0][0] != c[1][0]]
    return out


# backwards-compatible private names (older code and tests use them)
_NotImplementedYet, _Fail, _Case, _Variant = NotImplementedYet, Fail, Case, Variant


# --------------------------------------------------------------------------------------------
# copying, comparing, formatting
# --------------------------------------------------------------------------------------------
def _copy(obj):
    """Deep copy that keeps aliasing inside ``obj`` and shares nn.Modules (models are not inputs)."""
    memo: dict = {}

    def seed(o):
        if isinstance(o, nn.Module):
            memo[id(o)] = o
        elif isinstance(o, (tuple, list)):
            for x in o:
                seed(x)
        elif isinstance(o, dict):
            for x in o.values():
                seed(x)

    seed(obj)
    return copy.deepcopy(obj, memo)


_clone = _copy


def _unchanged(a, b) -> bool:
    if isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return True
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        return torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_unchanged(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_unchanged(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return True


def _shape(t) -> tuple:
    return tuple(t.shape)


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def number(x: float) -> str:
    """A number for a sentence: 'infinite' / '-infinite' / 'NaN' rather than 1.8e+308."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x) or abs(x) > 1e300:
        return "infinite" if x > 0 else "minus infinite"
    return f"{x:.4g}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x))
    return x


def same(a, b, *, lenient: bool = False, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Do two results agree (tensors, numbers, tuples, lists, dicts)? ``lenient`` also accepts
    agreement once NaN/±inf become 0 (used only to match known-wrong variants, whose NaNs a
    learner may have zeroed). Integer and float tensors of equal values agree here: types are
    judged separately by ``output=``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same(a[k], b[k], lenient=lenient, atol=atol, rtol=rtol) for k in b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y, lenient=lenient, atol=atol, rtol=rtol) for x, y in zip(a, b))
    a, b = _as_tensor(a), _as_tensor(b)
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        return False
    if a.numel() == 1 and b.numel() == 1:  # a loss: accept a 0-d tensor, a (1,) tensor or a float
        a, b = a.reshape(()), b.reshape(())
    if a.shape != b.shape:
        return False
    if (a.dtype == torch.bool) != (b.dtype == torch.bool) and not (a.is_floating_point() or b.is_floating_point()):
        return torch.equal(a.long(), b.long())
    if a.dtype == torch.bool or b.dtype == torch.bool or not (a.is_floating_point() or b.is_floating_point()):
        return torch.equal(a.long(), b.long())
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True) and torch.equal(a.isinf(), b.isinf()):
        return True
    if lenient:
        z = lambda t: torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)  # noqa: E731
        return torch.allclose(z(a), z(b), atol=atol, rtol=rtol)
    return False


_same = same


# --------------------------------------------------------------------------------------------
# calling the learner's function
# --------------------------------------------------------------------------------------------
def _arg_label(i: int | str, arg_names: Sequence[str] | None) -> str:
    if isinstance(i, str):
        return i
    if arg_names and i < len(arg_names):
        return arg_names[i]
    return f"argument {i + 1}"


def _mutation_hint(name: str, label: str, case_name: str, value=None) -> str:
    if isinstance(value, Tensor):
        how = f"`{label} = {label}.clone()` first, or out-of-place operations such as `{label} = {label} / s` instead of `{label} /= s`"
    else:
        how = "new lists (`s + [EOS]`, `list(s)`) instead of `.append` / `.extend` / item assignment on the caller's lists"
    return (f"{name}: your function changed its input `{label}` in place on the case '{case_name}' — work on a copy ({how}), "
            "otherwise the caller's data is silently corrupted.")


def call(name: str, fn: Callable, case: Case, *, arg_names: Sequence[str] | None = None, grad: bool = False,
         check_mutation: bool = True):
    """Call the learner's function on a copy of the case's inputs; fail if it changed them."""
    if grad:  # the caller's own leaf tensors, so that their .grad can be read afterwards
        pristine, (args, kwargs), check_mutation = None, (list(case.args), dict(case.kwargs)), False
    else:
        pristine = _copy((case.args, case.kwargs))
        args, kwargs = _copy(pristine)
    try:
        with torch.set_grad_enabled(grad):
            out = fn(*args, **kwargs)
    except NotImplementedError:
        raise NotImplementedYet from None
    except Fail:
        raise
    except Exception as e:  # noqa: BLE001 - any learner error becomes one friendly sentence
        raise Fail(f"{name} raised {_one_line(e).rstrip('.')} on the case '{case.name}'; read the error, fix the cell above and run it again.") from None
    if check_mutation:
        for i, (before, after) in enumerate(zip(pristine[0], args)):
            if not _unchanged(before, after):
                raise Fail(_mutation_hint(name, _arg_label(i, arg_names), case.name, before))
        for k in pristine[1]:
            if not _unchanged(pristine[1][k], kwargs[k]):
                raise Fail(_mutation_hint(name, k, case.name, pristine[1][k]))
    return out


def _call(name: str, fn: Callable, case: Case, **kw):
    return call(name, fn, case, **kw)


# --------------------------------------------------------------------------------------------
# types of the result
# --------------------------------------------------------------------------------------------
_KIND_WORDS = {"ids": "token ids / indices", "mask": "a mask", "loss": "the loss", "float": "values"}


def type_problem(name: str, got, expected, output, case_name: str, what: str | None = None) -> str | None:
    """One sentence if ``got`` has the wrong type / dtype / device for ``output`` (see module doc)."""
    where = f"on the case '{case_name}'"
    label = f"'{what}'" if what else "the result"
    if output is None or got is None:
        return None
    if isinstance(output, dict):
        if not isinstance(got, dict):
            return None  # the value comparison explains it
        for k, kind in output.items():
            if k in got and isinstance(expected, dict) and k in expected:
                p = type_problem(name, got[k], expected[k], kind, case_name, what=k)
                if p:
                    return p
        return None
    if isinstance(output, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(output):
            return None
        names = what.split(",") if what and "," in what else [None] * len(output)
        for i, (g, e, kind) in enumerate(zip(got, expected, output)):
            p = type_problem(name, g, e, kind, case_name, what=names[i] if names[i] else None)
            if p:
                return p
        return None
    if output == "loss":
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            return (f"{name} returned a Python number on the case '{case_name}'; return the loss as a tensor computed from the logits "
                    "(no .item() or float(...)), so that loss.backward() can train the model.")
        if isinstance(got, Tensor) and not got.is_floating_point():
            return f"{name} returned a loss of dtype {got.dtype} {where}; a loss is a floating-point tensor."
    if not isinstance(got, Tensor) or not isinstance(expected, Tensor):
        return None
    if output == "mask" and got.dtype != torch.bool:
        return f"{name}: {label} has dtype {got.dtype} {where}; a mask in this course is a torch.bool tensor (build it with a comparison, or add .bool())."
    if got.device != expected.device:
        return f"{name} returned {label} on device {got.device} {where} but the inputs are on {expected.device}; create new tensors with device=… of the inputs (e.g. torch.zeros_like)."
    if output == "ids" and (got.is_floating_point() or got.dtype == torch.bool or got.is_complex()):
        return (f"{name} returned {label} as {str(got.dtype).replace('torch.', 'torch.')} {where}; token ids and indices must be integers "
                "(torch.long) — nn.Embedding and indexing reject floats — so use .long() or integer operations (//, argmax, torch.full(..., dtype=torch.long)).")
    if output == "float" and not got.is_floating_point():
        if got.dim() == expected.dim() - 1 and tuple(got.shape) == tuple(expected.shape[:-1]):
            return (f"{name} returned integer indices of shape {_fmt(_shape(got))} (one per row) {where}; return floating-point values of "
                    f"shape {_fmt(_shape(expected))}, one per entry of the last axis (e.g. a one-hot row for an argmax).")
        return f"{name} returned {label} of dtype {got.dtype} {where}; it should be a floating-point tensor of shape {_fmt(_shape(expected))}."
    return None


# --------------------------------------------------------------------------------------------
# the diagnosis
# --------------------------------------------------------------------------------------------
def _variant_hint(name: str, v: Variant, case: Case, got, expected) -> str:
    try:
        hint = v.hint.format(got=_fmt(_shape(got)) if isinstance(got, Tensor) else "?",
                             expected=_fmt(_shape(expected)) if isinstance(expected, Tensor) else "?")
    except Exception:  # noqa: BLE001
        hint = v.hint
    return f"{name}: {hint.rstrip('.')} (seen on the case '{case.name}')."


def match_variant(name: str, case: Case, got, expected, variants: Sequence[Variant], *, transform=None) -> str | None:
    """The hint of the first known-wrong variant that the result equals (and the reference does not)."""
    for v in variants:
        try:
            with torch.no_grad():
                wrong = v.fn(*_copy(case.args), **_copy(case.kwargs))
        except Exception:  # noqa: BLE001 - a variant that cannot run on this case tells us nothing
            continue
        if transform is not None:
            wrong = transform(wrong)
        if same(wrong, expected):
            continue  # this mistake is invisible on this case
        if same(got, wrong) or same(got, wrong, lenient=True):
            return _variant_hint(name, v, case, got, expected)
    return None


def _first_true(m: Tensor) -> tuple[int, int]:
    idx = m.nonzero()[0].tolist()
    return idx[-2], idx[-1]


def _mask_structure(name: str, got: Tensor, expected: Tensor, where: str) -> str | None:
    """Describe how a square boolean mask (…, T, T) (rows = queries, columns = keys) differs."""
    t = expected.shape[-1]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    extra, missing = got & ~expected, expected & ~got
    if torch.equal(got, ~expected):
        return f"{name}: the mask is inverted: True must mean 'may attend' (and False 'hidden'), so flip it with `~` {where}."
    later, diag = (j > i).expand_as(expected), (j == i).expand_as(expected)
    if extra.any() and not missing.any():
        qi, kj = _first_true(extra)
        if not (extra & ~later).any():
            return (f"{name}: query {qi} may see key {kj}, a later position — your mask lets queries see the future (keys j > i); "
                    f"hide every key after the query {where}.")
        return f"{name}: query {qi} may see key {kj}, which must be hidden — your mask lets through one key too many on that row {where}."
    if missing.any() and not extra.any():
        qi, kj = _first_true(missing)
        if not (missing & ~diag).any():
            return f"{name}: the diagonal is missing: every query must also see itself (key j = i) {where}."
        if not (missing & later).any():
            return (f"{name}: query {qi} must see key {kj} (j <= i: the causal part, the query itself and the keys before it) "
                    f"but your mask hides it {where}.")
        return f"{name}: query {qi} must see key {kj} but your mask hides it {where}."
    if extra.any() and missing.any():
        qi, kj = _first_true(extra)
        qm, km = _first_true(missing)
        fut = " (a later position: the future)" if bool(later[..., qi, kj].all()) else ""
        return (f"{name}: query {qi} may see key {kj}{fut}, which must be hidden, while query {qm} cannot see key {km}, "
                f"which must be visible {where}.")
    return None


def _shift_of(got: Tensor, expected: Tensor) -> int | None:
    """k if ``got`` equals ``expected`` moved k positions along the last axis (edge columns ignored)."""
    t = expected.shape[-1]
    for k in (1, -1, 2, -2):
        if t <= abs(k) + 1:
            continue
        a, b = (got[..., k:], expected[..., :-k]) if k > 0 else (got[..., :k], expected[..., -k:])
        if torch.equal(a, b) and not torch.equal(got, expected):
            return k
    return None


def structural_hint(name: str, case: Case, got, expected, *, is_mask: bool = False) -> str | None:
    """General diagnoses tried when no known-wrong variant matches: fields swapped, the result
    transposed or inverted, a mask that sees the future or hides the diagonal, tokens shifted along
    the sequence, a constant factor, probabilities that do not sum to 1 or leak onto entries that
    must be exactly 0. One sentence, or None."""
    where = f"(seen on the case '{case.name}')"
    if isinstance(got, dict) and isinstance(expected, dict):
        for k in expected:
            if k in got and not same(got[k], expected[k]):
                for k2 in expected:
                    if k2 != k and k2 in got and same(got[k], expected[k2]) and not same(expected[k], expected[k2]):
                        return f"{name}: '{k}' holds what '{k2}' should hold — the two are swapped {where}."
                h = structural_hint(name, case, got[k], expected[k], is_mask=is_mask)
                if h:
                    return h.replace(f"{name}: ", f"{name}: in '{k}', ", 1)
        return None
    got_s, exp_s = _as_tensor(got), _as_tensor(expected)
    if isinstance(got_s, Tensor) and isinstance(exp_s, Tensor) and got_s.numel() == 1 and exp_s.numel() == 1 and got_s.is_floating_point():
        gv, ev = float(got_s.detach()), float(exp_s.detach())
        if math.isfinite(gv) and abs(ev) > 1e-6:
            if abs(gv - math.exp(ev)) < 1e-4 * max(1.0, abs(gv)):
                return f"{name}: you returned exp(loss), the perplexity; return the loss itself (the mean −log p) {where}."
            if abs(gv + ev) < 1e-5 * max(1.0, abs(ev)):
                return f"{name}: the sign is flipped; the loss is −log p(target), a positive number to minimise {where}."
        return None
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape or expected.numel() <= 1:
        return None
    g, e = got.detach().cpu(), expected.detach().cpu()
    if is_mask or e.dtype == torch.bool:
        gb = g if g.dtype == torch.bool else g != 0
        eb = e if e.dtype == torch.bool else e != 0
        if e.dim() >= 2 and e.shape[-1] == e.shape[-2]:
            if torch.equal(gb, eb.transpose(-2, -1)) and not torch.equal(eb, eb.transpose(-2, -1)):
                return (f"{name}: the mask is transposed: row i is query i and column j key j, so query i may see keys j <= i "
                        f"(the lower triangle, torch.tril) {where}.")
            return _mask_structure(name, gb, eb, where)
        if torch.equal(gb, ~eb):
            return f"{name}: the mask is inverted: True must mean 'may attend' (and False 'hidden'), so flip it with `~` {where}."
        return None
    if e.dim() >= 2 and e.shape[-1] == e.shape[-2] and same(g, e.transpose(-2, -1)) and not same(e, e.transpose(-2, -1)):
        return f"{name}: your result is the reference transposed (its last two axes swapped) {where}."
    if not e.is_floating_point() and not g.is_floating_point():
        k = _shift_of(g, e)
        if k is not None:
            side = "right" if k > 0 else "left"
            return (f"{name}: your tokens sit {abs(k)} position{'s' if abs(k) > 1 else ''} too far to the {side} compared with the "
                    f"reference — the shift is off by {abs(k)} {where}.")
        return None
    if not (e.is_floating_point() and g.is_floating_point()) or not bool(torch.isfinite(g).all()) or not bool(torch.isfinite(e).all()):
        return None
    g, e = g.double(), e.double()
    if e.dim() >= 1 and e.shape[-1] > 1 and bool((e >= -1e-9).all()):
        rs = e.sum(-1)
        if bool((((rs - 1).abs() < 1e-4) | (rs.abs() < 1e-9)).all()) and bool(((rs - 1).abs() < 1e-4).any()):
            grs = g.sum(-1)
            bad = ((grs - rs).abs() > 1e-3)
            if bool(bad.any()):
                val = grs[bad].flatten()[0].item()
                neg = " and some are negative" if bool((g < -1e-9).any()) else ""
                return (f"{name}: your rows do not sum to 1 (one sums to {number(val)}){neg}: the result must be a probability "
                        f"distribution over the last axis — a softmax after every change, and nothing rescaled or zeroed after it {where}.")
            leak = (e.abs() < 1e-12) & (g > 1e-6)
            if bool(leak.any()):
                return (f"{name}: entries that must be exactly 0 still get probability: give what is removed a logit (score) of -inf "
                        f"before the softmax, not 0 {where}.")
    nz = e.abs() > 1e-6
    if int(nz.sum()) >= 2 and bool((g[~nz].abs() < 1e-6).all()):
        r = g[nz] / e[nz]
        c = r.mean().item()
        if abs(c - 1) > 1e-3 and bool(((r - c).abs() < 1e-4 * max(1.0, abs(c))).all()):
            return (f"{name}: your values are the reference's times {number(c)} everywhere — a constant factor is off (a scale such as "
                    f"√d, a sum instead of a mean, or a division by the wrong count) {where}.")
    return None


def _axes_note(got: Tensor, expected: Tensor) -> str:
    """'; axis 0 (the batch) has 1 entry instead of 3 — …' for a shape mismatch of equal rank."""
    if got.dim() != expected.dim():
        extra = got.dim() - expected.dim()
        return f"; it has {abs(extra)} {'more' if extra > 0 else 'fewer'} ax{'es' if abs(extra) > 1 else 'is'} than expected"
    diff = [i for i in range(got.dim()) if got.shape[i] != expected.shape[i]]
    if sorted(got.shape) == sorted(expected.shape) and len(diff) >= 2:
        return "; the same sizes in another order: some axes are swapped"
    if got.numel() == expected.numel() and len(diff) >= 2:
        return "; the same number of values arranged differently: the wrong axes were merged or split"
    if len(diff) != 1:
        return ""
    i = diff[0]
    what = " (the batch: keep every row)" if i == 0 and got.dim() >= 2 else ""
    return f"; axis {i}{what} has {got.shape[i]} entries instead of {expected.shape[i]}"


def _diagnose(name: str, case: Case, got, expected, variants: Sequence[Variant], *, is_mask: bool = False,
              more: Callable[[], str | None] | None = None) -> str | None:
    """None if ``got`` matches ``expected``; otherwise one sentence naming the likely mistake.
    ``more()`` (probes of the learner's function, then :func:`structural_hint`) runs when no
    known-wrong variant matches, before the generic sentences."""
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
        if got.shape == expected.shape and not got.is_floating_point() and bool((got < 0).any()):
            return (f"{name} returned dtype {got.dtype} with negative values: `~` on an integer tensor is a bitwise not (~0 = -1, ~1 = -2); "
                    f"masks in this course are boolean, so apply `~` to the bool result of a comparison (no .int()).")
    if same(got, expected):
        return None
    got_cmp = got.ne(0) if (is_mask and isinstance(got, Tensor) and got.dtype != torch.bool) else got
    got_t = _as_tensor(got)
    if isinstance(expected, Tensor) and expected.numel() == 1 and isinstance(got_t, Tensor) and got_t.numel() == 1 \
            and got_t.is_floating_point() and bool(torch.isnan(got_t).any()) and not bool(torch.isnan(expected).any()):
        return (f"{name} returned NaN on the case '{case.name}', where the reference gives {number(expected)}; when nothing is counted the loss "
                "must be 0, not NaN (0 / 0): return logits.sum() * 0.0 in that case.")
    hit = match_variant(name, case, got_cmp, expected, variants)
    if hit:
        return hit
    where = f"on the case '{case.name}'"
    if more is not None:
        hit = more()
        if hit:
            return hit
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            if isinstance(got, (int, float)) and expected.numel() == 1:
                pass
            else:
                return f"{name} returned a {type(got).__name__} {where} but should return a torch.Tensor of shape {_fmt(_shape(expected))}."
        got_t = _as_tensor(got)
        if expected.numel() == 1 and got_t.numel() != 1:
            return (
                f"{name} returned a tensor of shape {_fmt(_shape(got_t))} {where} but should return a single "
                "number (the mean over the counted tokens), shape ()."
            )
        if got_t.numel() != 1 and got_t.shape != expected.shape:
            return f"{name} returned shape {_fmt(_shape(got_t))} but the expected shape is {_fmt(_shape(expected))} {where}{_axes_note(got_t, expected)}."
        if got_t.is_floating_point() and bool(torch.isnan(got_t).any()) and not bool(torch.isnan(expected).any()):
            if expected.numel() == 1:
                return (f"{name} returned NaN {where}, where the reference gives {number(expected)}; when nothing is counted the loss must be 0 "
                        "(return logits.sum() * 0.0), and a mean over an empty set or log(0) gives NaN.")
            return f"{name} returned NaN {where}, where the reference has finite values; look for a softmax over a row of -inf or a mean over an empty set."
        if got_t.is_floating_point() and bool(torch.isinf(got_t).any()) and not bool(torch.isinf(expected).any()):
            return f"{name} returned an infinite value {where}, where the reference is finite; look for log(0) (use log_softmax / cross_entropy) or a division by zero."
        if got_t.is_floating_point() and expected.is_floating_point():
            diff = (got_t.detach().double().cpu().reshape(expected.shape) - expected.double().cpu()).abs().max().item()
            return f"{name} gives different values from the reference {where} (largest difference {number(diff)}); compare your code with the formula above, step by step."
        wrong = int((got_t.reshape(expected.shape).long().cpu() != expected.long().cpu()).sum())
        return f"{name} differs from the reference in {wrong} of {expected.numel()} entries {where}; compare your code with the formula above."
    return f"{name} gives a different result from the reference {where}."


def _ok(name: str, n: int, what: str = "cases match") -> bool:
    print(f"✅ {name}: all {n} {what}.")
    return True


def _pending(name: str) -> bool:
    print(f"⏳ {name}: not implemented yet — fill in the cell above and run it again.")
    return False


def not_callable(name: str, fn) -> None:
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")


def guarded(name: str, body: Callable[[], int | None], what: str = "cases match") -> bool:
    """Run ``body()`` (which raises Fail / NotImplementedYet, and returns the number of cases) with
    the notebook's random state untouched, and turn the outcome into the check's verdict."""
    try:
        with torch.random.fork_rng(devices=[]):
            n = body()
    except NotImplementedYet:
        return _pending(name)
    except Fail as e:
        raise AssertionError(str(e)) from None
    return _ok(name, n or 0, what)


def run_check(name: str, fn: Callable, cases: Sequence[Case], reference: Callable, variants: Sequence[Variant], *,
              is_mask: bool = False, output=None, arg_names: Sequence[str] | None = None,
              properties: Sequence[Callable[[Callable], None]] = (), shape_check: Callable | None = None,
              transform: Callable | None = None, output_names: Sequence[str] | None = None,
              pre_check: Callable | None = None, probes: Sequence[Callable] = ()) -> bool:
    """The standard check (see the module docstring). ``transform`` normalises both results before
    comparing (e.g. ignore don't-care entries); ``shape_check(got, expected, case) -> str | None``
    explains a mismatch no variant matched; ``pre_check(got, expected, case) -> str | None`` runs
    before the type check (e.g. outputs returned in the wrong order). When no variant matches,
    ``probes`` (``probe(fn, case, got, expected) -> str | None``, which may call ``fn`` again on
    diagnostic inputs, e.g. V = identity to read attention weights) run, then the general
    :func:`structural_hint`, before any generic sentence."""
    not_callable(name, fn)

    def more_for(case, got, expected, got_c, exp_c):
        def more():
            for probe in probes:
                try:
                    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                        hit = probe(fn, case, got, expected)
                except Fail:
                    raise
                except Exception:  # noqa: BLE001 - a probe that cannot run tells us nothing
                    hit = None
                if hit:
                    return hit
            return structural_hint(name, case, got_c, exp_c, is_mask=is_mask)
        return more

    def body():
        for case in cases:
            torch.manual_seed(0)
            with torch.no_grad():
                expected = reference(*_copy(case.args), **_copy(case.kwargs))
            got = call(name, fn, case, arg_names=arg_names)
            if got is None:
                raise Fail(f"{name} returned None on the case '{case.name}'; did you forget the `return` statement?")
            problem = pre_check(got, expected, case) if pre_check is not None and not same(got, expected) else None
            problem = problem or type_problem(name, got, expected, output, case.name,
                                   what=",".join(output_names) if output_names else None)
            if problem:
                raise Fail(problem)
            got_c = transform(got) if transform else got
            exp_c = transform(expected) if transform else expected
            if shape_check is None:
                problem = _diagnose(name, case, got_c, exp_c, variants, is_mask=is_mask,
                                    more=more_for(case, got, expected, got_c, exp_c))
            elif same(got_c, exp_c):
                problem = None
            else:
                problem = match_variant(name, case, got_c, exp_c, variants, transform=transform) or shape_check(got, expected, case) or \
                    more_for(case, got, expected, got_c, exp_c)() or (
                    f"{name} gives a different result from the reference on the case '{case.name}'; compare your code with the description above, step by step.")
            if problem:
                raise Fail(problem)
        for prop in properties:
            prop(fn)
        return len(cases)

    return guarded(name, body)


def _run(name, fn, cases, reference, variants, *, is_mask=False, **kw) -> bool:
    return run_check(name, fn, cases, reference, variants, is_mask=is_mask, **kw)


# --------------------------------------------------------------------------------------------
# properties shared by several checks
# --------------------------------------------------------------------------------------------
def loss_backward_property(name: str, cases: Sequence[Case], reference: Callable, *, grad_arg: int = 0,
                           arg_names: Sequence[str] | None = None) -> Callable[[Callable], None]:
    """A property: for each case, the learner's loss is a tensor connected to ``args[grad_arg]``
    (the logits), ``backward()`` works (also when nothing is counted) and gives the reference's
    gradient, with no NaN."""

    def prop(fn):
        for case in cases:
            args = list(_copy(case.args))
            leaf = args[grad_arg].detach().clone().requires_grad_(True)
            args[grad_arg] = leaf
            ref_leaf = case.args[grad_arg].detach().clone().requires_grad_(True)
            ref_args = list(_copy(case.args))
            ref_args[grad_arg] = ref_leaf
            reference(*ref_args, **_copy(case.kwargs)).backward()
            c = Case(case.name, tuple(args), case.kwargs)
            out = call(name, fn, c, arg_names=arg_names, grad=True, check_mutation=False)
            where = f"on the case '{case.name}'"
            if not isinstance(out, Tensor):
                raise Fail(f"{name} returned a {type(out).__name__} {where}; return the loss as a tensor computed from the logits, so that loss.backward() can train the model.")
            if not out.requires_grad:
                raise Fail(
                    f"{name} returned a loss that is not connected to the logits {where} (a new torch.tensor(...), .item(), .detach() or "
                    "torch.no_grad() cut the graph), so loss.backward() fails; when nothing is counted return logits.sum() * 0.0."
                )
            try:
                out.reshape(()).backward() if out.numel() == 1 else out.sum().backward()
            except Exception as e:  # noqa: BLE001
                raise Fail(f"{name}: loss.backward() raised {_one_line(e).rstrip('.')} {where}; keep the loss a differentiable function of the logits.") from None
            g = leaf.grad
            if g is None:
                raise Fail(f"{name}: loss.backward() gives the logits no gradient {where}; compute the loss from the logits themselves.")
            if bool(torch.isnan(g).any()):
                raise Fail(
                    f"{name}: loss.backward() gives NaN gradients {where}, which would ruin the model's weights; when nothing is counted return "
                    "logits.sum() * 0.0, and avoid log(softmax(…)) or 0/0."
                )
            if not torch.allclose(g.double(), ref_leaf.grad.double(), atol=1e-5, rtol=1e-3):
                raise Fail(f"{name}: the gradient of your loss differs from the reference's {where}, although the values agree; compute it from the logits with differentiable operations (no .detach() inside).")

    return prop


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def _padded_tokens(g: torch.Generator, lengths: Sequence[int], t: int, vocab: int = 20, bos: bool = False, eos: bool = False,
                   pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Tensor:
    """Right-padded ids ``(B, t)``: ordinary tokens (ids >= 6), optional BOS/EOS, then PAD."""
    out = torch.full((len(lengths), t), pad_id, dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(len(SPECIAL_IDS), vocab, (n,), generator=g)
        if pad_id >= len(SPECIAL_IDS):
            row[row == pad_id] = len(SPECIAL_IDS)
        if bos and n > 0:
            row[0] = BOS_ID
        if eos and n > 1:
            row[-1] = eos_id
        out[i, :n] = row
    return out


# --------------------------------------------------------------------------------------------
# loss helpers shared by the MLM, CLM and seq2seq checks
# --------------------------------------------------------------------------------------------
def _nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-position −log p(target); targets equal to IGNORE give 0."""
    safe = targets.clamp(min=0)
    out = -F.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    return out.masked_fill(targets == IGNORE, 0.0)


def loss_formula(logits: Tensor, targets: Tensor, *, reduce: str = "tokens", logp: str = "log_softmax", empty: str = "zero",
                 smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)`` (IGNORE = not counted), with
    the usual wrong turns as flags: ``reduce`` in tokens / sum / all (mean over B·T) / rows (mean of
    per-row means); ``logp`` in log_softmax / none (logits used as log-probs) / unstable
    (log(softmax)) / softmax_nll (−softmax, no log); ``empty`` in zero / nan."""
    lg = logits.float()
    if logp == "bce":  # a sigmoid per vocabulary entry against the one-hot target
        keep = targets != IGNORE
        onehot = F.one_hot(targets.clamp(min=0), lg.shape[-1]).float()
        per = F.binary_cross_entropy_with_logits(lg, onehot, reduction="none").mean(-1) * keep
        n = keep.sum()
        return per.sum() / n if int(n) else lg.sum() * 0.0
    lp = {"log_softmax": lambda: F.log_softmax(lg, -1), "none": lambda: lg, "unstable": lambda: lg.softmax(-1).log(),
          "softmax_nll": lambda: lg.softmax(-1), "wrong_axis": lambda: F.log_softmax(lg, 1),
          "double_softmax": lambda: F.log_softmax(lg.softmax(-1), -1)}[logp]()
    keep = targets != IGNORE
    per = -lp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    if smoothing:
        per = (1 - smoothing) * per - smoothing * lp.mean(-1)
    per = per * keep
    n = keep.sum()
    if reduce == "sum":
        return per.sum()
    if reduce == "batch":
        return per.sum() / targets.shape[0]
    if reduce == "all":
        return per.mean()
    if reduce == "rows_sum":
        cnt = keep.sum(1)
        return (per.sum(1) / cnt.clamp(min=1)).sum()
    if reduce == "positions":  # mean over the batch at each position, then over the positions
        cnt = keep.sum(0)
        cols = per.sum(0) / cnt.clamp(min=1)
        return cols[cnt > 0].mean() if bool((cnt > 0).any()) else lg.sum() * 0.0
    if reduce == "rows":
        cnt = keep.sum(1)
        rows = per.sum(1) / cnt.clamp(min=1)
        return rows[cnt > 0].mean() if empty == "nan" or bool((cnt > 0).any()) else lg.sum() * 0.0
    if int(n) == 0:
        return lg.sum() * (float("nan") if empty == "nan" else 0.0)
    return per.sum() / n


_MEAN = "the loss is a sum; return the mean over the counted tokens, so batches with different padding are comparable."
_PER_ROW = "the loss is averaged per sequence and then over the batch; average over all counted tokens at once, so every token weighs the same."
_ALL = "the loss is averaged over all positions, padding included; divide by the number of counted targets only."
_BATCH = "the summed loss is divided by the batch size B; divide by the number of counted tokens, so every token weighs the same."
_LOGP = {
    "none": "the logits are used as log-probabilities; apply log_softmax first (or call F.cross_entropy on the logits).",
    "unstable": "log(softmax(logits)) underflows to -inf for large logits; use F.log_softmax or F.cross_entropy, which are numerically stable.",
    "softmax_nll": "the probabilities are used without the log: the loss is −log p(target), e.g. F.cross_entropy(logits, targets).",
    "wrong_axis": "the log-softmax runs over the wrong axis (dim=1, the positions); normalise over the vocabulary, dim=-1 (F.cross_entropy does this on (B·T, V) logits).",
    "bce": "binary cross-entropy (a sigmoid per vocabulary entry) is used; the loss is the softmax cross-entropy over the vocabulary, F.cross_entropy(logits, targets).",
    "double_softmax": "the logits go through a softmax before the cross-entropy, which applies its own log-softmax; pass the raw logits, not probabilities.",
}
_ROWS_SUM = ("the per-sequence means are added up over the batch; average over all counted tokens at once (one sum, divided by "
             "the number of counted tokens).")
_PER_POSITION = ("the loss is averaged per position over the batch and then over the positions; average over all counted tokens at once, "
                 "so every token weighs the same.")
_SMOOTH = "label smoothing is on; this loss is the plain cross-entropy (label_smoothing=0, the default)."
_EMPTY = "when nothing is counted the loss must be 0, not NaN (0 / 0); return `logits.sum() * 0.0` in that case."


def loss_inputs_probe(name: str, targets_arg: int = 1) -> Callable:
    """A probe for token-level losses: perturb the logits of every row but the first, then the target
    ids (ordinary ids only); a loss that does not move ignores those rows or never reads the targets."""
    def probe(fn, case, got, expected):
        args = list(case.args)
        logits, tgt = args[0], args[targets_arg]
        if not isinstance(logits, Tensor) or logits.dim() != 3 or not isinstance(tgt, Tensor):
            return None
        g = torch.Generator().manual_seed(11)

        def mine(new_args):
            with torch.no_grad():
                return _as_tensor(fn(*_copy(tuple(new_args)), **_copy(case.kwargs)))
        ordinary = (tgt >= len(SPECIAL_IDS)) & (tgt < logits.shape[-1])
        if logits.shape[0] > 1 and int(ordinary[1:].sum()) >= 2:
            a = list(args)
            a[0] = logits.clone()
            a[0][1:] += 3 * torch.randn(a[0][1:].shape, generator=g)
            out = mine(a)
            if isinstance(out, Tensor) and out.numel() == 1 and same(out, got):
                return (f"{name}: your loss does not change when the rows after the first change — only the first row of the batch "
                        f"is used; the mean runs over the counted tokens of every row (seen on the case '{case.name}').")
        if int(ordinary.sum()) >= 2:
            a = list(args)
            a[targets_arg] = tgt.clone()
            lo, v = len(SPECIAL_IDS), logits.shape[-1]
            a[targets_arg][ordinary] = lo + (tgt[ordinary] - lo + 1) % max(1, v - lo)
            out = mine(a)
            if isinstance(out, Tensor) and out.numel() == 1 and same(out, got):
                return (f"{name}: your loss does not change when the target ids change — it never reads the targets; take each "
                        f"position's log-probability *of its target* (gather, or F.cross_entropy(logits, targets)), not the max "
                        f"(seen on the case '{case.name}').")
        return None
    return probe


def denominator_probe(name: str, counted: Callable[..., Tensor]) -> Callable:
    """A probe for mean losses: ``counted(*case.args, **case.kwargs)`` is the bool (B, T') mask of the
    counted targets. If the learner's loss is the right *sum* divided by another whole number (B,
    B·T', N ± 1, …), say which number it divided by."""
    def probe(fn, case, got, expected):
        got_t = _as_tensor(got)
        if not isinstance(got_t, Tensor) or got_t.numel() != 1 or not isinstance(expected, Tensor) or expected.numel() != 1:
            return None
        keep = counted(*case.args, **case.kwargs)
        n = int(keep.sum())
        g_val, e_val = float(got_t.detach()), float(expected.detach())
        if n == 0 or abs(g_val) < 1e-12 or not math.isfinite(g_val) or abs(e_val) < 1e-9:
            return None
        d = e_val * n / g_val
        b, t = keep.shape[0], keep.shape[-1]
        named = {b: f"B = {b}, the batch size", b * t: f"{b * t}, every position (B·T)", n + 1: f"{n + 1}, the count plus one",
                 n - 1: f"{n - 1}, the count minus one", n / b: f"{number(n / b)}, the average count per row",
                 n + b: f"{n + b}, the non-padding tokens of the input (one more per row than there are targets)"}
        what = next((w for x, w in named.items() if x > 0 and x != n and abs(d - x) < 1e-3 * max(1.0, x)), None)
        if what is None:
            return None
        return (f"{name}: your loss is the right sum divided by {what}, but {n} targets are counted on the case '{case.name}'; "
                "divide the summed loss by the number of counted targets.")
    return probe


def _logits_case(g: torch.Generator, b: int, t: int, v: int, scale: float = 2.0) -> Tensor:
    return _randn(g, b, t, v) * scale


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
    from ``name``; a function without a check is used as it is.
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

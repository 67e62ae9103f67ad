"""The machinery every exercise check shares.

A check ``check_<name>(fn)`` runs a learner's function against a reference on seeded
:class:`Case` s and answers in **one friendly sentence**:

* success: prints ``✅ <name>: all N cases match.`` and returns ``True``;
* the function still raises ``NotImplementedError``: prints ``⏳ <name>: not implemented yet …``
  and returns ``False`` *without raising*, so an unsolved notebook runs top to bottom;
* anything wrong: raises :class:`CheckFailed` (an ``AssertionError``) with one sentence naming the
  likely mistake; a notebook shows that sentence alone (``_render_traceback_``), and
  :func:`full_tracebacks` / ``COURSE_CHECK_TRACEBACK=1`` bring the traceback back for instructors.
  A learner's exception becomes one sentence too (:func:`raised_hint` names the classic mistake behind
  common PyTorch errors), and so does anything the check itself cannot compare: a check never raises
  anything else, whatever the learner's function returns.

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

``early_probes`` run before the variants (an ignored argument, found by :func:`ignored_arg_probe` or
:func:`constant_argument_probe`, that a variant would otherwise explain wrongly); ``raise_probes`` name
the mistake behind a learner's exception (``k.T`` on a batched tensor, a transposed weight).

After all cases pass, ``properties`` (callables taking ``fn`` and raising :class:`Fail`) test what
values alone cannot — what flows into the next cell: :func:`device_property` runs one case on a GPU,
or without one on the ``meta`` device with copies to the CPU simulated, and names a tensor made on
the CPU; :func:`grad_property` checks that gradients reach the inputs; :func:`loss_backward_property`
calls ``backward()`` (nothing-to-count case included); statistical tests run with a fixed seed;
decoding checks count the positions each model call processes. The result's dtype is judged with
the values (float64 for float32 inputs, int32 ids). Checks never change the notebook's random state.

Rules of thumb for cases: edge cases (a batch of one, length one, padding, a fully masked row,
nothing to predict), rows with *different* numbers of counted tokens (mean over tokens vs mean of
per-row means), **every argument at a non-default value in some case** (``pad_id``, ``eos_id``,
``bos_id``, ``mask_id``, ``vocab_size`` …) so a hard-coded constant is caught, lengths beyond any
plausible fixed-size buffer (t = 70), batch sizes other than 1 and 2, the special tokens the course
uses, and sizes for which the common mistakes give *different* answers (check the first failing case:
its hint wins). Pass keyword-only arguments of the library's signature as keywords.

:func:`use_or_reference` lets a later task build on an earlier one: it returns the learner's
function when it passes its check, the library's otherwise, and says which.
"""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...losses import IGNORE

__all__ = ["use_or_reference", "register", "CheckFailed", "full_tracebacks"]

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
    """One-sentence diagnosis; turned into a :class:`CheckFailed` at the top of the check."""


#: ``COURSE_CHECK_TRACEBACK=1`` (or :func:`full_tracebacks`) shows a failing check's full traceback
#: in Jupyter, for instructors; learners see the one sentence alone.
TRACEBACK_ENV = "COURSE_CHECK_TRACEBACK"
_full_tracebacks: bool | None = None


def full_tracebacks(on: bool | None = True) -> None:
    """Show (``True``) or hide (``False``) the check machinery's traceback under a failing check's
    sentence in Jupyter; ``None`` goes back to the ``COURSE_CHECK_TRACEBACK`` environment variable."""
    global _full_tracebacks
    _full_tracebacks = on


def _tracebacks_wanted() -> bool:
    if _full_tracebacks is not None:
        return _full_tracebacks
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


class CheckFailed(AssertionError):
    """A check's verdict: one sentence naming the likely mistake. IPython renders an exception that
    has ``_render_traceback_`` with the lines it returns, so a notebook shows the sentence alone,
    not twenty lines of the check's own code; with :func:`full_tracebacks` the attribute is absent and
    the usual traceback comes back."""

    def __getattr__(self, attr: str):
        if attr == "_render_traceback_" and not _tracebacks_wanted():
            return self._one_sentence
        raise AttributeError(attr)

    def _one_sentence(self) -> list[str]:
        return [f"\x1b[0;31m✗\x1b[0m {self}"]


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
        if isinstance(o, (nn.Module, torch.Generator)):  # models and random generators are shared, not inputs
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
    if isinstance(a, (nn.Module, torch.Generator)) or isinstance(b, (nn.Module, torch.Generator)):
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
_EXACT = {"atol": 1e-9, "rtol": 1e-12}  # counts (bytes, FLOPs): the right answer + 1 is wrong


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
        fail = Fail(raised_hint(name, e, case.name))
        fail.raised = e
        raise fail from None
    if check_mutation:
        for i, (before, after) in enumerate(zip(pristine[0], args)):
            if not _unchanged(before, after):
                raise Fail(_mutation_hint(name, _arg_label(i, arg_names), case.name, before))
        for k in pristine[1]:
            if not _unchanged(pristine[1][k], kwargs[k]):
                raise Fail(_mutation_hint(name, k, case.name, pristine[1][k]))
    return out


#: Error messages of PyTorch / Python that point at one classic mistake, and the sentence that names it.
_ERROR_HINTS: list[tuple[str, str]] = [
    (r"not on the expected device|same device|Expected all tensors to be on|device type .* does not match|found at least two devices",
     "a tensor made inside your function is on another device than the inputs (torch.zeros, torch.arange, torch.tensor … "
     "default to the CPU): create it with device=x.device of an input, or with torch.zeros_like / x.new_full"),
    (r"numpy\(\)|\.numpy|can't convert .* to numpy|Can't call numpy",
     "you convert to numpy: stay in torch, since numpy works on the CPU only and cuts the autograd graph"),
    (r"view size is not compatible|use \.reshape",
     ".view cannot merge axes of a transposed (non-contiguous) tensor: use .reshape(...) (or .contiguous().view(...))"),
    (r"Expected target size|Expected input batch_size|only batches of spatial targets",
     "F.cross_entropy wants the classes on axis 1: flatten the logits to (N, V) and the targets to (N,) first, "
     "logits.reshape(-1, V) and targets.reshape(-1)"),
    (r"expected scalar type Long|to have one of the following scalar types: Long|tensors used as indices must be long|"
     r"must be long|Expected tensor for argument #1 'indices'|nll_loss.*(Int|Float)|not implemented for 'Float'|index_select\(\): Expected dtype int",
     "token ids and indices must be integer tensors of dtype torch.long (int64): nn.Embedding, gather and cross_entropy reject "
     "floats, and cross_entropy rejects int32 targets too"),
    (r"integer dtype", "token ids must be integer tensors (torch.long): a float tensor of ids (e.g. from torch.ones(...) * id) "
     "cannot be fed to the model"),
    (r"index out of range in self|out of bounds for dimension|index .* is out of bounds",
     "an index is out of range: token ids must lie in 0 … vocab_size - 1, and positions in 0 … T - 1"),
    (r"Boolean value of Tensor with more than one value is ambiguous",
     "`if`, `and`, `or` or `not` was used on a tensor with several values; use the element-wise operators &, | and ~ "
     "(and .any() / .all() where one answer is wanted)"),
    (r"Dimension out of range",
     "an axis that does not exist was used (e.g. dim=2 on a 2-D tensor); count axes from the end (-1, -2) so the code works "
     "whatever the leading dimensions"),
    (r"mat1 and mat2 shapes cannot be multiplied|size mismatch, got input|inconsistent tensor size|must match the size of tensor",
     "two shapes do not fit together in a product or a sum: check which matrix needs transposing (the last two axes: "
     ".transpose(-2, -1), not .T, which reverses every axis of a batched tensor) and keepdim=True in reductions"),
    (r"modified by an inplace operation|a leaf Variable that requires grad is being used in an in-place",
     "an in-place operation (+=, masked_fill_, x[...] = …) changed a tensor that autograd still needs: use the out-of-place "
     "form (x = x + …, masked_fill)"),
    (r"random_ expects 'from' to be less than 'to'|to - from must be|high.*<=.*low",
     "torch.randint got an empty range: its bounds are low (inclusive) and high (exclusive), and high must come from the "
     "arguments you are given (e.g. vocab_size), not from the data"),
    (r"math domain error|float division by zero|division by zero",
     "a log of 0 or a division by 0: catch the empty or zero case first"),
]


def raised_hint(name: str, e: BaseException, case_name: str) -> str:
    """The sentence for a learner's function that raised ``e``: the classic mistake its message points at,
    or the message itself."""
    msg = str(e)
    for pattern, hint in _ERROR_HINTS:
        if re.search(pattern, msg, re.I):
            return f"{name} raised {_one_line(e).rstrip('.')} on the case '{case_name}': {hint}."
    return f"{name} raised {_one_line(e).rstrip('.')} on the case '{case_name}'; read the error, fix the cell above and run it again."


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
    if output == "number":
        if isinstance(got, bool) or not isinstance(got, (int, float, Tensor)) or (isinstance(got, Tensor) and got.numel() != 1):
            what_got = f"a tensor of shape {_fmt(_shape(got))}" if isinstance(got, Tensor) else f"a {type(got).__name__}"
            return f"{name} should return one number; got {what_got} {where}."
        return None
    if not isinstance(got, Tensor) or not isinstance(expected, Tensor):
        return None
    if output == "mask" and got.dtype != torch.bool:
        return f"{name}: {label} has dtype {got.dtype} {where}; a mask in this course is a torch.bool tensor (build it with a comparison, or add .bool())."
    if got.device != expected.device:
        return (f"{name} returned {label} on device {got.device} {where} but the inputs are on {expected.device}: a tensor made inside "
                "your function (torch.zeros, torch.arange, torch.tensor …) defaults to the CPU; create it with device= of an input "
                "(or torch.zeros_like, x.new_full).")
    if output == "ids" and (got.is_floating_point() or got.dtype == torch.bool or got.is_complex()):
        return (f"{name} returned {label} as {str(got.dtype).replace('torch.', 'torch.')} {where}; token ids and indices must be integers "
                "(torch.long) — nn.Embedding and indexing reject floats — so use .long() or integer operations (//, argmax, torch.full(..., dtype=torch.long)).")
    if output == "ids" and got.dtype != expected.dtype and expected.dtype == torch.long:
        return (f"{name} returned {label} as {got.dtype} {where}; token ids, labels and indices must be torch.long (int64): "
                "F.cross_entropy rejects int32 targets and indexing expects int64, so build them with dtype=torch.long (or .long()).")
    if output in ("float", "loss") and got.is_floating_point() and expected.is_floating_point() and got.dtype != expected.dtype:
        how = ("the inputs are float32: a float64 table, a numpy array (float64) or a .double() somewhere promotes the result, and the "
               "next layer's float32 weights then reject it; keep the inputs' dtype (build tables with dtype=x.dtype, or .to(x.dtype))"
               if got.dtype == torch.float64 else f"return the inputs' dtype, {expected.dtype}")
        return f"{name} returned {label} as {got.dtype} {where} where the reference gives {expected.dtype}; {how}."
    if output == "float" and not got.is_floating_point():
        if got.dim() == expected.dim() - 1 and tuple(got.shape) == tuple(expected.shape[:-1]):
            return (f"{name} returned integer token ids / indices of shape {_fmt(_shape(got))} (one per row) {where}; return floating-point "
                    f"values of shape {_fmt(_shape(expected))}, one per entry of the last axis (the logits or probabilities themselves, "
                    "e.g. a one-hot row for an argmax).")
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
        if math.isfinite(gv) and 1e-6 < abs(ev) < 50:  # a loss: exp(ev) cannot overflow
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
    if int(nz.sum()) >= 2 and bool((g.abs() < 1e-12).all()):
        return (f"{name}: your result is all zeros where the reference's is not: nothing from the inputs reaches it — look for "
                f"a selection that keeps nothing (a mask, window or slice that is empty) or a product with zeros {where}.")
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
              more: Callable[[], str | None] | None = None, first: Callable[[], str | None] | None = None,
              exact: bool = False) -> str | None:
    """None if ``got`` matches ``expected``; otherwise one sentence naming the likely mistake.
    ``first()`` (early probes) runs before the known-wrong variants, ``more()`` (probes of the
    learner's function, then :func:`structural_hint`) when no variant matches, before the generic
    sentences. ``exact`` compares numbers to the last unit (counts of bytes or FLOPs)."""
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
    if same(got, expected, **(_EXACT if exact else {})):
        return None
    got_cmp = got.ne(0) if (is_mask and isinstance(got, Tensor) and got.dtype != torch.bool) else got
    got_t = _as_tensor(got)
    if isinstance(expected, Tensor) and expected.numel() == 1 and isinstance(got_t, Tensor) and got_t.numel() == 1 \
            and got_t.is_floating_point() and bool(torch.isnan(got_t).any()) and not bool(torch.isnan(expected).any()) \
            and float(expected) == 0.0:
        return (f"{name} returned NaN on the case '{case.name}', where the reference gives {number(expected)}; when nothing is counted the loss "
                "must be 0, not NaN (0 / 0): return logits.sum() * 0.0 in that case.")
    if first is not None:
        hit = first()
        if hit:
            return hit
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
                return (f"{name} returned NaN {where}, where the reference gives {number(expected)}: a mean over an empty selection "
                        "(a slice or mask that keeps nothing) or log(0) gives NaN; check which positions your code selects.")
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
        raise CheckFailed(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")


def guarded(name: str, body: Callable[[], int | None], what: str = "cases match") -> bool:
    """Run ``body()`` (which raises Fail / NotImplementedYet, and returns the number of cases) with
    the notebook's random state untouched, and turn the outcome into the check's verdict."""
    try:
        with torch.random.fork_rng(devices=[]):
            n = body()
    except NotImplementedYet:
        return _pending(name)
    except Fail as e:
        raise CheckFailed(_sentence(str(e))) from None
    except CheckFailed:
        raise
    except Exception as e:  # noqa: BLE001 - the check itself must never crash on a strange result
        raise CheckFailed(_sentence(
            f"{name}: your function's result could not be compared with the reference ({_one_line(e)}); "
            "check that it returns what the task describes (type, shape and dtype)")) from None
    return _ok(name, n or 0, what)


def _sentence(text: str) -> str:
    """One line, at most 600 characters, ending with a full stop."""
    text = " ".join(str(text).split())
    if len(text) > 590:
        text = text[:586].rstrip() + " …"
    return text if text.endswith((".", "…", "?", "!", ")")) else text + "."


def _run_probes(probes: Sequence[Callable], fn: Callable, case: Case, *extra) -> str | None:
    """The first sentence any probe returns (a probe that cannot run tells nothing)."""
    for probe in probes:
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                hit = probe(fn, case, *extra)
        except Fail:
            raise
        except Exception:  # noqa: BLE001
            hit = None
        if hit:
            return hit
    return None


def run_check(name: str, fn: Callable, cases: Sequence[Case], reference: Callable, variants: Sequence[Variant], *,
              is_mask: bool = False, output=None, arg_names: Sequence[str] | None = None,
              properties: Sequence[Callable[[Callable], None]] = (), shape_check: Callable | None = None,
              transform: Callable | None = None, output_names: Sequence[str] | None = None,
              pre_check: Callable | None = None, probes: Sequence[Callable] = (), early_probes: Sequence[Callable] = (),
              raise_probes: Sequence[Callable] = (), exact: bool = False) -> bool:
    """The standard check (see the module docstring). ``transform`` normalises both results before
    comparing (e.g. ignore don't-care entries); ``shape_check(got, expected, case) -> str | None``
    explains a mismatch no variant matched; ``pre_check(got, expected, case) -> str | None`` runs
    before the type check (e.g. outputs returned in the wrong order). ``early_probes`` run before the
    known-wrong variants (e.g. an ignored argument that a variant would otherwise explain wrongly); when
    no variant matches, ``probes`` (``probe(fn, case, got, expected) -> str | None``, which may call
    ``fn`` again on diagnostic inputs, e.g. V = identity to read attention weights) run, then the
    general :func:`structural_hint`, before any generic sentence. When the learner's function raises,
    ``raise_probes`` (``probe(fn, case, exc) -> str | None``) may name the mistake behind the error.
    ``exact`` compares numbers to the last unit."""
    not_callable(name, fn)

    def more_for(case, got, expected, got_c, exp_c):
        def more():
            return _run_probes(probes, fn, case, got, expected) or structural_hint(name, case, got_c, exp_c, is_mask=is_mask)
        return more

    def body():
        for case in cases:
            torch.manual_seed(0)
            with torch.no_grad():
                expected = reference(*_copy(case.args), **_copy(case.kwargs))
            try:
                got = call(name, fn, case, arg_names=arg_names)
            except Fail as f:
                exc = getattr(f, "raised", None)
                hit = _run_probes(raise_probes, fn, case, exc) if exc is not None else None
                if hit:
                    raise Fail(hit) from None
                raise
            if got is None:
                raise Fail(f"{name} returned None on the case '{case.name}'; did you forget the `return` statement?")
            problem = pre_check(got, expected, case) if pre_check is not None and not same(got, expected) else None
            problem = problem or type_problem(name, got, expected, output, case.name,
                                   what=",".join(output_names) if output_names else None)
            if problem:
                raise Fail(problem)
            got_c = transform(got) if transform else got
            exp_c = transform(expected) if transform else expected
            first = (lambda: _run_probes(early_probes, fn, case, got, expected)) if early_probes else None
            if shape_check is None:
                problem = _diagnose(name, case, got_c, exp_c, variants, is_mask=is_mask,
                                    more=more_for(case, got, expected, got_c, exp_c), first=first, exact=exact)
            elif same(got_c, exp_c, **(_EXACT if exact else {})):
                problem = None
            else:
                problem = (first() if first else None) or match_variant(name, case, got_c, exp_c, variants, transform=transform) or \
                    shape_check(got, expected, case) or more_for(case, got, expected, got_c, exp_c)() or (
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


# --------------------------------------------------------------------------------------------
# what flows into the next cell: device, gradients; arguments that are ignored
# --------------------------------------------------------------------------------------------
_DEVICE_ERROR = _ERROR_HINTS[0][0]


class _CopiesToCpu(torch.overrides.TorchFunctionMode):
    """On the meta device, ``.cpu()`` / ``.to("cpu")`` give a zero CPU tensor of the same shape and dtype
    instead of failing (a meta tensor has no data to copy), as a GPU tensor's copy would land on the CPU:
    code that builds its result from such a copy then returns it on the CPU, or fails mixing devices.
    Values read as numbers are 0 / False (a model's input checks pass, a decoding loop runs its course)."""

    #: A meta tensor read as a Python number or truth value (``.item()``, ``if t.any():``) gives 0 / False, at
    #: most this many times per run: a loop waiting for a condition on values stops instead of running forever.
    max_reads = 400

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = args[0] if args else None
        if isinstance(t, Tensor) and t.is_meta and func in (Tensor.item, Tensor.__bool__, Tensor.__int__, Tensor.__float__, Tensor.__index__):
            self.reads += 1
            if self.reads > self.max_reads:
                raise RuntimeError("meta tensors: too many values read")
            return False if func is Tensor.__bool__ else (0.0 if t.is_floating_point() and func is not Tensor.__index__ else 0)
        if isinstance(t, Tensor) and t.is_meta and func in (Tensor.cpu, Tensor.to):
            if func is Tensor.cpu:
                return torch.zeros(t.shape, dtype=t.dtype)
            device, dtype, *_ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if device is not None and device.type == "cpu":
                return torch.zeros(t.shape, dtype=dtype or t.dtype)
        return func(*args, **kwargs)


def probe_device() -> tuple[torch.device, Callable[[], contextlib.AbstractContextManager], str]:
    """Where the device property runs the learner's function: ``(device, make_mode, how)``. A real GPU
    when there is one; otherwise PyTorch's ``meta`` device (tensors with a shape and a dtype but no data),
    which follows the same device rules, with copies to the CPU simulated (:class:`_CopiesToCpu`)."""
    if torch.cuda.is_available():
        return torch.device("cuda"), contextlib.nullcontext, "a GPU"
    return torch.device("meta"), _CopiesToCpu, "PyTorch's meta device, a stand-in for a GPU"


def to_device(obj, dev: torch.device):
    """``obj`` with every tensor moved to ``dev`` (tuples, lists, dicts too); modules are copied, then moved."""
    if isinstance(obj, Tensor):
        return obj.to(dev)
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj).to(dev)
    if isinstance(obj, tuple):
        return tuple(to_device(o, dev) for o in obj)
    if isinstance(obj, list):
        return [to_device(o, dev) for o in obj]
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    return obj


def _tensors_in(obj) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors_in(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors_in(o)]
    return []


def device_property(name: str, case: Case, reference: Callable, hint: str = "") -> Callable[[Callable], None]:
    """A property: with the case's tensors (and model) on a GPU — a simulated one without a GPU, see
    :func:`probe_device` — the learner's function runs there and returns its tensors there. Only a device
    mismatch fails it: simulated tensors have no values, so code that reads values (``.item()``,
    ``if t.any():``) is not judged here."""

    def prop(fn):
        dev, make_mode, how = probe_device()
        where = f"tested on {how}, case '{case.name}'"
        try:
            args, kwargs = to_device(_copy((case.args, case.kwargs)), dev)
            with make_mode(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                expected = reference(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the reference cannot run there: nothing to judge
            return
        if not all(t.device.type == dev.type for t in _tensors_in(expected)):
            return
        try:
            args, kwargs = to_device(_copy((case.args, case.kwargs)), dev)
            with make_mode(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                got = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - NotImplementedError too: here it comes from torch (no data to read)
            if re.search(_DEVICE_ERROR, str(e), re.I):
                raise Fail(f"{name}: a tensor made inside your function stays on the CPU when the inputs are on a GPU ({where}), "
                           "and mixing the two fails: torch.zeros, torch.arange, torch.tensor, torch.rand … default to the CPU, so "
                           f"create it with device=x.device of an input, or with torch.zeros_like / x.new_full{hint}.") from None
            if re.search(r"convert \w+ device type tensor to numpy", str(e), re.I):  # as on a GPU: .numpy() needs the CPU
                raise Fail(f"{name} calls .numpy() ({where}), which works on CPU tensors only (on a GPU it fails, and a .cpu() first "
                           "would build the result on the CPU, cut off from the autograd graph); compute it with torch operations "
                           "on the inputs' own device.") from None
            return  # anything else needs values, which meta tensors do not have
        for t in _tensors_in(got):
            if t.device.type != dev.type:
                raise Fail(f"{name} returns its result on the {t.device.type} device when the inputs are on a GPU ({where}): it is "
                           "built from a tensor made on the CPU (a numpy round trip, .cpu(), torch.tensor(...), torch.zeros(...) "
                           f"without device=…); create new tensors with device=x.device of an input, or torch.zeros_like / x.new_full{hint}.")

    return prop


def grad_property(name: str, case: Case, reference: Callable, grad_args: Sequence[int],
                  arg_names: Sequence[str] | None = None) -> Callable[[Callable], None]:
    """A property: with the tensors ``args[i]`` (``i`` in ``grad_args``) requiring gradients, the learner's
    result stays in the autograd graph and a backward pass gives every one of them the reference's
    gradient (a numpy round trip, ``.tolist()``, ``torch.tensor(...)`` or ``.detach()`` cut it)."""

    def run(f):
        args = list(_copy(case.args))
        leaves = {}
        for i in grad_args:
            leaves[i] = args[i].detach().clone().requires_grad_(True)
            args[i] = leaves[i]
        with torch.enable_grad(), contextlib.redirect_stdout(io.StringIO()):
            out = f(*args, **_copy(case.kwargs))
        return out, leaves

    def label(i):
        return _arg_label(i, arg_names)

    def prop(fn):
        where = f"on the case '{case.name}'"
        ref_out, ref_leaves = run(reference)
        weight = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(9), dtype=ref_out.dtype)
        (ref_out * weight).sum().backward()
        try:
            got, leaves = run(fn)
        except Exception as e:  # noqa: BLE001
            raise Fail(raised_hint(name, e, case.name).replace(f"on the case '{case.name}'",
                                                                f"{where} when its inputs require gradients", 1)) from None
        if not isinstance(got, Tensor) or got.shape != ref_out.shape:
            return
        names = ", ".join(f"`{label(i)}`" for i in grad_args)
        if not got.requires_grad:
            raise Fail(f"{name}: your result is cut off from the autograd graph {where}, so no gradient reaches {names}: stay in "
                       "torch — a numpy round trip, .tolist(), torch.tensor(...) of a result, .detach(), .item() or torch.no_grad() "
                       "inside the function all cut the graph, and training would then not change any weight.")
        try:
            (got * weight.to(got.dtype)).sum().backward()
        except Exception as e:  # noqa: BLE001
            raise Fail(f"{name}: a backward pass through your result raised {_one_line(e).rstrip('.')} {where}; keep the result a "
                       "differentiable function of the inputs (no in-place changes of tensors autograd still needs).") from None
        for i in grad_args:
            g, r = leaves[i].grad, ref_leaves[i].grad
            if r is None or bool((r == 0).all()):
                continue
            if g is None:
                raise Fail(f"{name}: no gradient reaches `{label(i)}` {where}: your result does not depend on it through torch "
                           "operations (a copy, .detach() or a Python number in between cuts the graph).")
            if not torch.allclose(g.double(), r.double(), atol=1e-4, rtol=1e-3):
                raise Fail(f"{name}: the gradient reaching `{label(i)}` differs from the reference's {where} although the values agree; "
                           "compute the result with differentiable torch operations (no .detach() or in-place tricks inside).")

    return prop


def ignored_arg_probe(name: str, reference: Callable, label: str, alternatives: Callable[[list, dict], list]) -> Callable:
    """A probe for an argument that is ignored: ``alternatives(args, kwargs)`` lists ``(args, kwargs,
    description)`` with the argument at another value (its default, a common hard-coded constant);
    when the learner's result is the reference's for one of them, the argument was not used."""

    def probe(fn, case, got, expected):
        for args, kwargs, desc in alternatives(list(_copy(case.args)), dict(_copy(case.kwargs))):
            try:
                with torch.no_grad():
                    alt = reference(*args, **kwargs)
            except Exception:  # noqa: BLE001
                continue
            if same(alt, expected):
                continue
            if same(got, alt) or same(got, alt, lenient=True):
                return (f"{name}: the {label} argument is ignored — your result is the one for {desc}; use the {label} you are given "
                        f"(seen on the case '{case.name}').")
        return None

    return probe


#: Constants a learner may have written instead of using an argument: small counts, powers of two, round sizes.
ROUND_CONSTANTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100, 128, 256, 512, 768, 1000, 1024, 2048, 4096, 10000, 32000)


def constant_argument_probe(name: str, reference: Callable, labels: dict[int | str, str],
                            constants: Sequence[float] = ROUND_CONSTANTS) -> Callable:
    """A probe for functions of numbers: the learner's number equals the reference's with one argument
    (``labels``: position or keyword -> name) replaced by a round constant — that argument was not used."""

    def probe(fn, case, got, expected):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return None
        for key, label in labels.items():
            args, kwargs = list(case.args), dict(case.kwargs)
            given = args[key] if isinstance(key, int) and key < len(args) else kwargs.get(key)
            if given is None:
                continue
            for c in constants:
                if c == given:
                    continue
                if isinstance(key, int) and key < len(args):
                    args[key] = c
                else:
                    kwargs[key] = c
                try:
                    alt = reference(*args, **kwargs)
                except Exception:  # noqa: BLE001
                    continue
                if same(got, alt, **_EXACT) and not same(alt, expected, **_EXACT):
                    return (f"{name}: the {label} argument is ignored — your number is the formula's with {label} = {c:g} instead of "
                            f"{given:g}; use the {label} you are given (seen on the case '{case.name}').")
            args, kwargs = list(case.args), dict(case.kwargs)
        return None

    return probe


def product_factor_probe(name: str, labels: dict[int | str, str]) -> Callable:
    """A probe for products of arguments (bytes = 2 · L · H · d_head · …): when the learner's number is the
    reference's times or divided by exactly one argument's value, that factor is missing or counted twice."""

    def probe(fn, case, got, expected):
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not float(expected):
            return None
        r = float(got) / float(expected)
        for key, label in labels.items():
            v = case.args[key] if isinstance(key, int) and key < len(case.args) else case.kwargs.get(key)
            if not isinstance(v, (int, float)) or v in (0, 1):
                continue
            if math.isclose(r, 1 / v, rel_tol=1e-12):
                return f"{name}: the factor {label} = {v:g} is missing from your product (seen on the case '{case.name}')."
            if math.isclose(r, v, rel_tol=1e-12):
                return f"{name}: the factor {label} = {v:g} is counted twice in your product (seen on the case '{case.name}')."
        return None

    return probe


def number_hint_probe(name: str, formula: str) -> Callable:
    """The last probe for a function of numbers: say how far off the number is and restate the formula."""
    def probe(fn, case, got, expected):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return None
        diff = float(got) - float(expected)
        off = (f" (off by {diff:+,.0f})" if abs(diff) < 10 and diff == int(diff)
               else f" ({float(got) / float(expected):.4g} times it)" if float(expected) else "")
        return (f"{name} gives {float(got):,.6g} but the formula gives {float(expected):,.6g}{off} on the case '{case.name}'; "
                f"write each term down: {formula}.")
    return probe


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
    # whatever wraps the library's function (a lambda in the notebook is __main__'s), it is the library's version
    ref_label = "course_lib"
    if learner_fn is None or not callable(learner_fn):
        print(f"→ {label}: using {ref_label}'s version (yours is not defined).")
        return _owned(reference_fn, "the library's")
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
        return _owned(reference_fn, "the library's")
    if not ok:
        print(f"→ {check}: using {ref_label}'s version for now (yours is not implemented yet).")
        return _owned(reference_fn, "the library's")
    print(f"→ {check}: using yours (it passes its check).")
    return _owned(learner_fn, "your")


def _owned(fn: Callable, owner: str) -> Callable:
    """``fn`` with ``fn.owner`` saying whose it is ("your" / "the library's"), so that a cell can print
    "{f.owner} formula" and never call the library's numbers the learner's. The library's functions are
    wrapped rather than labelled in place."""
    if owner == "your" or not callable(fn):
        with contextlib.suppress(AttributeError, TypeError):
            fn.owner = owner
        return fn

    def library_version(*args, **kwargs):
        return fn(*args, **kwargs)

    library_version.__name__ = getattr(fn, "__name__", "library_version")
    library_version.__doc__ = getattr(fn, "__doc__", None)
    library_version.__wrapped__ = fn
    library_version.owner = owner
    return library_version

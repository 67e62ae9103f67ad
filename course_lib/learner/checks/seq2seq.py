"""Checks for lesson 04: shift_right and the seq2seq loss."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ...losses import seq2seq_loss as _ref_seq2seq_loss
from ...losses import shift_right as _ref_shift_right
from ._core import (_ALL, _BATCH, _SMOOTH, _EMPTY, _LOGP, _MEAN, _PER_POSITION, _PER_ROW, _ROWS_SUM, BOS_ID, EOS_ID, PAD_ID, Case, Variant, _gen, _logits_case,
                    _padded_tokens, _pads_ignored, loss_backward_property, loss_formula, register, run_check, same, variant_grid, denominator_probe, loss_inputs_probe,
                    device_property)

_Case, _Variant = Case, Variant

__all__ = ["check_shift_right", "check_seq2seq_loss", "check_free_running_logits", "reference_free_running_logits"]

# --------------------------------------------------------------------------------------------
# 7. seq2seq: shift_right and the loss
# --------------------------------------------------------------------------------------------
_SHIFT_VARIANTS = [
    _Variant(lambda y, bos: torch.cat([y[:, :-1], torch.full_like(y[:, :1], bos)], 1),
             "BOS goes at the *start*: the decoder input is [BOS, y_1, …, y_{{T-1}}], each target moved one place to the right."),
    _Variant(lambda y, bos: torch.roll(y, 1, dims=1),
             "torch.roll wraps the last target token around to the front; put bos_id in the first column instead: [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: y.clone(),
             "the decoder input is the target itself, so the decoder sees the token it must predict; shift right: [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], PAD_ID), y[:, :-1]], 1),
             "the first decoder input must be BOS (bos_id), not padding: [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: y[:, :-1],
             "BOS is missing: prepend bos_id so the decoder input keeps the targets' length T ([BOS, y_1, …, y_{{T-1}}]); got shape {got}, expected {expected}."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y], 1),
             "drop the last target token after prepending BOS, so the decoder input keeps length T; got shape {got}, expected {expected}."),
    _Variant(lambda y, bos: torch.cat([y[:, 1:], torch.full_like(y[:, :1], PAD_ID)], 1),
             "the targets are shifted left instead of right: the decoder input is [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([y[:, 1:], torch.full_like(y[:, :1], bos)], 1),
             "the targets are shifted left instead of right: the decoder input is [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], BOS_ID), y[:, :-1]], 1),
             "the bos_id argument is ignored; fill the first column with bos_id, not a hard-coded 1."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y[:, :-1].masked_fill(y[:, :-1] == EOS_ID, PAD_ID)], 1),
             "EOS was replaced by padding in the decoder input; shift_right only moves the targets one place right, [BOS, y_1, …, y_{{T-1}}], whatever tokens they are."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y[:, 1:]], 1),
             "the first target token was overwritten by BOS: shift right so that every token moves one place, [BOS, y_1, …, y_{{T-1}}]."),
]


@register("shift_right")
def check_shift_right(fn: Callable) -> bool:
    """Check ``fn(targets (B, T), bos_id) -> [BOS, y_1 … y_{T-1}] (B, T)``."""
    g = _gen(808)
    cases = [
        *reversed([
            _Case("targets ending in EOS, then padding", (_padded_tokens(g, [5, 3], 6, eos=True), BOS_ID)),
            _Case("no padding", (_padded_tokens(g, [4, 4, 4], 4, eos=True), BOS_ID)),
        ]),
        _Case("a batch of one, length one", (torch.tensor([[EOS_ID]]), BOS_ID)),
        _Case("bos_id=9", (_padded_tokens(g, [3, 2], 3, eos=True), 9)),
    ]
    return run_check("shift_right", fn, cases, _ref_shift_right, _SHIFT_VARIANTS, arg_names=("targets", "bos_id"), output="ids",
                     properties=[device_property("shift_right", cases[-1], _ref_shift_right)])


def _s2s_formula(lg, y, pad_id=0, *, shift="none", pad="ignored", **kw):
    if shift == "again":
        lg, y = lg[:, :-1], y[:, 1:]
    elif shift == "drop_first":
        lg, y = lg[:, 1:], y[:, 1:]
    elif shift == "input":
        y = _ref_shift_right(y, BOS_ID)
    if pad == "only":
        return loss_formula(lg, y.masked_fill(y != pad_id, -100), **kw)
    tg = y if pad == "scored" else _pads_ignored(y, PAD_ID if pad == "zero" else pad_id)
    if pad == "eos":
        tg = tg.masked_fill(y == EOS_ID, -100)
    return loss_formula(lg, tg, **kw)


_S2S_VARIANTS = variant_grid(_s2s_formula, {
    "shift": {"none": "",
              "again": "the logits are already aligned with the targets (the decoder input was shifted right), so do not shift again: compare logits[:, t] with targets[:, t].",
              "drop_first": "the first position is dropped (or the pair shifted); the logits at position t, read from BOS and y_1 … y_t, predict targets[:, t] — score every position, logits[:, t] against targets[:, t].",
              "input": "the logits are scored against the decoder input; score them against the targets y (what the decoder must predict), not shift_right(y)."},
    "pad": {"ignored": "", "zero": "the pad_id argument is ignored; ignore targets equal to pad_id, not a hard-coded 0.",
            "scored": "padding is scored: targets equal to pad_id must be ignored (ignore_index=pad_id).",
            "only": "only the padding is scored — the mask is inverted; count the targets that are *not* pad_id (targets != pad_id).",
            "eos": "EOS is ignored like padding; EOS is a target the decoder must learn to predict (it is how it learns to stop), so ignore only pad_id."},
    "reduce": {"tokens": "", "sum": _MEAN, "all": _ALL, "rows": _PER_ROW, "batch": _BATCH, "positions": _PER_POSITION, "rows_sum": _ROWS_SUM},
    "logp": {"log_softmax": "", **_LOGP},
    "smoothing": {0.0: "", 0.1: _SMOOTH},
    "empty": {"zero": "", "nan": _EMPTY},
})


@register("seq2seq_loss")
def check_seq2seq_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), targets (B, T), pad_id=0) -> scalar``: cross-entropy of the decoder's
    logits (from ``shift_right(targets)``) against ``targets``, padding ignored, mean over real tokens."""
    g = _gen(909)
    V = 13
    tk = lambda lengths, t: _padded_tokens(g, lengths, t, vocab=V, eos=True)
    cases = [
        _Case("targets ending in EOS, then padding", (_logits_case(g, 3, 5, V), tk([5, 3, 2], 5))),
        _Case("no padding", (_logits_case(g, 2, 4, V), tk([4, 4], 4))),
        _Case("a batch of one, length one", (_logits_case(g, 1, 1, V), torch.tensor([[EOS_ID]]))),
        _Case("large logits (numerical stability)", (_logits_case(g, 2, 4, V, scale=200.0), tk([4, 2], 4))),
        _Case("pad_id=7", (_logits_case(g, 3, 5, V), _padded_tokens(g, [5, 2, 4], 5, vocab=V, eos=True, pad_id=7)), {"pad_id": 7}),
        _Case("rows with 6, 1 and 3 targets", (_logits_case(g, 3, 6, V), tk([6, 1, 3], 6))),
        _Case("nothing to predict (all padding)", (_logits_case(g, 2, 3, V), torch.full((2, 3), PAD_ID))),
    ]
    ref = lambda lg, y, pad_id=PAD_ID: _ref_seq2seq_loss(lg, y, pad_id=pad_id)  # noqa: E731
    names = ("logits", "targets")
    return run_check("seq2seq_loss", fn, cases, ref, _S2S_VARIANTS, arg_names=names, output="loss",
                     probes=[denominator_probe("seq2seq_loss", lambda lg, y, pad_id=PAD_ID: y != pad_id), loss_inputs_probe("seq2seq_loss")],
                     properties=[loss_backward_property("seq2seq_loss", [cases[0], cases[-1]], ref, arg_names=names),
                                 device_property("seq2seq_loss", cases[0], ref)])



# --------------------------------------------------------------------------------------------
# teacher forcing vs free running
# --------------------------------------------------------------------------------------------
def _free_formula(model, src, n_steps, bos_id=BOS_ID, *, feed="argmax", start="bos", extra=0, out="logits", pos=-1):
    tgt_in = src[:, :1].clone() if start == "src" else torch.full((src.shape[0], 1), bos_id if start == "bos" else PAD_ID, dtype=torch.long,
                                                                   device=src.device)
    steps = []
    with torch.no_grad():
        for _ in range(n_steps + extra):
            logits = model(src, tgt_in)[:, pos]
            steps.append(logits)
            if feed == "sample":
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=torch.Generator().manual_seed(0))[:, 0]
            else:
                nxt = logits.argmax(-1) if feed == "argmax" else torch.full_like(tgt_in[:, 0], bos_id)
            tgt_in = torch.cat([tgt_in, nxt[:, None]], dim=1)
    res = torch.stack(steps, dim=1)
    return res.argmax(-1) if out == "ids" else res.softmax(-1) if out == "probs" else res.log_softmax(-1) if out == "logp" else res


def reference_free_running_logits(model, src, n_steps: int, bos_id: int = BOS_ID) -> Tensor:
    """Free running: the decoder reads its *own* greedy predictions. Start from ``[BOS]``; at each of
    ``n_steps`` steps run ``model(src, tgt_in)``, keep the logits of the last position and append their
    argmax to ``tgt_in``. Returns the logits ``(B, n_steps, V)``, to be scored against the targets like
    teacher-forced ones."""
    return _free_formula(model, src, n_steps, bos_id)


_FREE_VARIANTS = [
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, feed="bos"),
            "the model's predictions are never fed back: append the argmax of each step's logits to the decoder input."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, feed="sample"),
            "the next token is sampled; free running here is greedy, append the argmax of each step's logits."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, start="pad"),
            "the decoder input must start with BOS (bos_id), not padding."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, BOS_ID),
            "the bos_id argument is ignored; start the decoder input with bos_id, not a hard-coded 1."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, extra=1),
            "one step too many: return the logits of exactly n_steps steps, shape (B, n_steps, V); got shape {got}."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, extra=-1),
            "one step too few: the first step's logits (read from [BOS] alone) count too, so return n_steps of them; got shape {got}."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, start="src"),
            "the decoder input starts with a source token; it must start with BOS (bos_id) — the source reaches the decoder only through cross-attention."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, pos=0),
            "each step reads the logits of the first position [:, 0]; the next-token prediction is at the last position, [:, -1]."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, out="ids"),
            "you returned the predicted token ids {got}; return the logits (B, n_steps, V), so that they can be scored like teacher-forced ones."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, out="probs"),
            "you returned probabilities (a softmax of the logits); return the logits themselves, which the loss (cross-entropy) expects."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, out="logp"),
            "you returned log-probabilities (log_softmax); return the raw logits of each step, as model(src, tgt_in)[:, -1] gives them."),
    Variant(lambda m, s, n, bos_id=BOS_ID: _free_formula(m, s, n, bos_id, pos=0, feed="bos"),
            "each step reads the logits of the first position and feeds back nothing new; read [:, -1], the last position, and append its argmax."),
]


def _tiny_encdec(seed: int = 4):
    from ...config import ModelConfig
    from ...models import EncoderDecoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EncoderDecoder(ModelConfig(vocab_size=12, d_model=16, n_heads=2, n_layers=1, max_len=32)).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.mul_(3.0)  # confident, varied predictions: no near-ties in the argmax
    return model


@register("free_running_logits")
def check_free_running_logits(fn: Callable) -> bool:
    """Check ``fn(model, src (B, S), n_steps, bos_id=1) -> logits (B, n_steps, V)`` of free running."""
    g = _gen(919)
    model = _tiny_encdec()
    src = lambda b, s: torch.randint(6, 12, (b, s), generator=g)  # noqa: E731
    cases = [
        Case("3 sources, 5 steps", (model, src(3, 4), 5)),
        Case("one source, one step", (model, src(1, 3), 1)),
        Case("bos_id=9", (model, src(2, 5), 4), {"bos_id": 9}),
    ]
    return run_check("free_running_logits", fn, cases, reference_free_running_logits, _FREE_VARIANTS, output="float",
                     arg_names=("model", "src", "n_steps"), probes=[_free_first_step_probe],
                     properties=[device_property("free_running_logits", cases[0], reference_free_running_logits)])


def _free_first_step_probe(fn, case, got, expected):
    """The first step matches but a later one does not: what is fed back is wrong."""
    if not isinstance(got, Tensor) or got.shape != expected.shape or got.shape[1] < 2 or not same(got[:, 0], expected[:, 0]):
        return None
    t = next(i for i in range(got.shape[1]) if not same(got[:, i], expected[:, i]))
    return (f"free_running_logits: step 0 matches but step {t} differs, so the tokens fed back are wrong: append the argmax over the "
            f"vocabulary (dim=-1) of each step's last-position logits, one per row (seen on the case '{case.name}').")

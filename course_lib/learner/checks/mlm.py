"""Checks for lesson 02: MLM corruption and loss."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ...losses import IGNORE
from ...losses import mlm_corrupt as _ref_mlm_corrupt
from ...losses import mlm_loss as _ref_mlm_loss
from ._core import (_BATCH, _SMOOTH, _EMPTY, _LOGP, _MEAN, _PER_POSITION, _PER_ROW, _ROWS_SUM, MASK_ID, PAD_ID, SPECIAL_IDS, BOS_ID, EOS_ID, SEP_ID, UNK_ID, Case, Fail,
                    _fmt, _gen, _logits_case, _padded_tokens, _shape, call, guarded, loss_backward_property, loss_formula,
                    not_callable, register, run_check, same, variant_grid, denominator_probe, loss_inputs_probe, device_property,
                    grad_property, _copy)

_Case, _Fail = Case, Fail

__all__ = ["check_mlm_corrupt", "check_mlm_loss", "check_encoder_block", "reference_encoder_block"]

# --------------------------------------------------------------------------------------------
# 5. MLM corruption and loss
# --------------------------------------------------------------------------------------------
def _mlm_stats(tokens: Tensor, inputs: Tensor, labels: Tensor, vocab_size: int, mask_id: int, special_ids=SPECIAL_IDS) -> dict:
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in special_ids:
        special |= tokens == s
    chosen = labels != IGNORE
    n_chosen = max(int(chosen.sum()), 1)
    masked = chosen & (inputs == mask_id)
    same = chosen & (inputs == tokens)
    rand = chosen & ~masked & ~same
    return {
        "special": special,
        "chosen": chosen,
        "frac_chosen": int((chosen & ~special).sum()) / max(int((~special).sum()), 1),
        "frac_mask": int(masked.sum()) / n_chosen,
        "frac_random": int(rand.sum()) / n_chosen,
        "frac_same": int(same.sum()) / n_chosen,
        "random_ids": inputs[rand],
    }


def _check_mlm_case(name: str, case: _Case, tokens: Tensor, got, p: float, vocab_size: int, mask_id: int,
                    special_ids=SPECIAL_IDS) -> None:
    where = f"(seen on the case '{case.name}')"
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, Tensor) for t in got)):
        raise _Fail(f"{name} should return a pair of tensors (inputs, labels); got {type(got).__name__} {where}.")
    inputs, labels = got
    if isinstance(inputs, Tensor) and bool((inputs == IGNORE).any()) and not bool((labels == IGNORE).any()):
        raise _Fail(f"{name} returned (labels, inputs); return them in the order (inputs, labels) {where}.")
    for what, t in (("inputs", inputs), ("labels", labels)):
        if t.shape != tokens.shape:
            raise _Fail(f"{name} returned {what} of shape {_fmt(_shape(t))} but the expected shape is {_fmt(_shape(tokens))} (the shape of tokens) {where}.")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise _Fail(f"{name} returned {what} of dtype {t.dtype}; token ids must be integers (torch.long) {where}.")
        if t.dtype != torch.long:
            raise _Fail(f"{name} returned {what} as {t.dtype} {where}; token ids and labels must be torch.long (int64): nn.Embedding "
                        "and F.cross_entropy reject int32 targets, so build them with dtype=torch.long (or keep the tokens' dtype).")
        if t.device != tokens.device:
            raise _Fail(f"{name} returned {what} on the {t.device.type} device {where} but tokens are on {tokens.device.type}.")
    other = labels[(labels != tokens)]
    if not bool((labels == IGNORE).any()) and other.numel() and bool((other == other[0]).all()) and int(other[0]) not in (PAD_ID, IGNORE) \
            and int(other[0]) < 0:
        raise _Fail(f"{name}: positions that were not chosen hold the label {int(other[0])}; use IGNORE = -100 (course_lib.IGNORE), the "
                    f"value the loss skips {where}.")
    if not bool((labels == IGNORE).any()) and bool((labels == PAD_ID).any()) and bool(((labels == PAD_ID) & (tokens != PAD_ID)).any()):
        raise _Fail(f"{name}: positions that were not chosen must get the label IGNORE = -100 (course_lib.IGNORE), not 0, which is the PAD token {where}.")
    if tokens.numel() >= 1000 and p < 0.9 and float((labels != IGNORE).float().mean()) > 0.98:
        raise _Fail(f"{name}: every position got a label; labels must be IGNORE (-100) at positions that were not chosen, so the loss only scores the ~{p:.0%} chosen ones {where}.")
    changed = inputs != tokens
    if bool(changed.any()) and bool((labels[changed] == IGNORE).all()) and float((labels != IGNORE).float().mean()) > 0.5:
        raise _Fail(f"{name}: the labels are the other way round: the chosen (corrupted) positions got IGNORE and the positions that "
                    f"were not chosen got labels; label the chosen positions with their original token and set IGNORE everywhere else {where}.")
    st = _mlm_stats(tokens, inputs, labels, vocab_size, mask_id, special_ids)
    special, chosen = st["special"], st["chosen"]
    if bool((chosen & special).any()) or bool((inputs[special] != tokens[special]).any()):
        default = _mlm_stats(tokens, inputs, labels, vocab_size, mask_id)["special"]
        if tuple(special_ids) != SPECIAL_IDS and not bool((chosen & default).any()) and not bool((inputs[default] != tokens[default]).any()):
            extra = sorted(set(special_ids) - set(SPECIAL_IDS))
            raise _Fail(f"{name}: the special_ids argument is ignored — ids {extra}, special in this call, were chosen; skip every "
                        f"id in special_ids, not a fixed list {where}.")
        raise _Fail(f"{name}: special tokens (PAD, BOS, EOS, …, ids {list(special_ids)}) were corrupted or given labels; never choose a position that holds a special id {where}.")
    if bool((labels[chosen] != tokens[chosen]).any()):
        if torch.equal(labels[chosen], inputs[chosen]):
            raise _Fail(f"{name}: the labels hold the corrupted inputs; they must hold the original token at each chosen position {where}.")
        raise _Fail(f"{name}: at a chosen position the label must be the original token (tokens[i, t]) {where}.")
    big = int((~special).sum()) >= 1000  # small edge cases: only the exact properties
    fc = st["frac_chosen"]
    if big and fc > 0.98 and p < 0.9:
        raise _Fail(f"{name}: every non-special position got a label; labels must be IGNORE (-100) at positions that were not chosen, so the loss only scores the ~{p:.0%} chosen ones {where}.")
    if big and abs(fc - 0.8 * p) < min(0.02, abs(fc - p)) and st["frac_mask"] > 0.97:
        raise _Fail(f"{name}: only the [MASK]ed positions got labels ({fc:.1%} instead of {p:.0%}); the 10% replaced by a random token and the 10% left unchanged are predicted too, so label every chosen position {where}.")
    if bool((inputs[~chosen] != tokens[~chosen]).any()):
        raise _Fail(f"{name}: some positions were changed but their label is IGNORE; every changed position must be chosen and labelled with its original token {where}.")
    if not big:
        return
    fc0 = st["frac_chosen"]
    if p < 0.45 and abs(fc0 - (1 - p)) < 0.02:
        raise _Fail(f"{name} chose {fc0:.1%} of the non-special positions, 1 - p instead of p = {p}: a position is chosen where "
                    f"torch.rand(...) < p, not > p {where}.")
    ns, nc = (~special).sum(1), chosen.sum(1)
    full_rows = int(((nc == ns) & (ns >= 10)).sum())
    col_ns, col_nc = (~special).sum(0), chosen.sum(0)
    full_cols = int(((col_nc == col_ns) & (col_ns >= 30)).sum())
    if p < 0.9 and (full_rows >= 3 or full_cols >= 2):
        how = "whole rows" if full_rows >= 3 else "whole columns (the same positions in every row)"
        raise _Fail(f"{name}: positions are chosen as {how}, all or nothing; choose each position independently with probability p, "
                    f"torch.rand(tokens.shape) < p {where}.")
    if abs(fc - p) > 0.02:
        if abs(fc - (1 - p)) < 0.02:
            raise _Fail(f"{name} chose {fc:.1%} of the non-special positions, 1 - p instead of p = {p}: a position is chosen where "
                        f"torch.rand(...) < p, not > p {where}.")
        if abs(fc - 0.15) < 0.02 and abs(p - 0.15) > 0.05:
            raise _Fail(f"{name}: the p argument is ignored — you chose {fc:.1%} of the positions, BERT's 15%, but p = {p}; compare "
                        f"with the p you are given {where}.")
        raise _Fail(f"{name} chose {fc:.1%} of the non-special positions but p={p}; choose each position independently with probability p {where}.")
    fm, fr, fs = st["frac_mask"], st["frac_random"], st["frac_same"]
    if mask_id != MASK_ID and fm < 0.5 and bool((inputs == MASK_ID).any()):
        raise _Fail(f"{name}: the mask_id argument is ignored; write mask_id into the chosen positions, not a hard-coded {MASK_ID} {where}.")
    if fs < 0.02 and abs(fm - 0.8 / 0.9) < 0.04:
        raise _Fail(f"{name}: the chosen positions left unchanged (10%) got no label; label every chosen position with its original "
                    f"token, also those kept as they are {where}.")
    put = inputs[chosen & changed]
    if fm < 0.5 and put.numel():
        top_id, n_top = torch.mode(put).values.item(), int((put == torch.mode(put).values).sum())
        if n_top > 0.6 * put.numel() and top_id != mask_id:
            raise _Fail(f"{name}: the positions that should become [MASK] hold id {top_id} instead of mask_id = {mask_id}; write the "
                        f"mask_id argument itself into them {where}.")
    if abs(fm - 0.8) > 0.035 or abs(fr - 0.1) > 0.035 or abs(fs - 0.1) > 0.035:
        raise _Fail(
            f"{name}: of the chosen positions 80% should become MASK, 10% a random token and 10% stay unchanged, "
            f"but yours are {fm:.0%} / {fr:.0%} / {fs:.0%} {where}."
        )
    rid = st["random_ids"]
    lo = len(special_ids)
    if rid.numel() and bool((rid >= vocab_size).any()):
        raise _Fail(f"{name}: a random replacement is {int(rid.max())}, outside the vocabulary (ids < vocab_size = {vocab_size}): "
                    f"torch.randint's upper bound is exclusive, so torch.randint({lo}, vocab_size, …) already reaches vocab_size - 1 {where}.")
    if rid.numel() and bool((rid < lo).any()):
        raise _Fail(f"{name}: random replacements must be ordinary tokens, ids {lo} … vocab_size - 1 (draw them with "
                    f"torch.randint(len(special_ids), vocab_size, …)), never special ids {where}.")


def _random_range_property(name: str, tokens: Tensor, got, vocab_size: int, mask_id: int, where: str, lo: int = len(SPECIAL_IDS)) -> None:
    """The random replacements are random: they cover the ordinary ids 6 … vocab_size - 1 (a fixed
    seed; ~9 draws per id, so a correct function misses an end id with probability ~1e-4) and do
    not depend on the original token."""
    inputs, labels = got
    chosen = labels != IGNORE
    rand = chosen & (inputs != mask_id) & (inputs != tokens)
    rid, orig = inputs[rand], tokens[rand]
    if rid.numel() < 100:
        return
    distinct = rid.unique()
    if distinct.numel() <= 2:
        raise Fail(f"{name}: every random replacement is the same token ({distinct.tolist()}); draw a new random id for every position, e.g. torch.randint({lo}, vocab_size, tokens.shape) {where}.")
    top = vocab_size - 1 if mask_id != vocab_size - 1 else vocab_size - 2  # a random mask_id counts as masked
    if int(rid.max()) < top:
        if int(rid.max()) <= int(tokens.max()) < top - 2:
            raise Fail(f"{name}: the vocab_size argument is ignored — the random replacements stop at the batch's largest id "
                       f"{int(tokens.max())}, but vocab_size = {vocab_size}; draw them with torch.randint({lo}, vocab_size, …) {where}.")
        raise Fail(f"{name}: the random replacements never reach the last id vocab_size - 1 = {vocab_size - 1}; torch.randint's upper bound is exclusive, so use torch.randint({lo}, vocab_size, …) {where}.")
    if int(rid.min()) > lo:
        raise Fail(f"{name}: the random replacements never use the first ordinary id {lo}; draw them from {lo} … vocab_size - 1 (torch.randint({lo}, vocab_size, …)) {where}.")
    if distinct.numel() < 0.7 * (vocab_size - lo):
        raise Fail(f"{name}: the random replacements use only {distinct.numel()} of the {vocab_size - lo} ordinary ids; draw each uniformly from {lo} … vocab_size - 1 {where}.")
    pairs = {(int(a), int(b)) for a, b in zip(orig.tolist(), rid.tolist())}
    if len(pairs) <= orig.unique().numel():
        raise Fail(f"{name}: the 'random' replacement is a fixed function of the original token; draw it at random (torch.randint({lo}, vocab_size, …)) {where}.")


@register("mlm_corrupt")
def check_mlm_corrupt(fn: Callable) -> bool:
    """Check ``fn(tokens, vocab_size, mask_id, p=0.15) -> (inputs, labels)``: BERT's 80/10/10
    corruption of a fraction p of the non-special tokens. Randomness differs from the reference,
    so the check tests *properties*: shapes, dtypes, specials untouched, labels, proportions, the
    range of the random replacements, inputs left intact."""
    name = "mlm_corrupt"
    not_callable(name, fn)
    g = _gen(505)
    vocab = 50
    big = _padded_tokens(g, torch.randint(20, 49, (256,), generator=g).tolist(), 48, vocab=vocab, bos=True, eos=True)
    small_vocab = _padded_tokens(g, torch.randint(20, 49, (256,), generator=g).tolist(), 48, vocab=29, bos=True, eos=True)
    low_ids = _padded_tokens(g, torch.randint(20, 49, (256,), generator=g).tolist(), 48, vocab=20, bos=True, eos=True)
    tiny = torch.tensor([[7]])
    specials = torch.tensor([[BOS_ID, EOS_ID, PAD_ID, PAD_ID], [BOS_ID, SEP_ID, UNK_ID, EOS_ID]])
    eight = tuple(range(8))  # two more special ids, 6 and 7, that appear in the batch
    cases = [
        Case("a large padded batch with BOS/EOS, p=0.15", (big, vocab, MASK_ID), {"p": 0.15}),
        Case("the same batch with p=0.5", (big, vocab, MASK_ID), {"p": 0.5}),
        Case("vocab_size=30 and mask_id=29, p=0.5", (small_vocab, 30, 29), {"p": 0.5}),
        Case("ids below 20 in a vocabulary of 60, p=0.6", (low_ids, 60, MASK_ID), {"p": 0.6}),
        Case("special_ids=(0, …, 7), p=0.5", (big, vocab, MASK_ID), {"p": 0.5, "special_ids": eight}),
        Case("a batch of one, length one", (tiny, vocab, MASK_ID), {"p": 0.15}),
        Case("rows made only of special tokens", (specials, vocab, MASK_ID), {"p": 0.5}),
    ]

    def body():
        for i, case in enumerate(cases):
            tokens, vocab_size, mask_id = case.args
            torch.manual_seed(1000 + i)
            special_ids = case.kwargs.get("special_ids", SPECIAL_IDS)
            got = call(name, fn, case, arg_names=("tokens", "vocab_size", "mask_id"))
            _check_mlm_case(name, case, tokens.clone(), got, case.kwargs["p"], vocab_size, mask_id, special_ids)
            if case.kwargs["p"] >= 0.5:
                _random_range_property(name, tokens, got, vocab_size, mask_id, f"(seen on the case '{case.name}')", lo=len(special_ids))
        _generator_property(name, fn, cases[1])
        device_property(name, cases[0], lambda t, v, m, **kw: _ref_mlm_corrupt(t, v, m, **kw),
                        hint="; draws from a CPU generator go there with torch.rand(…, generator=generator).to(tokens.device)")(fn)
        return len(cases)

    return guarded(name, body, "cases pass")


def _generator_property(name: str, fn: Callable, case: Case) -> None:
    """The corruption is reproducible: two calls with equally seeded generators give the same result
    whatever the global random state, and differently seeded generators give different ones."""
    where = f"(seen on the case '{case.name}')"
    outs = []
    for global_seed, gen_seed in ((1, 7), (2, 7), (1, 8)):
        torch.manual_seed(global_seed)
        c = Case(case.name, case.args, {**case.kwargs, "generator": torch.Generator().manual_seed(gen_seed)})
        outs.append(call(name, fn, c, arg_names=("tokens", "vocab_size", "mask_id")))
    same_gen = all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    if not same_gen:
        raise Fail(f"{name}: the generator argument is ignored — two calls with equally seeded generators corrupt different "
                   f"positions; pass generator=generator to every torch.rand / torch.randint call so the corruption is reproducible {where}.")
    if all(torch.equal(a, b) for a, b in zip(outs[0], outs[2])):
        raise Fail(f"{name}: generators with different seeds give the same corruption: the random draws must come from the "
                   f"generator you are given (generator=generator), not from a fixed seed {where}.")


def _mlm_formula(lg, lb, *, count="masked", **kw):
    return loss_formula(lg, lb.clamp(min=0) if count == "all" else lb, **kw)


_MLM_LOSS_VARIANTS = variant_grid(_mlm_formula, {
    "empty": {"zero": "", "nan": _EMPTY},
    "count": {"masked": "", "all": "the loss counts positions that were not masked; only positions whose label is not IGNORE (-100) count."},
    "reduce": {"tokens": "", "sum": _MEAN, "all": "the loss is averaged over all positions; divide the summed loss by the number of masked positions (labels != IGNORE), not by B·T.",
               "rows": _PER_ROW, "batch": _BATCH, "positions": _PER_POSITION, "rows_sum": _ROWS_SUM},
    "logp": {"log_softmax": "", **_LOGP},
    "smoothing": {0.0: "", 0.1: _SMOOTH},
})


@register("mlm_loss")
def check_mlm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), labels (B, T)) -> scalar``: mean cross-entropy over labels != IGNORE."""
    g = _gen(606)

    def labels_like(tokens, keep):
        return torch.where(keep, tokens, torch.full_like(tokens, IGNORE))

    tok = torch.randint(6, 11, (2, 6), generator=g)
    keep = torch.rand(2, 6, generator=g) < 0.4
    keep[0, 0] = True
    cases = [_Case("a batch with a few masked positions", (_logits_case(g, 2, 6, 11), labels_like(tok, keep)))]
    tok = torch.randint(6, 11, (1, 1), generator=g)
    cases.append(_Case("a batch of one, length one", (_logits_case(g, 1, 1, 11), tok.clone())))
    tok = torch.randint(6, 11, (3, 4), generator=g)
    keep = torch.zeros(3, 4, dtype=torch.bool)
    keep[1, 2] = True
    cases.append(_Case("exactly one masked position", (_logits_case(g, 3, 4, 11), labels_like(tok, keep))))
    tok = torch.randint(6, 11, (2, 5), generator=g)
    keep = torch.rand(2, 5, generator=g) < 0.5
    keep[1, 4] = True
    cases.append(_Case("large logits (numerical stability)", (_logits_case(g, 2, 5, 11, scale=200.0), labels_like(tok, keep))))
    tok = torch.randint(6, 11, (3, 5), generator=g)
    keep = torch.zeros(3, 5, dtype=torch.bool)
    keep[0, :4] = True
    keep[2, 1] = True  # 4, 0 and 1 masked positions: a mean of per-row means differs
    cases.append(_Case("rows with 4, 0 and 1 masked positions", (_logits_case(g, 3, 5, 11), labels_like(tok, keep))))
    cases.append(_Case("no masked position at all", (_logits_case(g, 2, 3, 11), torch.full((2, 3), IGNORE))))
    ref = lambda lg, lb: _ref_mlm_loss(lg, lb)  # noqa: E731
    names = ("logits", "labels")
    return run_check("mlm_loss", fn, cases, ref, _MLM_LOSS_VARIANTS, arg_names=names, output="loss",
                     probes=[denominator_probe("mlm_loss", lambda lg, lb: lb != IGNORE), loss_inputs_probe("mlm_loss")],
                     properties=[loss_backward_property("mlm_loss", [cases[0], cases[-2], cases[-1]], ref, arg_names=names),
                                 device_property("mlm_loss", cases[0], ref)])




# --------------------------------------------------------------------------------------------
# the encoder block: pre-norm vs post-norm
# --------------------------------------------------------------------------------------------
def _block_formula(x, mask, attn, ffn, norm1, norm2, pre_norm=True, *, residual="both", where="ok", swap_norms=False,
                   pass_mask=True, order="attn_first", res_from="input", final=False, skip_norm=None):
    n1, n2 = (norm2, norm1) if swap_norms is True else (norm1, norm1) if swap_norms == "norm1" else (norm1, norm2)
    if where == "parallel" and pre_norm:  # both sub-layers read the block's input
        m = mask if pass_mask is True else None
        return x + attn(n1(x), m) + ffn(n2(x))
    if where == "norm_branch" and not pre_norm:  # post-norm with the norm on the sub-layer's output, not the sum
        x = x + n1(attn(x, mask))
        return x + n2(ffn(x))
    if where in ("always_pre", "always_post"):
        pre_norm = where == "always_pre"
        where = "ok"
    pre = pre_norm if where in ("ok", "post_double", "parallel", "norm_branch") else not pre_norm
    m = (None if mask is None else ~mask) if pass_mask == "inverted" else mask if pass_mask else None
    subs = [(lambda h: attn(h, m), n1), (lambda h: ffn(h), n2)]
    if order == "ffn_first":
        subs = subs[::-1]
    for k, (f, n) in enumerate(subs):
        keep = residual == "both" or (residual == "no_attn" and k == 1) or (residual == "no_ffn" and k == 0)
        if pre:
            h = x if skip_norm == k else n(x)
            base = h if res_from == "normed" else x
            x = base + f(h) if keep else f(h)
        elif where == "post_double":  # post-norm that also normalises the sub-layer's input
            x = n(x + f(n(x)))
        else:
            x = n(x + f(x)) if keep else n(f(x))
    return n2(x) if final else x


def reference_encoder_block(x: Tensor, mask, attn, ffn, norm1, norm2, pre_norm: bool = True) -> Tensor:
    """One encoder block. ``attn(h, mask)`` and ``ffn(h)`` map ``(B, T, d) -> (B, T, d)``.

    * pre-norm  (GPT-2, most modern models):  x = x + attn(norm1(x), mask);  x = x + ffn(norm2(x))
    * post-norm (the original Transformer, BERT):  x = norm1(x + attn(x, mask));  x = norm2(x + ffn(x))
    """
    return _block_formula(x, mask, attn, ffn, norm1, norm2, pre_norm)


_BLOCK_VARIANTS = variant_grid(_block_formula, {
    "where": {"ok": "", "flipped": "pre_norm is handled the wrong way round: pre-norm normalises the *input* of each sub-layer, x + f(norm(x)); post-norm normalises the *sum*, norm(x + f(x)).",
              "parallel": "attention and the FFN run in parallel on the block's input; they run one after the other: the FFN reads x after attention's residual, x = x + attn(norm1(x)); x = x + ffn(norm2(x)).",
              "norm_branch": "post-norm normalises the *sum*, norm1(x + attn(x)), not the sub-layer's output before adding it (x + norm1(attn(x))).",
              "post_double": "post-norm normalises twice: the sub-layer reads x itself and only the sum is normalised, norm(x + f(x)), not norm(x + f(norm(x)))."},
    "residual": {"both": "", "no_attn": "the residual connection around attention is missing: add the block's input back, x + attn(…).",
                 "no_ffn": "the residual connection around the FFN is missing: add its input back, x + ffn(…).",
                 "none": "there are no residual connections: each sub-layer's output is added to its input (x + f(…))."},
    "swap_norms": {False: "", True: "norm1 and norm2 are swapped: norm1 goes with attention, norm2 with the FFN.",
                   "norm1": "norm1 is used for both sub-layers; the FFN has its own norm, norm2 (x + ffn(norm2(x)))."},
    "pass_mask": {True: "", False: "the mask argument is ignored: it is not passed to attention, so padded keys are attended to; call attn(h, mask).",
                  "inverted": "the mask is inverted (~mask): True means 'may attend', so pass the mask as it is, attn(h, mask)."},
    "order": {"attn_first": "", "ffn_first": "the sub-layers are in the wrong order: attention first, then the FFN."},
    "skip_norm": {None: "", 0: "a norm is missing: in pre-norm, attention reads norm1(x), x = x + attn(norm1(x), mask).",
                  1: "a norm is missing: in pre-norm, the FFN reads norm2(x), x = x + ffn(norm2(x))."},
    "final": {False: "", True: "there is an extra norm at the end; a pre-norm block returns the residual stream without normalising it (the model has one final norm after its last block)."},
    "res_from": {"input": "", "normed": "the residual starts from the normalised x; in pre-norm the residual stream stays un-normalised: x = x + attn(norm1(x)), not norm1(x) + attn(norm1(x))."},
})


def _block_parts(seed: int, d: int = 16, heads: int = 4):
    from ...attention import MultiHeadAttention
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mha = MultiHeadAttention(d, heads, bias=False).eval()
        ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)).eval()
        n1, n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        with torch.no_grad():
            for n in (n1, n2):  # distinct, non-trivial scales and shifts, so that swapping them shows
                n.weight.copy_(1 + 0.5 * torch.randn(d, generator=g))
                n.bias.copy_(0.5 * torch.randn(d, generator=g))

    def attn(h, mask=None):
        return mha(h, mask=mask)

    return attn, ffn, n1, n2


@register("encoder_block")
def check_encoder_block(fn: Callable) -> bool:
    """Check ``fn(x, mask, attn, ffn, norm1, norm2, pre_norm=True) -> (B, T, d)``: one encoder block,
    pre-norm or post-norm."""
    g = _gen(515)
    attn, ffn, n1, n2 = _block_parts(515)
    pad = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    pad[1, ..., 3:] = False
    x = lambda *s: torch.randn(*s, generator=g) * 2 + 1  # noqa: E731 - not already normalised
    cases = [
        Case("pre-norm with a padding mask", (x(2, 5, 16), pad, attn, ffn, n1, n2), {"pre_norm": True}),
        Case("post-norm with a padding mask", (x(2, 5, 16), pad, attn, ffn, n1, n2), {"pre_norm": False}),
        Case("pre-norm, no mask", (x(3, 4, 16), None, attn, ffn, n1, n2), {"pre_norm": True}),
        Case("post-norm, no mask, one token", (x(1, 1, 16), None, attn, ffn, n1, n2), {"pre_norm": False}),
    ]
    names = ("x", "mask", "attn", "ffn", "norm1", "norm2")
    return run_check("encoder_block", fn, cases, reference_encoder_block, _BLOCK_VARIANTS,
                     arg_names=names, output="float", probes=[_block_zero_ffn_probe], early_probes=[_pre_norm_probe],
                     properties=[grad_property("encoder_block", cases[0], reference_encoder_block, (0,), names),
                                 grad_property("encoder_block", cases[1], reference_encoder_block, (0,), names),
                                 device_property("encoder_block", cases[0], reference_encoder_block),
                                 device_property("encoder_block", cases[2], reference_encoder_block)])  # no mask given


def _pre_norm_probe(fn, case, got, expected):
    """The learner's block gives the same result with pre_norm True and False: the flag is not used."""
    pre = case.kwargs.get("pre_norm", True)
    other = fn(*_copy(case.args), pre_norm=not pre)
    if isinstance(other, Tensor) and same(other, got):
        kind = "pre-norm" if same(got, reference_encoder_block(*case.args, pre_norm=True)) else \
            "post-norm" if same(got, reference_encoder_block(*case.args, pre_norm=False)) else "the same block"
        return (f"encoder_block: the pre_norm argument is ignored — pre_norm=True and pre_norm=False give the same result "
                f"({kind}); branch on pre_norm (seen on the case '{case.name}').")
    return None


def _block_zero_ffn_probe(fn, case, got, expected):
    """With an FFN that outputs zeros the block is x + attention (pre-norm) or norm2(norm1(x + attention))
    (post-norm); getting x back (or norm2(x)) means the attention's output was dropped on the way."""
    x, mask, attn, ffn, n1, n2 = case.args
    pre = case.kwargs.get("pre_norm", True)
    zero = lambda h: torch.zeros_like(h)  # noqa: E731
    out = fn(x, mask, attn, zero, n1, n2, **case.kwargs)
    ref = reference_encoder_block(x, mask, attn, zero, n1, n2, **case.kwargs)
    if not isinstance(out, Tensor) or same(out, ref):
        return None
    if same(out, x if pre else n2(x)):
        return (f"encoder_block: the attention's output is lost — the FFN's residual adds to the block's input x instead of to "
                f"x + attention; feed the updated x (after the first residual) into the second sub-layer and its residual "
                f"(seen on the case '{case.name}').")
    return None

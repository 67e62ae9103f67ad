"""Checks for lesson 03: the CLM loss, sampling (temperature, top-k, top-p) and greedy decoding
with a KV cache."""
from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
from torch import Tensor

from ...config import ModelConfig
from ...generation import generate
from ...losses import clm_loss as _ref_clm_loss
from ...models import DecoderOnly
from ._core import (_ALL, _BATCH, _SMOOTH, _EMPTY, _LOGP, _MEAN, _PER_POSITION, _PER_ROW, _ROWS_SUM, BOS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_IDS, UNK_ID, Case, Fail,
                    Variant, _fmt, _gen, _logits_case, _padded_tokens, _pads_ignored, _shape, call, guarded, loss_backward_property,
                    loss_formula, not_callable, register, run_check, type_problem, variant_grid, denominator_probe, loss_inputs_probe,
                    device_property)

_Case, _Variant, _Fail = Case, Variant, Fail

__all__ = ["check_clm_loss", "check_next_token_probs", "check_greedy_decode_with_cache", "reference_next_token_probs",
           "reference_greedy_decode_with_cache", "toy_decoder"]


# --------------------------------------------------------------------------------------------
# the CLM loss
# --------------------------------------------------------------------------------------------
def _clm_formula(lg, tok, pad_id=0, *, shift="ok", pad="ignored", **kw):
    if shift == "ok":
        lg, tg = lg[:, :-1], tok[:, 1:]
    elif shift == "roll":
        tg = tok.roll(-1, 1)
    elif shift == "none_drop_last":
        lg, tg = lg[:, :-1], tok[:, :-1]
    elif shift == "flat":  # shifted on the flattened batch: rows run into each other
        v = lg.shape[-1]
        lg, tg = lg.reshape(1, -1, v)[:, :-1], tok.reshape(1, -1)[:, 1:]
    elif shift == "same":
        lg, tg = lg[:, 1:], tok[:, 1:]
    elif shift == "two":
        lg, tg = lg[:, :-2], tok[:, 2:]
    elif shift == "wrong_way":
        lg, tg = lg[:, 1:], tok[:, :-1]
    else:
        tg = tok
    if pad == "eos":
        return loss_formula(lg, _pads_ignored(tg, pad_id).masked_fill(tg == EOS_ID, -100), **kw)
    if pad == "only":  # the keep mask inverted: only padding is scored
        return loss_formula(lg, tg.masked_fill(tg != pad_id, -100), **kw)
    if pad == "inputs":  # padding judged on the inputs, not on the targets
        tg = tg.masked_fill(tok[:, :-1] == pad_id, -100) if shift == "ok" else tg
    else:
        tg = tg if pad == "scored" else _pads_ignored(tg, PAD_ID if pad == "zero" else pad_id)
    return loss_formula(lg, tg, **kw)


_SHIFT = "the targets are not shifted: the logits at position t predict the token at t+1, so compare logits[:, :-1] with tokens[:, 1:]."

_CLM_VARIANTS = variant_grid(_clm_formula, {
    "shift": {"ok": "", "none": _SHIFT,
              "wrong_way": "the shift goes the wrong way: drop the *last* logit and the *first* token (logits[:, :-1] against tokens[:, 1:]).",
              "none_drop_last": _SHIFT,
              "roll": "torch.roll wraps around, so the last position is scored against the row's first token; drop the last logit instead: logits[:, :-1] against tokens[:, 1:].",
              "flat": "the shift is done on the flattened batch, so each row's last logit is scored against the next row's first token; shift within each row: logits[:, :-1] against tokens[:, 1:].",
              "same": "both the logits and the tokens are cut at the start, so each position is scored against its own token; drop the *last* logit and the first token (logits[:, :-1] against tokens[:, 1:]).",
              "two": "the targets are shifted by two positions; the logits at t predict the very next token, t+1: logits[:, :-1] against tokens[:, 1:]."},
    "pad": {"ignored": "", "zero": "the pad_id argument is ignored; ignore targets equal to pad_id, not a hard-coded 0.",
            "scored": "padding is scored: targets equal to pad_id must be ignored (set them to -100, or pass ignore_index=pad_id).",
            "eos": "EOS is ignored like padding; EOS is a target the model must learn to predict (it is how it learns to stop), so ignore only pad_id.",
            "only": "only the padding is scored — the mask is inverted; count the targets that are *not* pad_id (targets != pad_id).",
            "inputs": "padding is judged on the inputs tokens[:, :-1]; ignore the positions whose *target*, tokens[:, 1:], is padding."},
    "reduce": {"tokens": "", "sum": _MEAN, "all": _ALL, "rows": _PER_ROW, "batch": _BATCH, "positions": _PER_POSITION, "rows_sum": _ROWS_SUM},
    "logp": {"log_softmax": "", **_LOGP},
    "smoothing": {0.0: "", 0.1: _SMOOTH},
    "empty": {"zero": "", "nan": _EMPTY},
})


@register("clm_loss")
def check_clm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), tokens (B, T), pad_id=0) -> scalar``: next-token cross-entropy
    (logits at t against the token at t+1), padding ignored, mean over the counted targets."""
    g = _gen(707)
    V = 13
    tk = lambda lengths, t: _padded_tokens(g, lengths, t, vocab=V, bos=True, eos=True)  # noqa: E731
    cases = [
        Case("a right-padded batch", (_logits_case(g, 3, 6, V), tk([6, 4, 2], 6))),
        Case("no padding", (_logits_case(g, 2, 4, V), tk([4, 4], 4))),
        Case("a batch of one, length two", (_logits_case(g, 1, 2, V), tk([2], 2))),
        Case("large logits (numerical stability)", (_logits_case(g, 2, 5, V, scale=200.0), tk([5, 3], 5))),
        Case("pad_id=7", (_logits_case(g, 3, 5, V), _padded_tokens(g, [5, 2, 4], 5, vocab=V, bos=True, eos=True, pad_id=7)), {"pad_id": 7}),
        Case("rows with 6, 1 and 3 targets", (_logits_case(g, 3, 7, V), tk([7, 2, 4], 7))),
        Case("nothing to predict: length one", (_logits_case(g, 2, 1, V), tk([1, 1], 1))),
        Case("nothing to predict: only BOS, then padding", (_logits_case(g, 2, 3, V), tk([1, 1], 3))),
    ]
    ref = lambda lg, tok, pad_id=PAD_ID: _ref_clm_loss(lg, tok, pad_id=pad_id)  # noqa: E731
    names = ("logits", "tokens")
    return run_check("clm_loss", fn, cases, ref, _CLM_VARIANTS, arg_names=names, output="loss",
                     probes=[denominator_probe("clm_loss", lambda lg, tok, pad_id=PAD_ID: tok[:, 1:] != pad_id), loss_inputs_probe("clm_loss")],
                     properties=[loss_backward_property("clm_loss", [cases[0], cases[-2], cases[-1]], ref, arg_names=names),
                                 device_property("clm_loss", cases[0], ref)])


# --------------------------------------------------------------------------------------------
# sampling: the distribution the next token is drawn from
# --------------------------------------------------------------------------------------------
def _probs_formula(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, *,
                   temp="divide", k_off=0, nucleus="include", order="temp_first", renorm=True, p_first=False,
                   use_k=True, use_p=True, kth_from="row") -> Tensor:
    """The library's filtering (course_lib.generation.sample_next) as probabilities, with flags."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    top_k = top_k if use_k else None
    top_p = top_p if use_p else None
    lg = logits.float()
    t = {"divide": temperature, "multiply": 1.0 / temperature, "none": 1.0, "twice": temperature ** 2}[temp]
    if order == "temp_first":
        lg = lg / t
    if top_k is not None and not p_first:
        kk = max(1, min(top_k + k_off, lg.shape[-1]))
        kth = lg.topk(kk, dim=-1).values[:, -1:]
        if kth_from == "first_row":
            kth = kth[:1].expand_as(kth)
        lg = lg.masked_fill(lg < kth, float("-inf"))
    if top_p is not None and nucleus == "no_scatter":  # the sorted keep-mask applied to the unsorted logits
        sorted_lg, _ = lg.sort(dim=-1, descending=True)
        p = sorted_lg.softmax(-1)
        lg = lg.masked_fill(p.cumsum(-1) - p >= top_p, float("-inf"))
    elif top_p is not None and nucleus == "exclude_all":  # drops the crossing token, even the first one
        sorted_lg, idx = lg.sort(dim=-1, descending=True)
        drop = sorted_lg.softmax(-1).cumsum(-1) > top_p
        lg = torch.full_like(lg, float("-inf")).scatter(-1, idx, sorted_lg.masked_fill(drop, float("-inf")))
    elif top_p is not None and nucleus == "own":  # each token judged by its own probability
        pr = lg.softmax(-1)
        lg = lg.masked_fill(~((pr >= 1 - top_p) | (pr == pr.max(-1, keepdim=True).values)), float("-inf"))
    elif top_p is not None and nucleus == "unsorted":
        p = lg.softmax(-1)
        lg = lg.masked_fill(p.cumsum(-1) - p >= top_p, float("-inf"))
    elif top_p is not None:
        sorted_lg, idx = lg.sort(dim=-1, descending=True)
        p = sorted_lg.softmax(-1)
        cum = p.cumsum(-1)
        drop = (cum - p >= top_p) if nucleus == "include" else (cum > top_p)
        if nucleus == "exclude":
            drop[..., 0] = False
        sorted_lg = sorted_lg.masked_fill(drop, float("-inf"))
        lg = torch.full_like(lg, float("-inf")).scatter(-1, idx, sorted_lg)
    if top_k is not None and p_first:
        kth = lg.topk(max(1, min(top_k, lg.shape[-1])), dim=-1).values[:, -1:]
        lg = lg.masked_fill(lg < kth, float("-inf"))
    if order == "temp_last":
        lg = lg / t
    if not renorm:
        full = (logits.float() / t).softmax(-1)
        return full.masked_fill(lg == float("-inf"), 0.0)
    return lg.softmax(-1)


def reference_next_token_probs(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """``logits (B, V)`` -> the probabilities ``(B, V)`` :func:`course_lib.generation.sample_next`
    draws from: divide by the temperature, keep the ``top_k`` largest logits, keep the smallest set of
    most likely tokens whose probabilities reach ``top_p`` (the token that crosses ``top_p`` is kept),
    softmax. ``temperature == 0`` is greedy: all the mass on the argmax."""
    return _probs_formula(logits, temperature, top_k, top_p)


_PROBS_VARIANTS = variant_grid(lambda *a, **kw: _probs_formula(*a, **kw), {
    "temp": {"divide": "", "multiply": "the logits are multiplied by the temperature; divide them (T < 1 sharpens, T > 1 flattens).",
             "none": "the temperature is ignored; divide the logits by it before the softmax.",
             "twice": "the temperature is applied twice (the logits are divided by T²); divide the logits by the temperature once."},
    "k_off": {0: "", 1: "top-k keeps one token too many; keep exactly the k largest logits.",
              -1: "top-k keeps one token too few; keep exactly the k largest logits (compare with the k-th largest using <, not <=)."},
    "nucleus": {"include": "", "exclude": "top-p drops the token that crosses p; keep the smallest set of tokens whose probabilities sum to *at least* p, i.e. drop a token only if the mass before it already reaches p.",
                "own": "a token is kept or dropped by its own probability; top-p keeps the most likely tokens until their *cumulative* probability (sorted, descending) reaches p.",
                "exclude_all": "top-p drops the token that crosses p, so a row whose most likely token alone exceeds p keeps nothing (NaN); keep a token while the mass *before* it is below p, which always keeps the first.",
                "unsorted": "the nucleus is accumulated over the tokens in vocabulary order; sort the probabilities in descending order first, then accumulate.",
                "no_scatter": "the keep-mask computed on the sorted probabilities is applied to the unsorted logits; scatter it back to the vocabulary order (mask.scatter(-1, sorted_idx, sorted_mask)) first."},
    "use_k": {True: "", False: "the top_k argument is ignored: keep only the k largest logits when top_k is given."},
    "use_p": {True: "", False: "the top_p argument is ignored: keep only the nucleus (the most likely tokens up to mass top_p) when top_p is given."},
    "kth_from": {"row": "", "first_row": "the k-th largest logit is taken from the first row and used for every row; take it per row, logits.topk(k).values[:, -1:]."},
    "order": {"temp_first": "", "temp_last": "the temperature is applied after the top-p filtering; divide by the temperature first, then choose the nucleus from the tempered probabilities."},
    "p_first": {False: "", True: "top-p is applied before top-k; apply top-k first, then choose the nucleus among the k tokens that are left."},
    "renorm": {True: "", False: "the kept probabilities are not renormalised; after filtering, softmax the kept logits again (or divide by their sum) so they add up to 1."},
}) + [
    Variant(lambda lg, temperature=1.0, top_k=None, top_p=None: torch.softmax(lg.float(), -1) if temperature == 0 else _probs_formula(lg, temperature, top_k, top_p),
            "temperature 0 means greedy: put all the probability on the argmax (dividing by 0 is not defined)."),
]


def _mixed_rows() -> Tensor:
    """Rows on which top-k then top-p, top-p then top-k, top-k alone and top-p alone all differ: the peaked
    row's nucleus is smaller than k, a flat row's is larger, and on a flat row the renormalised top-k
    needs fewer tokens to reach p than the whole vocabulary."""
    peaked = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.005, 0.004, 0.003, 0.002, 0.0005, 0.0005]).log()
    return torch.stack([peaked, torch.linspace(0.3, 0.0, 12), torch.linspace(2.0, -2.0, 12)])


def _probs_cases() -> list[Case]:
    g = _gen(717)
    lg = lambda b, v, s=2.0: torch.randn(b, v, generator=g) * s  # noqa: E731
    return [
        Case("temperature 1, no filtering", (lg(2, 10),)),
        Case("temperature 0.5", (lg(2, 10),), {"temperature": 0.5}),
        Case("temperature 2", (lg(3, 8),), {"temperature": 2.0}),
        Case("top_k=3", (lg(2, 10),), {"top_k": 3}),
        Case("top_k=1 (greedy through sampling)", (lg(2, 6),), {"top_k": 1}),
        Case("top_p=0.6", (torch.randn(3, 12, generator=torch.Generator().manual_seed(0)) * 2,), {"top_p": 0.6}),
        Case("top_p=0.5", (lg(3, 12),), {"top_p": 0.5}),
        Case("top_p=0.9 with temperature 0.7", (lg(2, 12, 3.0),), {"top_p": 0.9, "temperature": 0.7}),
        Case("top_k=4 and top_p=0.7, a peaked row and flat rows", (_mixed_rows(),), {"top_k": 4, "top_p": 0.7}),
        Case("top_k=5 and top_p=0.8, temperature 1.5", (lg(2, 16),), {"top_k": 5, "top_p": 0.8, "temperature": 1.5}),
        Case("temperature 0 (greedy)", (lg(2, 9),), {"temperature": 0.0}),
        Case("top_k=4 on 5 rows of different scales", (lg(5, 20) * torch.tensor([[0.5], [1.0], [4.0], [2.0], [8.0]]),), {"top_k": 4}),
        Case("top_p=0.3 where one token alone holds more", (lg(3, 10, 4.0),), {"top_p": 0.3}),
    ]


@register("next_token_probs")
def check_next_token_probs(fn: Callable) -> bool:
    """Check ``fn(logits (B, V), temperature=1.0, top_k=None, top_p=None) -> probs (B, V)``: the
    distribution sampling draws from, each row summing to 1."""
    cases = _probs_cases()
    return run_check("next_token_probs", fn, cases, reference_next_token_probs, _PROBS_VARIANTS,
                     arg_names=("logits", "temperature", "top_k", "top_p"), output="float", probes=[_probs_ranking_probe],
                     early_probes=[_greedy_temperature_probe],
                     properties=[device_property("next_token_probs", next(c for c in cases if "top_k=5" in c.name), reference_next_token_probs)])


def _greedy_temperature_probe(fn, case, got, expected):
    if case.kwargs.get("temperature", 1.0) == 0 and isinstance(got, Tensor) and not bool(torch.isfinite(got).all()):
        return ("next_token_probs: temperature 0 gives NaN or inf (the logits divided by 0); temperature 0 means greedy, so "
                f"return all the probability on the argmax, e.g. a one-hot row (seen on the case '{case.name}').")
    return None


def _probs_ranking_probe(fn, case, got, expected):
    """A kept token must be at least as likely as every dropped one (top-k and top-p keep the head)."""
    logits = case.args[0]
    if not isinstance(got, Tensor) or got.shape != logits.shape:
        return None
    kept, dropped = got > 1e-9, got <= 1e-9
    n_got, n_exp = kept.sum(-1), (expected > 1e-9).sum(-1)
    top_k = case.args[2] if len(case.args) > 2 else case.kwargs.get("top_k")
    if top_k is not None and case.kwargs.get("top_p", case.args[3] if len(case.args) > 3 else None) is None \
            and bool((n_got == logits.shape[-1]).all()) and top_k < logits.shape[-1]:
        return (f"next_token_probs: the top_k argument is ignored — every token keeps some probability; keep the k = {top_k} largest "
                f"logits and set the others to -inf (seen on the case '{case.name}').")
    if top_k is not None and case.kwargs.get("top_p", case.args[3] if len(case.args) > 3 else None) is None \
            and not torch.equal(n_got, n_exp) and bool((n_got == n_got[0]).all()):
        return (f"next_token_probs: top-k keeps {int(n_got[0])} tokens per row instead of k = {top_k}; keep the k largest logits "
                f"(logits.topk(k).values[:, -1:] is the k-th largest) and set the others to -inf (seen on the case '{case.name}').")
    for b in range(logits.shape[0]):
        if kept[b].any() and dropped[b].any() and logits[b][dropped[b]].max() > logits[b][kept[b]].min() + 1e-6:
            return ("next_token_probs: a less likely token is kept while a more likely one is dropped; top-k and top-p keep the most "
                    "likely tokens, so sort in descending order (sort(descending=True)) before the cumulative sum "
                    f"(seen on the case '{case.name}').")
    return None


# --------------------------------------------------------------------------------------------
# greedy decoding with a KV cache
# --------------------------------------------------------------------------------------------
def reference_greedy_decode_with_cache(model, prompt: Tensor, max_new_tokens: int, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """Greedy decoding with the KV cache: :func:`course_lib.generate` with ``temperature=0``."""
    return generate(model, prompt, max_new_tokens, eos_id=eos_id, pad_id=pad_id)


class _ToyDecoder(DecoderOnly):
    """A seeded random :class:`DecoderOnly` with two rules on top of its logits, so that greedy
    decoding is varied but predictable: special ids other than ``eos_id`` (and ``blocked`` ids) are
    never predicted, and ``eos_id`` is predicted exactly after the token ``eos_after``.
    While ``calls`` is a list, every forward pass — ``model(...)`` or ``model.forward(...)`` —
    appends ``(cached positions before the call or None without a cache, new positions)``."""

    def __init__(self, cfg: ModelConfig, eos_after: int, eos_id: int = EOS_ID, blocked: tuple[int, ...] = ()) -> None:
        super().__init__(cfg)
        bias = torch.zeros(cfg.vocab_size)
        bias[[i for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID, *blocked) if i != eos_id]] = -1e4
        self.register_buffer("logit_bias", bias, persistent=False)
        self.eos_after, self.eos_id = eos_after, eos_id
        self.calls: list | None = None

    def forward(self, tokens: Tensor, **kwargs) -> Tensor:
        if self.calls is not None:
            cache = kwargs.get("cache")
            past = None
            if cache is not None:
                try:
                    past = len(cache[0]["self"])
                except Exception:  # noqa: BLE001 - an unusual cache object: the model will complain itself
                    past = -1
            self.calls.append((past, int(tokens.shape[1]) if isinstance(tokens, Tensor) and tokens.dim() == 2 else -1))
        logits = super().forward(tokens, **kwargs) + self.logit_bias
        eos = torch.where(tokens == self.eos_after, 1e4, -1e4).to(logits.dtype)
        e = self.eos_id
        return torch.cat([logits[..., :e], eos[..., None], logits[..., e + 1:]], dim=-1)


@functools.lru_cache(maxsize=None)
def _toy_decoder_cached(seed: int, vocab_size: int, eos_id: int = EOS_ID, blocked: tuple[int, ...] = ()) -> _ToyDecoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = ModelConfig(vocab_size=vocab_size, d_model=32, n_heads=4, n_layers=2, max_len=256)
        model = _ToyDecoder(cfg, eos_after=vocab_size - 1, eos_id=eos_id, blocked=blocked)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.5)  # large weights: confident, varied predictions
            model.embed.pos.weight.normal_(0.0, 1.0)
    return model.eval()


def toy_decoder(seed: int = 3, vocab_size: int = 16) -> DecoderOnly:
    """A fresh copy of the small seeded random decoder the greedy-decoding check uses: special ids
    other than EOS are never predicted, and the last id (``vocab_size - 1``) is always followed by EOS."""
    return copy.deepcopy(_toy_decoder_cached(seed, vocab_size))


class _Recorder:
    """For a model that is not the toy decoder: record forward calls with a pre-hook (calls through
    ``model.forward`` are not seen then)."""

    def __init__(self, model) -> None:
        self.model = model
        self.own = isinstance(model, _ToyDecoder)
        if self.own:
            model.calls = []
            self.calls = model.calls
        else:
            self.calls = []
            self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        tokens = args[0] if args else kwargs.get("tokens")
        cache = kwargs.get("cache")
        past = None
        if cache is not None:
            try:
                past = len(cache[0]["self"])
            except Exception:  # noqa: BLE001
                past = -1
        self.calls.append((past, int(tokens.shape[1]) if isinstance(tokens, Tensor) and tokens.dim() == 2 else -1))

    def close(self) -> None:
        if self.own:
            self.model.calls = None
        else:
            self._handle.remove()


def _greedy_rows(model, n_cand: int, p_len: int, steps: int, seed: int, eos_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate prompts, the step of each row's first greedy EOS (``steps`` if none), and whether
    every greedy choice had a safe margin (so tiny float differences cannot flip the argmax)."""
    g = _gen(seed)
    prompts = torch.randint(len(SPECIAL_IDS), model.cfg.vocab_size - 1, (n_cand, p_len), generator=g)
    prompts[prompts == 9] = 10  # 9 is the padding id of one case: never in a prompt
    out = generate(model, prompts, steps, eos_id=None)  # no early stop: all rows have `steps` tokens
    is_eos = out == eos_id
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((n_cand,), steps))
    with torch.no_grad():
        logits = model(torch.cat([prompts, out], 1))[:, p_len - 1: p_len - 1 + steps]
    top2 = logits.topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    upto = torch.arange(steps)[None, :] <= first[:, None]
    safe = (margin.masked_fill(~upto, float("inf")) > 1e-2).all(1)
    return prompts, first, safe


_ALT = {"eos_id": 7, "pad_id": 9}  # the case with non-default ids


def _alt_model() -> _ToyDecoder:
    return _toy_decoder_cached(3, 16, 7, (9,))


@functools.lru_cache(maxsize=None)
def _greedy_cases() -> tuple[Case, ...]:
    def pick(model, p_len, steps, seed, want, eos_id=EOS_ID):  # want: list of predicates on the first-EOS step
        prompts, first, safe = _greedy_rows(model, 96, p_len, steps, seed, eos_id)
        rows, used = [], set()
        for pred in want:
            for i in range(prompts.shape[0]):
                if i not in used and bool(safe[i]) and pred(int(first[i])):
                    rows.append(i)
                    used.add(i)
                    break
            else:  # pragma: no cover - only if the toy model changed
                raise RuntimeError("could not build the greedy-decoding cases; the toy decoder changed.")
        return prompts[rows]

    model = _toy_decoder_cached(3, 16)
    no_eos = lambda f: f >= 8  # noqa: E731
    mid = lambda f: 2 <= f <= 6  # noqa: E731
    return (
        Case("3 prompts of length 4, 8 new tokens, no EOS", (pick(model, 4, 8, 11, [no_eos] * 3), 8)),
        Case("a batch of one with a prompt of length one", (pick(model, 1, 6, 12, [lambda f: f >= 6]), 6)),
        Case("max_new_tokens=1", (pick(model, 3, 1, 13, [lambda f: True] * 2), 1)),
        Case("one row emits EOS early and must be padded after it", (pick(model, 4, 8, 14, [no_eos, mid, no_eos]), 8)),
        Case("every row emits EOS, so decoding stops early", (pick(model, 3, 10, 15, [lambda f: 1 <= f <= 7, lambda f: 1 <= f <= 7]), 10)),
        Case("eos_id=7 and pad_id=9", (pick(_alt_model(), 4, 8, 16, [no_eos, mid, lambda f: 1 <= f <= 7], eos_id=7), 8), dict(_ALT)),
    )


def _greedy_diagnosis(name: str, case: Case, model, got, expected, calls, where: str) -> str | None:
    """One sentence for a wrong result of greedy decoding (``got`` != ``expected``)."""
    prompt, n = case.args
    eos_id, pad_id = case.kwargs.get("eos_id", EOS_ID), case.kwargs.get("pad_id", PAD_ID)
    P = prompt.shape[1]
    if len(calls) > 1 and calls[0][0] == 0 and calls[1] == (calls[0][1], 2):
        return (f"{name}: after the prefill the last prompt token is fed again together with the new token, so the cache holds it "
                f"twice; the prefill already stored it: feed only the new token, model(token[:, None], cache=cache) {where}.")
    if any(past is not None and past > 0 and t > 1 for past, t in calls):
        return (f"{name}: after the prefill, feed only the newest token to the model; re-feeding the whole sequence "
                f"into the cache stores its keys and values again (duplicated positions) {where}.")
    if calls and calls[0][0] is None and any(past is not None for past, _ in calls[1:]):
        return (f"{name}: the prompt was run without the cache, so the cache starts empty and the next steps cannot see the prompt; "
                f"create the cache first and run the prompt through it, logits = model(prompt, cache=cache) {where}.")
    if len(calls) > 1 and all(past == 0 for past, _ in calls) and all(t == 1 for _, t in calls[1:]):
        return (f"{name}: a new, empty cache is created at every step, so each new token sees nothing before it; "
                f"create the cache once, before the loop, and pass the same one to every call {where}.")
    if not isinstance(got, Tensor):
        return f"{name} returned {'None' if got is None else 'a ' + type(got).__name__} {where}; return the new tokens as a LongTensor (B, number of new tokens)."
    if got.dim() != 2 or got.shape[0] != expected.shape[0]:
        return f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}."
    got = got.long()
    if got.shape[1] == P + expected.shape[1] and torch.equal(got[:, P:], expected):
        return f"{name}: return only the new tokens (B, ≤ max_new_tokens), without the prompt {where}."
    if got.shape == expected.shape and torch.equal(got.masked_fill(got == pad_id, -1), expected.masked_fill((expected == pad_id) | (expected == eos_id), -1)) \
            and bool((expected == eos_id).any()):
        return f"{name}: the EOS token itself was replaced by padding; keep EOS in the output where the row emits it and pad only the positions after it {where}."
    if eos_id != EOS_ID and (bool((got == EOS_ID).any()) or (bool((expected == pad_id).any()) and not bool((got == pad_id).any()))):
        return f"{name}: the eos_id / pad_id arguments are ignored; compare with eos_id and pad with pad_id instead of hard-coded {EOS_ID} and {PAD_ID} {where}."
    no_stop = generate(model, prompt, n, eos_id=None)
    L, E = got.shape[1], expected.shape[1]
    if L == E - 1 and torch.equal(got, expected[:, :L]) and bool((expected[:, -1] == eos_id).any()):
        return (f"{name}: the last step is missing — the token that completes the last row (its EOS) must be appended before "
                f"you check whether every row is done {where}.")
    if L < E and torch.equal(got, expected[:, :L]) and bool((got[:, -1] == eos_id).any()):
        return f"{name} stopped when the first row emitted EOS; keep going until every row has emitted EOS (pad the finished ones) {where}."
    if not torch.equal(no_stop, expected) and L <= n and torch.equal(got, no_stop[:, :L]):
        return (f"{name}: a row that emitted EOS must be padded with pad_id from then on, and decoding stops once every "
                f"row has emitted EOS {where}.")
    if L == E + 1 and L > n and torch.equal(got[:, :E], expected):
        return f"{name}: one token too many — {n} steps give at most max_new_tokens = {n} new tokens {where}."
    if L > E and torch.equal(got[:, :E], expected) and bool((got[:, E:] == pad_id).all()):
        return f"{name}: once every row has emitted EOS, stop decoding instead of adding more padding {where}."
    if L == E - 1 and torch.equal(got, expected[:, :L]):
        return f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))}: one token too few; the first new token comes from the logits of the prompt's last position, so {n} steps give up to {n} tokens {where}."
    if got.shape != expected.shape:
        return f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}."
    after = torch.zeros_like(expected, dtype=torch.bool)  # positions after each row's first EOS
    for b in range(expected.shape[0]):
        hit = (expected[b] == eos_id).nonzero()
        if hit.numel():
            after[b, int(hit[0]) + 1:] = True
    if bool(after.any()) and torch.equal(got[~after], expected[~after]) and not torch.equal(got[after], expected[after]):
        held = got[after][got[after] != pad_id][0].item()
        return (f"{name}: after a row's EOS every position must be padded with pad_id = {pad_id}, but yours holds {held} there; "
                f"finished rows emit only pad_id {where}.")
    bad = int((got != expected).any(0).nonzero()[0])
    if bad == 0:
        with torch.no_grad():
            first = model(prompt).argmax(-1)  # (B, P): the greedy token read at every prompt position
        at = [p for p in range(P - 1) if torch.equal(first[:, p], got[:, 0])]
        if at:
            return (f"{name}: the first new token is read from the logits at prompt position {at[0]}; it comes from the prompt's "
                    f"last position, logits[:, -1] {where}.")
        return (f"{name}: the first new token is not the argmax of the logits at the prompt's last position — greedy decoding "
                f"never samples; take logits[:, -1].argmax(-1) {where}.")
    return (f"{name} differs from course_lib.generate from new token {bad} on (case '{case.name}'); the first new token comes from "
            "the logits at the prompt's last position, and each next one from the logits of the token just fed (greedy: always the argmax, never a sample).")


@register("greedy_decode_with_cache")
def check_greedy_decode_with_cache(fn: Callable, model=None) -> bool:
    """Check ``fn(model, prompt (B, P), max_new_tokens, eos_id=2, pad_id=0) -> new tokens (B, <= N)``:
    greedy decoding that prefills the prompt into a KV cache, then feeds one token per step, pads
    rows that emitted EOS and stops once every row has. Must equal :func:`course_lib.generate`, and
    must really use the cache: every call's positions are counted (``model(...)`` or ``model.forward(...)``).
    ``model`` defaults to the check's own seeded toy decoder (see :func:`toy_decoder`)."""
    name = "greedy_decode_with_cache"
    not_callable(name, fn)
    custom = model is not None
    cases = [c for c in _greedy_cases() if not (custom and c.kwargs)]

    def body():
        for case in cases:
            m = model if custom else (_alt_model() if case.kwargs else _toy_decoder_cached(3, 16))
            prompt, n = case.args
            expected = generate(m, prompt, n, eos_id=case.kwargs.get("eos_id", EOS_ID), pad_id=case.kwargs.get("pad_id", PAD_ID))
            rec = _Recorder(m)
            try:
                got = call(name, fn, Case(case.name, (m, prompt, n), case.kwargs), arg_names=("model", "prompt", "max_new_tokens"))
            finally:
                rec.close()
            where = f"(seen on the case '{case.name}')"
            problem = type_problem(name, got, expected, "ids", case.name, what="the new tokens")
            if problem:
                raise Fail(problem)
            if not (isinstance(got, Tensor) and got.shape == expected.shape and torch.equal(got.long(), expected)):
                raise Fail(_greedy_diagnosis(name, case, m, got, expected, rec.calls, where))
            calls = rec.calls
            if calls and all(past is None for past, _ in calls) and len(calls) > 1:
                raise Fail(f"{name} gives the right tokens but never passes a KV cache, so every step recomputes the whole sequence; "
                           f"create one with model.new_cache() and call model(new_tokens, cache=cache) {where}.")
            processed = sum(t for _, t in calls)
            ideal = prompt.shape[1] + expected.shape[1]  # the prompt once, then one position per new token (+1 spare call)
            if calls and processed > ideal:
                raise Fail(f"{name} gives the right tokens but its model calls process {processed} positions where {ideal - 1} suffice "
                           f"(the prompt once, then one token per step); feed only the newest token together with the cache {where}.")
        if not custom:
            first = cases[0]
            device_property(name, Case(first.name, (_toy_decoder_cached(3, 16), *first.args)), reference_greedy_decode_with_cache)(fn)
        return len(cases)

    return guarded(name, body)

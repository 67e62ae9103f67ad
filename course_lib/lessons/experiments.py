"""Seeded experiments behind lesson 07's verdicts (claims 6(b), 8, 10 and 11).

Each function runs one controlled comparison over several seeds and returns the per-seed numbers
that :func:`course_lib.lessons.ledger.judge` turns into a verdict. They reuse lesson 07's code paths
(:mod:`course_lib.lessons.redllm` for the models and losses, :func:`course_lib.train.train` for the loop,
:func:`course_lib.lessons.translate.translate_ids` for greedy decoding) and are sized to fit in a lesson:
about three minutes on two CPU cores in full mode, a few seconds in fast mode (``COURSE_FAST=1``).

* :func:`pretrain_config`, :func:`pretrain`: lesson 07's pretraining run (DecLLM: causal LM on the
  whole chunk; RedLLM: prefix-LM, the prefix in the encoder).
* :func:`equal_compute` (claim 6(b)): DecLLM and RedLLM at **equal steps**, and DecLLM with half the
  batch at **equal steps and equal training FLOPs**, so the architecture is compared without giving
  either model more optimiser steps.
* :func:`length_extrapolation` (claim 8): continuation perplexity at 1x..8x the training length, per seed.
* :func:`norm_ablation` (claim 11): the recipe with QK-norm, V-norm or the output norm removed, at a
  high learning rate, per seed.
* :func:`biattn_finetune` (claim 10): a causally pretrained DecLLM fine-tuned on an input -> output
  task with its causal mask and with bidirectional attention over the input (BiAttn), per seed.
"""
from __future__ import annotations

import copy
import math
import statistics
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..families import Family
from ..models import DecoderOnly
from ..runtime import seed_everything
from ..train import TrainConfig, train
from . import redllm
from .ledger import Verdict, judge
from .translate import collate_for, loss_for, translate_ids

__all__ = [
    "SIMILAR_COMPUTE",
    "pretrain_config",
    "pretrain",
    "continuation_ppl",
    "equal_compute",
    "compute_to_match",
    "equal_compute_summary",
    "length_extrapolation",
    "NORM_PIECES",
    "norm_ablation",
    "norm_verdicts",
    "FINETUNE_TASKS",
    "finetune_pairs",
    "biattn_finetune",
]


#: What claim 6(b)'s "similar compute" allows (lessons 05 and 07): a compute ratio within a factor 1.5 either way.
SIMILAR_COMPUTE = (2 / 3, 1.5)


# ----------------------------------------------------------------------------------------- pretraining
def pretrain_config(steps: int, lr: float, seed: int = 0, batch_size: int = 32, *, warmup: int | None = None,
                    log_every: int | None = None, eval_every: int | None = None, device: str = "cpu") -> TrainConfig:
    """Lesson 07's schedule: AdamW without weight decay, 10% warm-up, cosine decay, fp32, no progress bar."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=steps // 10 if warmup is None else warmup,
                       weight_decay=0.0, eval_every=eval_every, log_every=log_every or max(1, steps // 6), seed=seed,
                       progress=False, amp="off", device=str(device))


def continuation_ppl(model: nn.Module, x: Tensor, prefix_len: int) -> float:
    """exp of the mean NLL of tokens ``prefix_len..T-1`` of ``x (B, T)`` (the paper's perplexity, both families)."""
    return math.exp(redllm.continuation_nll(model, x, prefix_len).mean().item())


def pretrain(family: str, cfg: ModelConfig, chunks: Tensor, *, prefix_len: int, steps: int, seed: int,
             batch_size: int = 32, lr: float = 3e-3, valid: Tensor | None = None, eval_every: int | None = None,
             device: str = "cpu") -> tuple[nn.Module, list[dict]]:
    """Train a fresh ``redllm.build(family, cfg)`` on ``chunks (N, T)``; returns ``(model in eval mode, history)``.

    With ``valid`` the continuation perplexity (``valid_ppl``) is logged every ``eval_every`` steps and at the end."""
    seed_everything(seed)
    model = redllm.build(family, cfg)
    tcfg = pretrain_config(steps, lr, seed, batch_size, eval_every=eval_every, device=device)
    evaluate = None if valid is None else (lambda m: {"valid_ppl": continuation_ppl(m, valid, prefix_len)})
    history = train(model, redllm.pretraining_loss(family, prefix_len), chunks, tcfg, collate=torch.stack, evaluate=evaluate)
    return model.eval(), history


# ----------------------------------------------------------------------------------------- claim 6(b)
def equal_compute(cfgs: dict[str, ModelConfig], chunks: Tensor, valid: Tensor, *, prefix_len: int, steps: int,
                  seeds: Sequence[int], batch_size: int = 32, lr: float = 3e-3,
                  pretrained: dict[tuple[str, int], nn.Module] | None = None, device: str = "cpu") -> dict:
    """Continuation perplexity of three runs per seed, all with the same number of optimiser steps and schedule:

    * ``"decoder"``: DecLLM, ``batch_size`` chunks per step (equal steps and chunks: about 2x RedLLM's FLOPs);
    * ``"encdec"``: RedLLM, ``batch_size`` chunks per step;
    * ``"decoder_half_batch"``: DecLLM, ``batch_size // 2`` chunks per step: **equal steps and equal training
      FLOPs** with RedLLM (and the same number of predicted tokens per step: all T of half as many chunks
      against the last T - P of each chunk).

    ``pretrained[(run, seed)]``: models already trained with this schedule (lesson 07's ``pretrained`` dict has
    the ``"decoder"`` and ``"encdec"`` runs), reused instead of retrained. Returns ``{"ppl": {run: [per seed]},
    "flops_per_step": {run: FLOPs}, "seeds", "steps", "batch"}``."""
    T = chunks.shape[1]
    pretrained = pretrained or {}
    runs = {"decoder": ("decoder", batch_size), "encdec": ("encdec", batch_size),
            "decoder_half_batch": ("decoder", batch_size // 2)}
    ppl: dict[str, list[float]] = {r: [] for r in runs}
    flops_per_step = {}
    for run, (family, bs) in runs.items():
        flops_per_step[run] = bs * redllm.train_flops_per_sequence(redllm.build(family, cfgs[family]), T, prefix_len)
        for seed in seeds:
            model = pretrained.get((run, seed))
            if model is None:
                model, _ = pretrain(family, cfgs[family], chunks, prefix_len=prefix_len, steps=steps, seed=seed,
                                    batch_size=bs, lr=lr, device=device)
            ppl[run].append(continuation_ppl(model.eval(), valid, prefix_len))
    return {"ppl": ppl, "flops_per_step": flops_per_step, "seeds": list(seeds), "steps": steps, "batch": batch_size}


def compute_to_match(result: dict) -> list[float]:
    """Per seed: the training FLOPs DecLLM needs to reach RedLLM's perplexity, divided by RedLLM's FLOPs
    (1 = equal compute for equal quality; > 1: RedLLM is the more compute-efficient).

    DecLLM's two runs of :func:`equal_compute` (batch B/2 and B, same steps and schedule) are two budgets of
    one model; RedLLM's perplexity is located between them by interpolating log perplexity linearly in log FLOPs
    (outside them, the line is extended: a rough estimate, flagged by :func:`equal_compute_summary`)."""
    f_lo, f_hi = (result["flops_per_step"][r] * result["steps"] for r in ("decoder_half_batch", "decoder"))
    f_ed = result["flops_per_step"]["encdec"] * result["steps"]
    out = []
    for p_lo, p_hi, p_ed in zip(result["ppl"]["decoder_half_batch"], result["ppl"]["decoder"], result["ppl"]["encdec"]):
        slope = (math.log(p_hi) - math.log(p_lo)) / (math.log(f_hi) - math.log(f_lo))  # d log ppl / d log FLOPs
        if slope >= 0:  # more compute did not help DecLLM: no budget reaches RedLLM's perplexity by this line
            out.append(math.inf if p_ed < p_lo else f_lo / f_ed)
            continue
        log_f = math.log(f_lo) + (math.log(p_ed) - math.log(p_lo)) / slope
        out.append(math.exp(log_f) / f_ed)
    return out


def equal_compute_summary(result: dict) -> dict:
    """The per-seed comparisons of :func:`equal_compute`: perplexity ratios RedLLM / DecLLM at equal steps and at
    equal steps and FLOPs, the FLOPs ratio of the equal-compute pair, and :func:`compute_to_match`."""
    ppl = result["ppl"]
    fps = result["flops_per_step"]
    inside = [min(a, b) <= e <= max(a, b) for a, b, e in zip(ppl["decoder_half_batch"], ppl["decoder"], ppl["encdec"])]
    return {"ppl_ratio_equal_steps": [e / d for e, d in zip(ppl["encdec"], ppl["decoder"])],
            "ppl_ratio_equal_flops": [e / d for e, d in zip(ppl["encdec"], ppl["decoder_half_batch"])],
            "flops_ratio_equal_compute_pair": fps["decoder_half_batch"] / fps["encdec"],
            "flops_ratio_equal_steps": fps["decoder"] / fps["encdec"],
            "compute_to_match": compute_to_match(result), "interpolated": inside}


# ----------------------------------------------------------------------------------------- claim 8
@torch.no_grad()
def length_extrapolation(models: dict[str, Sequence[nn.Module]], long_chunks: Tensor, lengths: Sequence[int]) -> dict:
    """Continuation perplexity of each model at each evaluation length ``L`` (prefix ``L // 2``).

    ``models``: ``{family: [one model per seed]}``; ``long_chunks (B, >= max(lengths))``. Returns
    ``{"ppl": {family: {L: [per seed]}}, "degradation": {family: [ppl at max L / ppl at min L, per seed]}}``."""
    lo, hi = min(lengths), max(lengths)
    if long_chunks.shape[1] < hi:
        raise ValueError(f"long_chunks hold {long_chunks.shape[1]} tokens, fewer than the longest length {hi}.")
    ppl = {f: {L: [continuation_ppl(m, long_chunks[:, :L], L // 2) for m in ms] for L in lengths} for f, ms in models.items()}
    degradation = {f: [b / a for a, b in zip(ppl[f][lo], ppl[f][hi])] for f in models}
    return {"ppl": ppl, "degradation": degradation, "lengths": list(lengths)}


# ----------------------------------------------------------------------------------------- claim 11
#: The recipe's attention norms that claim 11 names, as ModelConfig flags.
NORM_PIECES = {"QK-norm": "qk_norm", "V-norm": "v_norm", "output norm": "attn_out_norm"}


def norm_ablation(vocab_size: int, chunks: Tensor, valid: Tensor, *, seeds: Sequence[int], lr: float, steps: int,
                  d_model: int = 32, n_layers: int = 2, batch_size: int = 32, device: str = "cpu") -> dict:
    """The small recipe model of lesson 07 section 1.4 (RoPE, RMSNorm, SwiGLU, all three attention norms on),
    and the same model with one norm removed (:data:`NORM_PIECES`), trained at one (high) learning rate.

    Per variant and seed: ``valid_loss`` (causal LM, ``inf`` if training diverged) and ``max_logit`` (the largest
    attention logit seen in training, :func:`course_lib.lessons.redllm.tracking_max_logit`). Returns
    ``{"valid_loss": {variant: [per seed]}, "max_logit": {...}, "lr", "steps", "seeds"}``; variants are
    ``"full recipe"`` and ``"without <piece>"``."""
    variants = {"full recipe": {}} | {f"without {name}": {flag: False} for name, flag in NORM_PIECES.items()}
    loss: dict[str, list[float]] = {v: [] for v in variants}
    max_logit: dict[str, list[float]] = {v: [] for v in variants}
    for name, off in variants.items():
        cfg = ModelConfig(vocab_size=vocab_size, d_model=d_model, n_heads=4, n_layers=n_layers, max_len=4096,
                          **(redllm.RECIPE | off))
        for seed in seeds:
            seed_everything(seed)
            model = DecoderOnly(cfg)
            with redllm.tracking_max_logit() as log:
                try:
                    train(model, redllm.causal_lm_loss, chunks, pretrain_config(steps, lr, seed, batch_size, device=device),
                          collate=torch.stack)
                    with torch.no_grad():
                        value = redllm.causal_lm_loss(model.eval(), valid).item()
                except FloatingPointError:  # train() stops on a non-finite loss: the run diverged
                    value = math.inf
            loss[name].append(value if math.isfinite(value) else math.inf)
            max_logit[name].append(max((v for v in log if math.isfinite(v)), default=math.inf))
    return {"valid_loss": loss, "max_logit": max_logit, "lr": lr, "steps": steps, "seeds": list(seeds)}


def norm_verdicts(result: dict) -> list[Verdict]:
    """Claim 11's parts from :func:`norm_ablation`, each by :func:`course_lib.lessons.ledger.judge` (lower is better):
    ``"QK-norm: logits"`` (the largest attention logit, Wortsman et al.'s proxy for attention-logit growth), then
    ``"<piece>: loss"`` for each of :data:`NORM_PIECES` (validation loss after training at the ablation's rate)."""
    full, at = "full recipe", f"{result['steps']} steps at lr {result['lr']:g}"
    verdicts = [judge(result["max_logit"][full], result["max_logit"]["without QK-norm"], higher_is_better=False,
                      names=("the full recipe", "the recipe without QK-norm"), part="QK-norm: logits",
                      what=f"largest attention logit in {at}")]
    for piece in NORM_PIECES:
        verdicts.append(judge(result["valid_loss"][full], result["valid_loss"][f"without {piece}"], higher_is_better=False,
                              names=("the full recipe", f"the recipe without {piece}"), part=f"{piece}: loss",
                              what=f"validation loss after {at}"))
    return verdicts


# ----------------------------------------------------------------------------------------- claim 10
def _dedup_keep_last(s: list[int]) -> list[int]:
    return [t for i, t in enumerate(s) if t not in s[i + 1:]]


#: Input -> output tasks for fine-tuning (symbol ids in, symbol ids out).
FINETUNE_TASKS: dict[str, Callable[[list[int]], list[int]]] = {
    "sort": sorted,
    "reverse": lambda s: s[::-1],
    "dedup_keep_last": _dedup_keep_last,
}


def finetune_pairs(task: str, n: int, seed: int, *, symbols: Sequence[int], min_len: int, max_len: int):
    """``n`` pairs ``(src, FINETUNE_TASKS[task](src))`` (:func:`course_lib.data.make_pairs`)."""
    from ..data import make_pairs

    if task not in FINETUNE_TASKS:
        raise ValueError(f"task must be one of {sorted(FINETUNE_TASKS)}; got {task!r}.")
    return make_pairs(n, seed, FINETUNE_TASKS[task], vocab=list(symbols), min_len=min_len, max_len=max_len)


def _scores(model: nn.Module, family: str, test: Sequence[tuple[list[int], list[int]]], max_new: int) -> dict[str, float]:
    out = translate_ids(model.eval(), family, [s for s, _ in test], max_new_tokens=max_new)
    exact = 100 * statistics.mean(o == t for o, (_, t) in zip(out, test))
    token = 100 * statistics.mean(sum(a == b for a, b in zip(o, t)) / len(t) for o, (_, t) in zip(out, test))
    return {"exact": exact, "token_acc": token}


def biattn_finetune(pretrained: dict[tuple[str, int], nn.Module], train_pairs, test_pairs, *, seeds: Sequence[int],
                    steps: int, lr: float = 3e-3, batch_size: int = 32, variants: Sequence[str] = ("decoder", "prefixlm"),
                    device: str = "cpu") -> dict:
    """Fine-tune a copy of each seed's pretrained model once per variant and score its greedy outputs on ``test_pairs``.

    ``pretrained[(family, seed)]``: lesson 07's models. ``"decoder"``: the causally pretrained DecLLM with its causal
    mask; ``"prefixlm"``: the same DecLLM with bidirectional attention over the input (``source <sep>``) switched on
    at fine-tuning and inference only (the paper's BiAttn); ``"encdec"``: RedLLM. Every variant of a seed starts
    from the same weights (for the two DecLLM variants) and sees the same data order, steps and learning rate, so
    the causal and BiAttn scores of one seed differ only by the mask: the comparison is paired by seed.
    Returns ``{"exact": {variant: [per seed]}, "token_acc": {...}, "seeds", "steps"}`` (percentages)."""
    max_new = max(len(t) for _, t in test_pairs) + 2
    res: dict[str, dict[str, list[float]]] = {"exact": {v: [] for v in variants}, "token_acc": {v: [] for v in variants}}
    for variant in variants:
        base = "encdec" if Family(variant).cross_attention else "decoder"  # BiAttn fine-tunes the DecLLM
        for seed in seeds:
            model = copy.deepcopy(pretrained[base, seed]).train()
            tcfg = pretrain_config(steps, lr, seed, batch_size, device=device)
            train(model, loss_for(variant), train_pairs, tcfg, collate=collate_for(variant))
            s = _scores(model, variant, test_pairs, max_new)
            res["exact"][variant].append(s["exact"])
            res["token_acc"][variant].append(s["token_acc"])
    return res | {"seeds": list(seeds), "steps": steps}

"""Encoder-decoder vs decoder-only language models in miniature (lesson 07).

After "Encoder-Decoder or Decoder-Only? Revisiting Encoder-Decoder Large Language Model"
(arXiv 2510.26622), which pretrains an encoder-decoder ("RedLLM") with a **prefix-LM** objective and
compares it with a decoder-only model ("DecLLM") trained with causal LM, both with the modern recipe.

* :data:`RECIPE`, :func:`recipe_configs`: both models with RoPE (everywhere, decoder positions
  continuing after the source), RMSNorm pre-norm, SwiGLU, QK-norm, V-norm, the extra norm on the
  attention output, tied embeddings; the encoder-decoder's stacks are 0.44x as deep (equal parameters).
* :func:`text_corpus`: generated English text as one token stream, cut into fixed-length chunks.
* :func:`split_prefix`: a chunk ``x (B, T)`` -> encoder input (first ``P`` tokens) and the decoder's
  teacher-forcing input/targets (the rest); :func:`pretraining_loss`: each family's objective.
* :func:`continuation_nll`: the paper's perplexity for both families: given a prefix, the negative
  log-likelihood of each continuation token.
* :func:`locality_mass`, :func:`topk_stability`: attention-map statistics ("locality decay").
* :func:`tracking_max_logit`: the largest attention logit q·k/√d seen, for the QK-norm experiment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import costs
from ..attention import recording_max_logit as tracking_max_logit  # lesson 07's name; attention's own recording switch
from ..config import ModelConfig
from ..families import Family, build, of, stack_parameters
from ..layers import GATED_FFNS
from ..models import DecoderOnly, EncoderDecoder
from ..tokenizer import BOS_ID, EOS_ID, WordTokenizer

#: The modern recipe (the paper's, for both models). ``rope_cross`` applies to the encoder-decoder only.
RECIPE = dict(pos="rope", norm="rms", ffn="swiglu", qk_norm=True, v_norm=True, attn_out_norm=True, bias=False,
              tie_embeddings=True)

__all__ = [
    "RECIPE",
    "recipe_configs",
    "build",
    "text_corpus",
    "split_prefix",
    "prefix_lm_loss",
    "causal_lm_loss",
    "pretraining_loss",
    "continuation_nll",
    "stack_parameters",
    "train_flops_per_sequence",
    "inference_costs",
    "locality_mass",
    "topk_stability",
    "tracking_max_logit",
]


def recipe_configs(vocab_size: int, d_model: int = 64, n_heads: int = 4, dec_layers: int = 9, **kw) -> dict[str, ModelConfig]:
    """``{"decoder": ..., "encdec": ...}`` with the recipe and (nearly) equal non-embedding parameters:
    each encoder-decoder stack gets ``round(matched_depth(dec_layers))`` layers (0.44 x with SwiGLU, d_ff = 4d)."""
    base = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, max_len=4096, **RECIPE)
    base.update(kw)
    d_ff = base.get("d_ff") or 4 * d_model
    ed_layers = max(1, round(costs.matched_depth(dec_layers, d_model, d_ff, swiglu=base["ffn"] in GATED_FFNS)))
    return {"decoder": ModelConfig(**base, n_layers=dec_layers),
            "encdec": ModelConfig(**base, n_layers=ed_layers, rope_cross=base["pos"] == "rope")}


# ----------------------------------------------------------------------------------------- data
def text_corpus(length: int, seed: int = 0, n_train: int = 20000, n_valid: int = 2000, long_length: int | None = None):
    """Generated English sentences (the English side of :mod:`course_lib.lessons.en_fr`) as one stream
    ``w w w . <eos> w w ...``, cut into chunks of ``length`` tokens: chunks cross sentence boundaries,
    as in LLM pretraining. Returns ``(tokenizer, train (N, length), valid (M, length))`` and, with
    ``long_length``, a third tensor of validation chunks of that length (same sentences, longer cuts)."""
    from .en_fr import make_splits

    splits = make_splits(seed=seed, n_train=n_train, n_valid=n_valid, n_test=1, n_long=1)
    train_text, valid_text = [en for en, _ in splits["train"]], [en for en, _ in splits["valid"]]
    tok = WordTokenizer.from_texts(train_text)

    def stream(texts):
        ids: list[int] = []
        for t in texts:
            ids += tok.encode(t) + [EOS_ID]
        return torch.tensor(ids)

    def cut(s: Tensor, n: int) -> Tensor:
        usable = len(s) // n * n
        if usable == 0:
            raise ValueError(f"the stream has {len(s)} tokens, fewer than one chunk of {n}; generate more sentences.")
        return s[:usable].view(-1, n)

    tr, va = stream(train_text), stream(valid_text)
    out = (tok, cut(tr, length), cut(va, length))
    return out + (cut(va, long_length),) if long_length else out


def split_prefix(x: Tensor, prefix_len: int) -> dict[str, Tensor]:
    """Prefix-LM for an encoder-decoder: ``src`` = the first ``prefix_len`` tokens (to the encoder),
    ``tgt_out`` = the rest (the targets), ``tgt_in`` = BOS + targets shifted right (teacher forcing).
    No target lies in the prefix: the encoder sees the prefix in both directions, so a loss on it
    would ask the model to predict tokens it can already read."""
    if not 0 < prefix_len < x.shape[1]:
        raise ValueError(f"prefix_len must be in 1..T-1 = 1..{x.shape[1] - 1}; got {prefix_len}.")
    src, tgt = x[:, :prefix_len], x[:, prefix_len:]
    bos = torch.full_like(tgt[:, :1], BOS_ID)
    return {"src": src, "tgt_in": torch.cat([bos, tgt[:, :-1]], dim=1), "tgt_out": tgt}


def prefix_lm_loss(model: EncoderDecoder, x: Tensor, prefix_len: int) -> Tensor:
    """Mean cross-entropy of the continuation, the encoder reading the prefix."""
    b = split_prefix(x, prefix_len)
    logits = model(b["src"], b["tgt_in"])
    return F.cross_entropy(logits.flatten(0, 1), b["tgt_out"].flatten())


def causal_lm_loss(model: DecoderOnly, x: Tensor) -> Tensor:
    """Mean next-token cross-entropy over every position (the decoder-only objective)."""
    logits = model(x)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())


def pretraining_loss(family: str, prefix_len: int):
    """``loss_fn(model, x)`` for :func:`course_lib.train.train`: each family's pretraining objective,
    :func:`causal_lm_loss` (DecLLM: every position of the chunk) or :func:`prefix_lm_loss` (RedLLM: the
    first ``prefix_len`` tokens to the encoder, the rest predicted by the decoder)."""
    if Family(family).cross_attention:
        return lambda model, x: prefix_lm_loss(model, x, prefix_len)
    return causal_lm_loss


@torch.no_grad()
def continuation_nll(model: nn.Module, x: Tensor, prefix_len: int, *, bidirectional_prefix: bool = False) -> Tensor:
    """``-log P(x_t | prefix, x_{prefix_len..t-1})`` for every continuation token: ``(B, T - prefix_len)``.

    The paper's evaluation for both families: the model reads a prefix, then is scored on the
    continuation only. Encoder-decoder: prefix to the encoder, continuation teacher-forced in the
    decoder. Decoder-only: the whole chunk, scored from position ``prefix_len`` on (with
    ``bidirectional_prefix`` the prefix attends both ways, a prefix-LM)."""
    if of(model).cross_attention:
        b = split_prefix(x, prefix_len)
        logits = model(b["src"], b["tgt_in"])
        targets = b["tgt_out"]
    else:
        logits = model(x, prefix_len=prefix_len if bidirectional_prefix else None)[:, prefix_len - 1 : -1]
        targets = x[:, prefix_len:]
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(targets.shape)


# ----------------------------------------------------------------------------------------- costs
# The arithmetic is course_lib.costs'; these read a built model's config and family. Parameters per
# stack: course_lib.families.stack_parameters (imported above, so redllm.stack_parameters works too).
def train_flops_per_sequence(model: nn.Module, length: int, prefix_len: int) -> float:
    """Training FLOPs (3 x forward, :func:`course_lib.costs.sequence_flops`) for one chunk of ``length``
    tokens: the decoder-only model runs all of them through all its layers; the encoder-decoder sends
    the prefix through the encoder and the continuation through the decoder."""
    return 3 * costs.sequence_flops(model.cfg, of(model), prefix_len, length - prefix_len)


def inference_costs(model: nn.Module, n_prompt: int, n_generated: int, bytes_per_el: int = 4) -> dict[str, float]:
    """Forward FLOPs for one prompt + generation (:func:`course_lib.costs.sequence_flops`), and the
    KV-cache bytes held at the end (:func:`course_lib.costs.kv_cache_bytes_for`)."""
    family = of(model)
    flops = costs.sequence_flops(model.cfg, family, n_prompt, n_generated)
    kv = costs.kv_cache_bytes_for(model.cfg, family, n_prompt, n_generated, bytes_per_el=bytes_per_el)["total"]
    return {"flops": float(flops), "kv_bytes": float(kv)}


# ----------------------------------------------------------------------------------------- attention maps
def locality_mass(weights: Tensor, window: int = 4, query_offset: int = 0) -> Tensor:
    """Attention mass each query puts on the local window of keys ``[i - window, i]``.

    ``weights (..., T_q, T_k)``: query ``j`` sits at key position ``i = j + query_offset`` (0 when
    queries and keys are the same positions). Returns ``(..., T_q)``; average the leading dimensions
    (heads, layers, examples) yourself."""
    t_q, t_k = weights.shape[-2:]
    i = torch.arange(t_q, device=weights.device)[:, None] + query_offset
    j = torch.arange(t_k, device=weights.device)[None, :]
    local = (j <= i) & (j >= i - window)
    return (weights * local.to(weights.dtype)).sum(-1)


def topk_stability(weights: Tensor, k: int = 3) -> float:
    """How stable the set of most-attended source tokens is across decoder positions.

    ``weights (T_q, S)`` (one cross-attention map, e.g. mean-pooled over heads, layers, examples).
    Returns the mean Jaccard overlap of the top-``k`` source positions of consecutive decoder
    positions: 1 = always the same ``k`` tokens, about ``k / (2S - k)`` for random sets."""
    top = weights.topk(k, dim=-1).indices.tolist()
    scores = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(top, top[1:])]
    return sum(scores) / len(scores) if scores else float("nan")

"""Instant feedback for the exercise notebooks: ``from course_lib.checks import check_…``.

Each ``check_<name>(fn)`` runs a learner's function against a reference on seeded cases and answers
in one friendly sentence: ``✅`` and ``True``; ``⏳ not implemented yet`` and ``False`` (no
exception, so an unsolved notebook runs top to bottom); or an ``AssertionError`` naming the likely
mistake. ``use_or_reference(mine, reference)`` lets a later task build on an earlier one.

One module per lesson, on the shared machinery of :mod:`._core` (read its docstring to write a new
check: cases, the reference, known-wrong variants with hints — ``variant_grid`` for single and
paired mistakes — and the guards every check gets: inputs copied and compared after the call,
aliased arguments, dtype/device of returned tensors, properties such as ``loss_backward_property``):

* :mod:`.attention` (01) — ``scaled_dot_product_attention(q, k, v, mask=None)``, ``causal_mask(t)``,
  ``padding_mask(tokens, pad_id=0)``, ``prefix_mask(t, prefix_len)``, ``split_heads(x, n_heads)``,
  ``merge_heads(x)``, ``cross_attention(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None)``,
  ``sliding_window_mask(t, window)``;
* :mod:`.mlm` (02) — ``mlm_corrupt(tokens, vocab_size, mask_id, p=0.15)``, ``mlm_loss(logits, labels)``,
  ``encoder_block(x, mask, attn, ffn, norm1, norm2, pre_norm=True)``;
* :mod:`.clm` (03) — ``clm_loss(logits, tokens, pad_id=0)``,
  ``next_token_probs(logits, temperature=1.0, top_k=None, top_p=None)``,
  ``greedy_decode_with_cache(model, prompt, max_new_tokens, eos_id=2, pad_id=0)``;
* :mod:`.seq2seq` (04) — ``shift_right(targets, bos_id)``, ``seq2seq_loss(logits, targets, pad_id=0)``,
  ``free_running_logits(model, src, n_steps, bos_id=1)``;
* :mod:`.translation` (05) — ``collate_encdec(batch)``, ``collate_decoder(batch)``,
  ``beam_step(scores, logp)``, ``corpus_bleu(hyps, refs, max_n=4)``,
  ``matched_decoder_layers(n_enc, n_dec, d_model, d_ff)``.

A new lesson adds a module (e.g. ``latency.py``) that imports from ``._core``, decorates its checks
with ``@register("<name>")`` and lists them in ``__all__``; add one import line below.
"""
from __future__ import annotations

from ._core import *  # noqa: F401,F403
from ._core import use_or_reference  # noqa: F401
from .attention import *  # noqa: F401,F403
from .clm import *  # noqa: F401,F403
from .mlm import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .translation import *  # noqa: F401,F403
from .recipe import *  # noqa: F401,F403
from . import attention, clm, mlm, recipe, seq2seq, translation  # noqa: F401

__all__ = sorted(
    {"use_or_reference"} | set(attention.__all__) | set(mlm.__all__) | set(clm.__all__) | set(seq2seq.__all__) | set(translation.__all__) | set(recipe.__all__)
)

# lesson 06 (latency): KV-cache bytes and decode-step FLOPs by hand
from . import latency  # noqa: E402,F401
from .latency import *  # noqa: E402,F401,F403

__all__ = sorted(set(__all__) | set(latency.__all__))

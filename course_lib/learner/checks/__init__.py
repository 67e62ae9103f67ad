"""Instant feedback for the exercise notebooks: ``from course_lib import checks``; ``checks.check_…(fn)``.

Each ``check_<name>(fn)`` runs a learner's function against a reference on seeded cases and answers
in one friendly sentence: ``✅`` and ``True``; ``⏳ not implemented yet`` and ``False`` (no
exception, so an unsolved notebook runs top to bottom); or a :class:`CheckFailed` (an
``AssertionError``) naming the likely mistake, which a notebook shows as that sentence alone
(``full_tracebacks()`` or ``COURSE_CHECK_TRACEBACK=1`` brings the traceback back, for instructors).
``use_or_reference(mine, reference)`` lets a later task build on an earlier one.

One module per lesson, on the shared machinery of :mod:`._core` (read its docstring to write a new
check: cases, the reference, known-wrong variants with hints — ``variant_grid`` for single and
paired mistakes — and the guards every check gets: inputs copied and compared after the call,
aliased arguments, dtype/device of returned tensors, the device, gradient and loss properties,
probes for ignored arguments):

* :mod:`.attention` (01) — ``scaled_dot_product_attention(q, k, v, mask=None)``, ``causal_mask(t)``,
  ``padding_mask(tokens, pad_id=0)``, ``prefix_mask(t, prefix_len)``, ``split_heads(x, n_heads)``,
  ``merge_heads(x)``, ``cross_attention(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None)`` (04),
  ``sliding_window_mask(t, window)``;
* :mod:`.mlm` (02) — ``mlm_corrupt(tokens, vocab_size, mask_id, p=0.15, special_ids=…, generator=None)``,
  ``mlm_loss(logits, labels)``, ``encoder_block(x, mask, attn, ffn, norm1, norm2, pre_norm=True)``;
* :mod:`.clm` (03, 06) — ``clm_loss(logits, tokens, pad_id=0)``,
  ``next_token_probs(logits, temperature=1.0, top_k=None, top_p=None)``,
  ``greedy_decode_with_cache(model, prompt, max_new_tokens, eos_id=2, pad_id=0)``;
* :mod:`.seq2seq` (04) — ``shift_right(targets, bos_id)``, ``seq2seq_loss(logits, targets, pad_id=0)``,
  ``free_running_logits(model, src, n_steps, bos_id=1)``;
* :mod:`.translation` (05) — ``collate_encdec(batch)``, ``collate_decoder(batch)``,
  ``beam_step(scores, logp)``, ``corpus_bleu(hyps, refs, max_n=4)`` (``check_bleu``),
  ``matched_decoder_layers(n_enc, n_dec, d_model, d_ff)``;
* :mod:`.latency` (06) — ``kv_cache_bytes(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0)``,
  ``decode_step_flops(n_params, n_layers, n_ctx, d, vocab)``;
* :mod:`.recipe` (07) — ``rope(x, positions, base=10000.0)``, ``rms_norm(x, weight, eps=1e-6)``,
  ``swiglu(x, w_gate, w_up, w_down)``, ``prefix_lm_mask(t, prefix_len)``,
  ``prefix_lm_loss(logits, tokens, prefix_len)``, ``locality_mass(weights, window=4, query_offset=0)``.

A new lesson adds a module that imports from ``._core``, decorates its checks with
``@register("<name>")`` and lists them in ``__all__``; add it to the imports and to ``_MODULES`` below.
"""
from __future__ import annotations

from . import attention, clm, latency, mlm, recipe, seq2seq, translation
from ._core import CheckFailed, full_tracebacks, use_or_reference
from .attention import *  # noqa: F401,F403
from .clm import *  # noqa: F401,F403
from .latency import *  # noqa: F401,F403
from .mlm import *  # noqa: F401,F403
from .recipe import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .translation import *  # noqa: F401,F403

_MODULES = (attention, mlm, clm, seq2seq, translation, latency, recipe)
__all__ = sorted({"use_or_reference", "CheckFailed", "full_tracebacks"} | {n for m in _MODULES for n in m.__all__})

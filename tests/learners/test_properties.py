"""Properties every check has (issue 26), tested on the library's own answers and on spoiled copies of them:

* a check never raises anything but its own one-sentence verdict, whatever the learner's function
  returns (0, -1, a huge int, a float, NaN, None, a string, tensors of the wrong shape, dtype or
  device) or raises;
* a result that would break the next cell is named: the wrong dtype, a tensor left on the CPU when the
  inputs are on a GPU (simulated with the meta device), a result cut off from the autograd graph;
* every argument of every exercise function matters: ignoring it is named ("the X argument is ignored").
"""
from __future__ import annotations

import re

import pytest
import torch

import course_lib as cl
from course_lib import checks as C
from course_lib import costs, redllm, translate
from course_lib.layers import RotaryEmbedding

from .test_learners import verdict_of

SPECIALS = (0, 1, 2, 3, 4, 5)

#: A correct answer for every check: the library's functions, called the way the exercise calls them.
REFERENCE = {
    "scaled_dot_product_attention": lambda q, k, v, mask=None: cl.scaled_dot_product_attention(q, k, v, mask),
    "causal_mask": cl.causal_mask,
    "padding_mask": cl.padding_mask,
    "prefix_mask": cl.prefix_mask,
    "split_heads": C.reference_split_heads,
    "merge_heads": C.reference_merge_heads,
    "cross_attention": C.reference_cross_attention,
    "sliding_window_mask": C.reference_sliding_window_mask,
    "clm_loss": lambda logits, tokens, pad_id=0: cl.clm_loss(logits, tokens, pad_id=pad_id),
    "next_token_probs": C.reference_next_token_probs,
    "greedy_decode_with_cache": C.reference_greedy_decode_with_cache,
    "mlm_corrupt": lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIALS, generator=None:
        cl.mlm_corrupt(tokens, vocab_size, mask_id, p=p, special_ids=special_ids, generator=generator),
    "mlm_loss": cl.mlm_loss,
    "encoder_block": C.reference_encoder_block,
    "shift_right": cl.shift_right,
    "seq2seq_loss": lambda logits, targets, pad_id=0: cl.seq2seq_loss(logits, targets, pad_id=pad_id),
    "free_running_logits": C.reference_free_running_logits,
    "collate_encdec": translate.collate_encdec,
    "collate_decoder": translate.collate_decoder,
    "beam_step": C.reference_beam_step,
    "corpus_bleu": C.reference_corpus_bleu,
    "matched_decoder_layers": C.reference_matched_decoder_layers,
    "rope": lambda x, positions, base=10000.0: RotaryEmbedding(x.shape[-1], int(positions.max()) + 1, base).to(x.device)(x, positions),
    "rms_norm": lambda x, weight, eps=1e-6: weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),
    "swiglu": lambda x, w_gate, w_up, w_down: torch.nn.functional.linear(
        torch.nn.functional.silu(torch.nn.functional.linear(x, w_gate)) * torch.nn.functional.linear(x, w_up), w_down),
    "prefix_lm_mask": cl.prefix_mask,
    "prefix_lm_loss": lambda logits, tokens, prefix_len: torch.nn.functional.cross_entropy(
        logits[:, prefix_len - 1:-1].flatten(0, 1), tokens[:, prefix_len:].flatten()),
    "locality_mass": redllm.locality_mass,
    "kv_cache_bytes": costs.kv_cache_bytes,
    "decode_step_flops": costs.decode_step_flops,
}


def test_every_check_has_a_reference_here_and_accepts_it():
    assert set(REFERENCE) == set(C._core._CHECKS)
    for name, fn in REFERENCE.items():
        status, msg = verdict_of(name, fn)
        assert status == "pass", f"{name}: {msg}"


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and "Traceback" not in msg and len(msg) < 600 and "e+308" not in msg


# ---------------------------------------------------------------------------------------------
# never crash
# ---------------------------------------------------------------------------------------------
def _raise(exc):
    def fn(*args, **kwargs):
        raise exc
    return fn


GARBAGE = {
    "zero": lambda *a, **k: 0,
    "minus one": lambda *a, **k: -1,
    "huge int": lambda *a, **k: 10 ** 30,
    "float": lambda *a, **k: 1.5,
    "NaN": lambda *a, **k: float("nan"),
    "None": lambda *a, **k: None,
    "string": lambda *a, **k: "done",
    "empty list": lambda *a, **k: [],
    "dict": lambda *a, **k: {"x": 1},
    "wrong-shape tensor": lambda *a, **k: torch.zeros(3, 3, 3),
    "int32 tensor": lambda *a, **k: torch.zeros(2, dtype=torch.int32),
    "NaN tensor": lambda *a, **k: torch.full((2, 2), float("nan")),
    "meta tensor": lambda *a, **k: torch.zeros(2, 2, device="meta"),
    "pair of tensors": lambda *a, **k: (torch.zeros(1), torch.zeros(1)),
    "the first argument": lambda *a, **k: a[0] if a else None,
    "raises ValueError": _raise(ValueError("something is off")),
    "raises RuntimeError": _raise(RuntimeError("shape mismatch\nsecond line")),
    "raises KeyError": _raise(KeyError("tgt")),
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("name", sorted(C._core._CHECKS))
def test_a_check_answers_any_function_with_one_sentence(name, garbage):
    status, msg = verdict_of(name, GARBAGE[garbage])
    assert status == "fail", f"{status}: {msg}"
    assert one_sentence(msg), msg


# ---------------------------------------------------------------------------------------------
# what flows into the next cell: dtype, device, gradients
# ---------------------------------------------------------------------------------------------
def _map(out, f):
    if isinstance(out, torch.Tensor):
        return f(out)
    if isinstance(out, tuple):
        return tuple(_map(o, f) for o in out)
    if isinstance(out, list):
        return [_map(o, f) for o in out]
    if isinstance(out, dict):
        return {k: _map(v, f) for k, v in out.items()}
    return out


def spoiled(fn, f):
    def g(*args, **kwargs):
        return _map(fn(*args, **kwargs), f)
    return g


def _wrong_dtype(t: torch.Tensor) -> torch.Tensor:
    """float32 -> float64 (a numpy table), int64 -> int32, bool -> uint8 (torch.tril of ones)."""
    if t.dtype == torch.bool:
        return t.to(torch.uint8)
    return t.double() if t.is_floating_point() else t.int()


TENSOR_RESULTS = sorted(set(REFERENCE) - {"corpus_bleu", "matched_decoder_layers", "kv_cache_bytes", "decode_step_flops"})
#: checks whose inputs are tensors (a mask built from an int has no device to follow; encoder_block's
#: sub-layers are the check's own CPU modules)
TENSOR_INPUTS = sorted(set(TENSOR_RESULTS) - {"causal_mask", "prefix_mask", "prefix_lm_mask", "sliding_window_mask",
                                               "collate_encdec", "collate_decoder", "encoder_block"})
DIFFERENTIABLE = ["scaled_dot_product_attention", "split_heads", "merge_heads", "cross_attention", "encoder_block", "rope",
                  "rms_norm", "swiglu", "clm_loss", "mlm_loss", "seq2seq_loss", "prefix_lm_loss"]


@pytest.mark.parametrize("name", TENSOR_RESULTS)
def test_a_result_of_the_wrong_dtype_is_named(name):
    status, msg = verdict_of(name, spoiled(REFERENCE[name], _wrong_dtype))
    assert status == "fail" and one_sentence(msg), msg
    assert re.search(r"dtype|float64|int32|torch\.long|bool|uint8", msg), msg


@pytest.mark.parametrize("name", TENSOR_INPUTS)
def test_a_result_left_on_the_cpu_is_named(name):
    """On the CPU cases nothing changes; with the inputs on a (simulated) GPU the result comes back on the CPU."""
    status, msg = verdict_of(name, spoiled(REFERENCE[name], lambda t: t.cpu()))
    assert status == "fail" and one_sentence(msg), msg
    assert "device" in msg, msg


def _cpu_made(name):
    """The reference, plus a tensor made on the CPU and mixed into the result (torch.zeros without device=)."""
    ref = REFERENCE[name]

    def g(*args, **kwargs):
        out = ref(*args, **kwargs)
        # a 0-d CPU tensor may be mixed with GPU ones (a Python-number-like scalar); a (1,) one may not
        return _map(out, lambda t: t + torch.zeros(t.shape[-1:] if t.dim() else (1,), dtype=t.dtype))
    return g


@pytest.mark.parametrize("name", TENSOR_INPUTS)
def test_a_tensor_made_on_the_cpu_inside_is_named(name):
    status, msg = verdict_of(name, _cpu_made(name))
    assert status == "fail" and one_sentence(msg), msg
    assert "device" in msg, msg


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_a_result_cut_from_the_graph_is_named(name):
    status, msg = verdict_of(name, spoiled(REFERENCE[name], lambda t: t.detach()))
    assert status == "fail" and one_sentence(msg), msg
    assert re.search(r"graph|gradient|backward", msg), msg


# ---------------------------------------------------------------------------------------------
# every argument matters
# ---------------------------------------------------------------------------------------------
def ignoring(name, position, keyword, value):
    """The reference with one argument replaced by a fixed value (its default, or a constant a learner
    might write): ``position`` for positional calls, ``keyword`` for keyword ones."""
    ref = REFERENCE[name]

    def g(*args, **kwargs):
        args = list(args)
        if position is not None and len(args) > position:
            args[position] = value(args) if callable(value) else value
        if keyword in kwargs:
            kwargs[keyword] = value(args) if callable(value) else value
        return ref(*args, **kwargs)
    return g


IGNORED = [  # (check, argument, position, replacement, regex the sentence must match)
    ("scaled_dot_product_attention", "mask", 3, None, r"mask is ignored"),
    ("padding_mask", "pad_id", 1, 0, r"pad_id argument is ignored"),
    ("prefix_mask", "prefix_len", 1, 0, r"prefix_len argument (is|were) ignored"),
    ("prefix_lm_mask", "prefix_len", 1, 0, r"prefix_len argument (is|were) ignored"),
    ("sliding_window_mask", "window", 1, lambda a: a[0], r"window argument (is|were) ignored"),
    ("split_heads", "n_heads", 1, 4, r"n_heads argument is ignored"),
    ("cross_attention", "context_mask", 7, None, r"context_mask argument is ignored"),
    ("clm_loss", "pad_id", 2, 0, r"pad_id argument is ignored"),
    ("seq2seq_loss", "pad_id", 2, 0, r"pad_id argument is ignored"),
    ("shift_right", "bos_id", 1, 1, r"bos_id argument is ignored"),
    ("free_running_logits", "bos_id", 3, 1, r"bos_id argument is ignored"),
    ("greedy_decode_with_cache", "eos_id", 3, 2, r"eos_id .*arguments? (is|are) ignored"),
    ("greedy_decode_with_cache", "pad_id", 4, 0, r"pad_id arguments? (is|are) ignored"),
    ("next_token_probs", "temperature", 1, 1.0, r"temperature is ignored|temperature argument is ignored"),
    ("next_token_probs", "top_k", 2, None, r"top_k argument is ignored"),
    ("next_token_probs", "top_p", 3, None, r"top_p argument is ignored"),
    ("mlm_corrupt", "mask_id", 2, 4, r"mask_id argument is ignored"),
    ("mlm_corrupt", "p", 3, 0.15, r"p argument is ignored"),
    ("mlm_corrupt", "special_ids", 4, SPECIALS, r"special_ids argument is ignored"),
    ("mlm_corrupt", "generator", 5, None, r"generator argument is ignored"),
    ("mlm_corrupt", "vocab_size", 1, lambda a: int(a[0].max()) + 1, r"vocab_size argument is ignored|randint"),
    ("encoder_block", "mask", 1, None, r"mask argument is ignored"),
    ("encoder_block", "pre_norm", 6, True, r"pre_norm argument is ignored"),
    ("corpus_bleu", "max_n", 2, 4, r"max_n argument is ignored"),
    ("matched_decoder_layers", "d_ff", 3, lambda a: 4 * a[2], r"d_ff argument is ignored"),
    ("kv_cache_bytes", "bytes_per_el", 4, 4, r"bytes_per_el argument is ignored"),
    ("kv_cache_bytes", "n_source_tokens", 5, 0, r"n_source_tokens argument is ignored"),
    ("decode_step_flops", "vocab", 4, 1000, r"vocab argument is ignored"),
    ("decode_step_flops", "d", 3, 64, r"\bd argument is ignored"),
    ("rope", "positions", 1, lambda a: torch.arange(a[0].shape[-2]), r"positions argument is ignored"),
    ("rope", "base", 2, 10000.0, r"base argument is ignored"),
    ("rms_norm", "eps", 2, 1e-6, r"eps argument is ignored"),
    ("locality_mass", "window", 1, 4, r"window argument is ignored"),
    ("locality_mass", "query_offset", 2, 0, r"query_offset is ignored|query_offset argument is ignored"),
    ("prefix_lm_loss", "prefix_len", 2, 6, r"prefix_len argument (is|were) ignored"),
]
_KEYWORD = {("greedy_decode_with_cache", "eos_id"), ("greedy_decode_with_cache", "pad_id")}


@pytest.mark.parametrize("check,arg,position,value,pattern", IGNORED, ids=[f"{c}-{a}" for c, a, *_ in IGNORED])
def test_an_ignored_argument_is_named(check, arg, position, value, pattern):
    status, msg = verdict_of(check, ignoring(check, position, arg, value))
    assert status == "fail" and one_sentence(msg), msg
    assert re.search(pattern, msg), msg

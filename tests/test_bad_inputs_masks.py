"""Mask helpers and attention refuse lengths and tensors they cannot use, naming the argument
(table: input -> error); empty and unusual-but-valid inputs give the right mask."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from bad_inputs import Bad, assert_refused, rows

from course_lib import MultiHeadAttention, causal_mask, combine_masks, padding_mask, prefix_mask
from course_lib import scaled_dot_product_attention as sdpa

q = torch.randn(1, 2, 3, 4)

TABLE = [
    Bad("causal_mask(-1)", lambda: causal_mask(-1), ValueError, "t_q is a number of positions"),
    Bad("causal_mask(2.5)", lambda: causal_mask(2.5), TypeError, "t_q"),
    Bad("causal_mask('4')", lambda: causal_mask("4"), TypeError, "t_q"),
    Bad("causal_mask(3, -1)", lambda: causal_mask(3, -1), ValueError, "t_k"),
    Bad("causal_mask(True)", lambda: causal_mask(True), TypeError, "t_q"),
    Bad("prefix_mask(-2, 1)", lambda: prefix_mask(-2, 1), ValueError, "prefix_mask: t"),
    Bad("prefix_mask(4, 1.5)", lambda: prefix_mask(4, 1.5), TypeError, "prefix_len"),
    Bad("prefix_mask(4, -1)", lambda: prefix_mask(4, -1), ValueError, "prefix_len"),
    Bad("padding_mask of float ids", lambda: padding_mask(torch.tensor([[1.0, 0.0]])), TypeError, "integer token ids"),
    Bad("padding_mask 1-D", lambda: padding_mask(torch.tensor([1, 0])), ValueError, "(B, T)"),
    Bad("combine_masks of a float mask", lambda: combine_masks(torch.ones(2, 2)), TypeError, "boolean"),
    Bad("attention: q fp32, k fp16", lambda: sdpa(q, q.half(), q), TypeError, "one dtype"),
    Bad("attention: v fp64", lambda: sdpa(q, q, q.double()), TypeError, "torch.float64"),
    Bad("attention: integer q, k, v", lambda: sdpa(q.long(), q.long(), q.long()), TypeError, "floating-point"),
    Bad("attention: float mask", lambda: sdpa(q, q, q, torch.ones(3, 3)), TypeError, "boolean"),
    Bad("attention: mask of the wrong shape", lambda: sdpa(q, q, q, torch.ones(4, 4, dtype=torch.bool)), ValueError, "broadcast"),
    Bad("MHA given token ids", lambda: MultiHeadAttention(4, 2)(torch.ones(1, 3, 4, dtype=torch.long)), TypeError, "embedding"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row):
    assert_refused(row)


def test_empty_and_unusual_lengths_give_the_right_mask():
    assert causal_mask(0).shape == (0, 0)
    assert causal_mask(np.int64(2), 3).tolist() == [[True, True, False], [True, True, True]]
    assert bool(prefix_mask(3, 5).all())  # a prefix longer than the sequence: everything visible
    assert torch.equal(prefix_mask(3, [1, 2]), prefix_mask(3, torch.tensor([1, 2])))
    assert not bool(padding_mask(torch.zeros(1, 3, dtype=torch.long)).any())
    out = sdpa(q, q, q, torch.zeros(3, 3, dtype=torch.bool))  # every key hidden: zeros, not NaN
    assert bool((out == 0).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_dtypes_under_autocast_are_not_refused(dtype):
    # autocast keeps QK-norm and V-norm in float32 while the projections run in half precision: the
    # kernel casts them, so the one-dtype check applies only outside autocast
    from course_lib import DecoderOnly, ModelConfig

    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=1, qk_norm=True, v_norm=True, pos="rope"))
    tokens = torch.randint(0, 30, (2, 5))
    with torch.autocast("cpu", dtype=dtype):
        out = model(tokens)
        mixed = sdpa(q, q.to(dtype), q)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert torch.allclose(out.float(), model(tokens), atol=0.1)  # the same model, in half precision
    assert mixed.dtype == dtype

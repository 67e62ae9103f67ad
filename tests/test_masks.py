"""Tests for course_lib.masks: literal tiny masks, cached-decoding alignment, prefix-LM, errors."""
from __future__ import annotations

import pytest
import torch

from course_lib.masks import causal_mask, check_mask, combine_masks, padding_mask, prefix_mask


pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, F_ = True, False


# ---------------------------------------------------------------- padding
def test_padding_mask_literal():
    tokens = torch.tensor([[5, 7, 0, 0], [3, 0, 4, 9]])
    expected = torch.tensor([[T, T, F_, F_], [T, F_, T, T]])
    m = padding_mask(tokens)
    assert m.dtype == torch.bool
    assert m.shape == (2, 1, 1, 4)
    assert torch.equal(m[:, 0, 0], expected)


def test_padding_mask_custom_pad_id():
    tokens = torch.tensor([[5, 7, 0, 9]])
    assert torch.equal(padding_mask(tokens, pad_id=9)[0, 0, 0], torch.tensor([T, T, T, F_]))


def test_padding_mask_rejects_1d_input():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        padding_mask(torch.tensor([1, 2, 0]))


def test_padding_mask_rejects_3d_input():
    with pytest.raises(ValueError, match="shape"):
        padding_mask(torch.zeros(2, 3, 4, dtype=torch.long))


# ---------------------------------------------------------------- causal
def test_causal_mask_4x4_literal():
    expected = torch.tensor(
        [
            [T, F_, F_, F_],
            [T, T, F_, F_],
            [T, T, T, F_],
            [T, T, T, T],
        ]
    )
    m = causal_mask(4)
    assert m.dtype == torch.bool
    assert torch.equal(m, expected)


def test_causal_mask_cached_alignment_literal():
    # 2 new queries at absolute positions 3 and 4 over 5 keys.
    expected = torch.tensor(
        [
            [T, T, T, T, F_],
            [T, T, T, T, T],
        ]
    )
    assert torch.equal(causal_mask(2, 5), expected)


@pytest.mark.parametrize("t_k", [1, 2, 5, 9])
def test_causal_mask_cached_equals_last_rows_of_full(t_k):
    full = causal_mask(t_k)
    for t_q in range(1, t_k + 1):
        assert torch.equal(causal_mask(t_q, t_k), full[t_k - t_q :]), (t_q, t_k)


def test_causal_mask_single_query_sees_everything():
    assert bool(causal_mask(1, 7).all())


def test_causal_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="t_k >= t_q"):
        causal_mask(5, 3)


# ---------------------------------------------------------------- prefix
def test_prefix_mask_literal():
    expected = torch.tensor(
        [
            [T, T, F_, F_, F_],
            [T, T, F_, F_, F_],
            [T, T, T, F_, F_],
            [T, T, T, T, F_],
            [T, T, T, T, T],
        ]
    )
    assert torch.equal(prefix_mask(5, 2), expected)


def test_prefix_mask_edge_cases():
    assert torch.equal(prefix_mask(4, 0), causal_mask(4))
    assert torch.equal(prefix_mask(4, 1), causal_mask(4))  # a 1-token prefix adds nothing
    assert bool(prefix_mask(4, 4).all())  # whole sequence bidirectional
    assert bool(prefix_mask(4, 10).all())


def test_prefix_mask_tensor_equals_per_example_int():
    lengths = torch.tensor([0, 1, 3, 6, 2])
    m = prefix_mask(6, lengths)
    assert m.shape == (5, 1, 6, 6)
    assert m.dtype == torch.bool
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(m[b, 0], prefix_mask(6, n)), b


def test_prefix_mask_accepts_list_of_lengths():
    m = prefix_mask(4, [1, 3])  # type: ignore[arg-type]
    assert torch.equal(m[1, 0], prefix_mask(4, 3))


def test_prefix_mask_rejects_2d_lengths():
    with pytest.raises(ValueError, match="1-D"):
        prefix_mask(4, torch.tensor([[1, 2]]))


# ---------------------------------------------------------------- combine
def test_combine_masks_is_logical_and():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 4, 4, generator=g) < 0.5
    b = torch.rand(4, 4, generator=g) < 0.5
    c = torch.rand(2, 1, 1, 4, generator=g) < 0.5
    out = combine_masks(a, b, c)
    ref = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    for i in range(2):
        for q in range(4):
            for k in range(4):
                ref[i, 0, q, k] = bool(a[i, 0, q, k]) and bool(b[q, k]) and bool(c[i, 0, 0, k])
    assert torch.equal(out, ref)


def test_combine_padding_and_causal_literal():
    tokens = torch.tensor([[4, 4, 0]])
    out = combine_masks(padding_mask(tokens), causal_mask(3))
    expected = torch.tensor([[T, F_, F_], [T, T, F_], [T, T, F_]])
    assert out.shape == (1, 1, 3, 3)
    assert torch.equal(out[0, 0], expected)


def test_combine_masks_skips_none():
    m = causal_mask(3)
    assert combine_masks(None, m, None) is m
    assert combine_masks() is None
    assert combine_masks(None, None) is None


def test_combine_masks_rejects_float_mask():
    with pytest.raises(TypeError, match="boolean"):
        combine_masks(causal_mask(3), causal_mask(3).float())


@pytest.mark.parametrize("bad", [torch.ones(3, 3), torch.ones(3, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.uint8)])
def test_check_mask_non_bool_is_type_error(bad):
    with pytest.raises(TypeError, match="boolean"):
        check_mask(bad)


def test_check_mask_non_tensor_is_type_error():
    with pytest.raises(TypeError, match="torch.bool"):
        check_mask([[True, False]])  # type: ignore[arg-type]

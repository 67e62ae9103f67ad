"""Tests for course_lib.learner.checks.latency: a correct answer passes, unfinished work is reported without
raising, and each classic mistake gets the hint that names it."""
from __future__ import annotations

import pytest

from course_lib import checks
from course_lib.learner.checks import check_decode_step_flops, check_kv_cache_bytes


def kv(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0):
    return 2 * n_layers * n_kv_heads * d_head * bytes_per_el * (n_tokens + n_source_tokens)


def step(n_params, n_layers, n_ctx, d, vocab):
    return 2 * n_params + 4 * n_layers * n_ctx * d + 2 * d * vocab


def test_correct_answers_pass(capsys):
    assert check_kv_cache_bytes(kv) is True
    assert check_decode_step_flops(step) is True
    assert "✅" in capsys.readouterr().out
    assert "check_kv_cache_bytes" in checks.__all__ and "check_decode_step_flops" in checks.__all__


def test_unfinished_is_reported_not_raised(capsys):
    def todo(*a, **k):
        raise NotImplementedError
    assert check_kv_cache_bytes(todo) is False
    assert check_decode_step_flops(todo) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: L * h * dh * bytes_per_el * (n + n_source_tokens), "factor 2 is missing"),
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: 2 * L * h * dh * bytes_per_el * n, "cross-attention K/V are missing"),
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: 2 * L * h * dh * bytes_per_el * (n + n * n_source_tokens), "once per generated token"),
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: 2 * L * h * dh * (n + n_source_tokens), "not bytes"),
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: 2 * h * dh * bytes_per_el * (n + n_source_tokens), "number of layers"),
    (lambda L, h, dh, n, bytes_per_el=4, n_source_tokens=0: 2 * L * h * dh * 4 * (n + n_source_tokens), "bytes_per_el argument is ignored"),
])
def test_kv_mistakes_named(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check_kv_cache_bytes(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda N, L, n, d, V: 2 * N + 2 * L * n * d + 2 * d * V, "training-averaged"),
    (lambda N, L, n, d, V: 2 * N + 4 * L * n * d, "output layer is missing"),
    (lambda N, L, n, d, V: N + 4 * L * n * d + 2 * d * V, "2·N, not N"),
    (lambda N, L, n, d, V: 2 * N + 4 * n * d + 2 * d * V, "per layer"),
    (lambda N, L, n, d, V: 2 * N + 2 * d * V, "attention over the n_ctx cached keys is missing"),
    (lambda N, L, n, d, V: n * (2 * N + 2 * d * V) + 2 * L * d * n * (n + 1), "without a cache"),
    (lambda N, L, n, d, V: 2 * N + 2 * L * n * d, "two mistakes"),
])
def test_step_mistakes_named(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check_decode_step_flops(wrong)

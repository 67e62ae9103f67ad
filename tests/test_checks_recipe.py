"""Lesson-07 checks: the reference passes, each known mistake gets its own hint, unfinished work does not raise."""
import pytest
import torch
import torch.nn.functional as F

from course_lib import checks
from course_lib.learner.checks import recipe
from course_lib.layers import RotaryEmbedding
from course_lib.masks import prefix_mask
from course_lib.lessons.redllm import locality_mass


def _rope(x, positions, base=10000.0):
    return RotaryEmbedding(x.shape[-1], max_len=int(positions.max()) + 1, base=base).to(x.device)(x, positions)


def _rms(x, weight, eps=1e-6):
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


def _loss(logits, tokens, prefix_len):
    return F.cross_entropy(logits[:, prefix_len - 1:-1].flatten(0, 1), tokens[:, prefix_len:].flatten())


CORRECT = {
    "rope": (checks.check_rope, _rope, recipe._ROPE_VARIANTS),
    "rms_norm": (checks.check_rms_norm, _rms, recipe._RMS_VARIANTS),
    "swiglu": (checks.check_swiglu, _swiglu, recipe._SWIGLU_VARIANTS),
    "prefix_lm_mask": (checks.check_prefix_lm_mask, lambda t, p: prefix_mask(t, p), recipe._MASK_VARIANTS),
    "prefix_lm_loss": (checks.check_prefix_lm_loss, _loss, recipe._LOSS_VARIANTS),
    "locality_mass": (checks.check_locality_mass, lambda w, window=4, query_offset=0: locality_mass(w, window, query_offset),
                      recipe._LOC_VARIANTS),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_implementation_passes(name, capsys):
    check, fn, _ = CORRECT[name]
    assert check(fn) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(CORRECT))
def test_not_implemented_is_pending(name, capsys):
    check, _, _ = CORRECT[name]

    def todo(*args, **kwargs):
        raise NotImplementedError

    assert check(todo) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("name,index", [(n, i) for n, (_, _, vs) in CORRECT.items() for i in range(len(vs))])
def test_every_wrong_variant_fails(name, index):
    check, _, variants = CORRECT[name]
    with pytest.raises(AssertionError) as err:
        check(variants[index].fn)
    assert "\n" not in str(err.value) and len(str(err.value)) > 20


@pytest.mark.parametrize("name,wrong,phrase", [
    ("rope", lambda x, p, base=10000.0: recipe._rope_formula(x, p, base, layout="interleaved"), "interleaved pairs"),
    ("rope", lambda x, p, base=10000.0: recipe._rope_formula(x, p, base, sign=-1.0), "wrong way"),
    ("rms_norm", lambda x, w, eps=1e-6: w * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps), "LayerNorm"),
    ("rms_norm", lambda x, w, eps=1e-6: w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True)), "ε is missing"),
    ("swiglu", lambda x, g, u, d: F.linear(F.silu(F.linear(x, u)) * F.linear(x, g), d), "gate projection"),
    ("prefix_lm_mask", lambda t, p: torch.ones(t, t, dtype=torch.bool).tril(), "plain causal"),
    ("prefix_lm_loss", lambda lg, tk, p: F.cross_entropy(lg[:, :-1].flatten(0, 1), tk[:, 1:].flatten()), "leak"),
    ("locality_mass", lambda w, window=4, query_offset=0: locality_mass(w, window, 0), "query_offset"),
])
def test_specific_hints(name, wrong, phrase):
    check = CORRECT[name][0]
    with pytest.raises(AssertionError, match=phrase):
        check(wrong)


def test_rope_that_breaks_the_relative_property_is_caught():
    def absolute(x, positions, base=10000.0):  # right values at position 0 only: adds the position instead of rotating
        return x + positions.to(x.dtype)[:, None]

    with pytest.raises(AssertionError):
        checks.check_rope(absolute)


def test_rope_relative_property_alone():
    # a layout the reference does not use but that is still a rotation: values differ, property holds
    with pytest.raises(AssertionError, match="interleaved pairs"):
        checks.check_rope(lambda x, p, base=10000.0: recipe._rope_formula(x, p, base, layout="interleaved"))


def test_checks_are_exported():
    for name in recipe.__all__:
        assert name in checks.__all__ and callable(getattr(checks, name))

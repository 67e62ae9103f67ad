"""ModelConfig refuses impossible values where it is built, naming the field (table: value -> error)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from bad_inputs import Bad, assert_refused, rows

from course_lib import DecoderOnly, ModelConfig


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": 24, "d_model": 16, "n_heads": 2, "n_layers": 1, **kw})


TABLE = [
    Bad("vocab_size=0", lambda: cfg(vocab_size=0), ValueError, "vocab_size must be >= 1"),
    Bad("vocab_size=-5", lambda: cfg(vocab_size=-5), ValueError, "vocab_size"),
    Bad("vocab_size=2.5", lambda: cfg(vocab_size=2.5), TypeError, "vocab_size must be a whole number"),
    Bad("vocab_size='24'", lambda: cfg(vocab_size="24"), TypeError, "vocab_size"),
    Bad("vocab_size=True", lambda: cfg(vocab_size=True), TypeError, "vocab_size"),
    Bad("d_model=0", lambda: cfg(d_model=0), ValueError, "d_model"),
    Bad("d_model=16.0", lambda: cfg(d_model=16.0), TypeError, "(write 16)"),
    Bad("n_heads=0 (was ZeroDivisionError)", lambda: cfg(n_heads=0), ValueError, "n_heads must be >= 1"),
    Bad("n_heads=-2", lambda: cfg(n_heads=-2), ValueError, "n_heads"),
    Bad("n_layers=-1", lambda: cfg(n_layers=-1), ValueError, "n_layers must be >= 0"),
    Bad("n_layers=1.5", lambda: cfg(n_layers=1.5), TypeError, "n_layers"),
    Bad("n_enc_layers=-1", lambda: cfg(n_enc_layers=-1), ValueError, "n_enc_layers"),
    Bad("n_dec_layers=-2", lambda: cfg(n_dec_layers=-2), ValueError, "n_dec_layers"),
    Bad("d_ff=0", lambda: cfg(d_ff=0), ValueError, "d_ff"),
    Bad("max_len=0", lambda: cfg(max_len=0), ValueError, "max_len"),
    Bad("n_kv_heads=0", lambda: cfg(n_kv_heads=0), ValueError, "n_kv_heads"),
    Bad("dropout=-0.1", lambda: cfg(dropout=-0.1), ValueError, "dropout is a probability in [0, 1)"),
    Bad("dropout=1.0", lambda: cfg(dropout=1.0), ValueError, "dropout"),
    Bad("dropout=nan", lambda: cfg(dropout=float("nan")), ValueError, "dropout"),
    Bad("pad_id=-1", lambda: cfg(pad_id=-1), ValueError, "pad_id"),
    Bad("pad_id=vocab_size", lambda: cfg(pad_id=24), ValueError, "pad_id=24 is outside the vocabulary"),
    Bad("norm_eps=-1e-5", lambda: cfg(norm_eps=-1e-5), ValueError, "norm_eps"),
    Bad("rope_base=0", lambda: cfg(rope_base=0.0), ValueError, "rope_base"),
    Bad("rel_buckets=0", lambda: cfg(rel_buckets=0), ValueError, "rel_buckets"),
    Bad("type_vocab_size=-1", lambda: cfg(type_vocab_size=-1), ValueError, "type_vocab_size"),
    Bad("d_model not divisible by n_heads", lambda: cfg(d_model=10, n_heads=4), ValueError, "divisible"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row):
    assert_refused(row)


def test_unusual_but_valid_values_are_kept():
    assert cfg(pad_id=23).pad_id == 23 and cfg(dropout=0.5).dropout == 0.5
    c = cfg(d_model=np.int64(16), vocab_size=np.int32(24))  # numpy integers become plain ints (weights_only saves)
    assert type(c.d_model) is int and type(c.vocab_size) is int and c.d_head == 8
    assert DecoderOnly(cfg(n_layers=0))(torch.tensor([[1, 2]])).shape == (1, 2, 24)  # no blocks: still a model

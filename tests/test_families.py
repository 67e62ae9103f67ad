"""course_lib.families: every name of a family resolves to one Family, which builds the right model and
describes its stacks as the built model has them."""
from __future__ import annotations

import json

import pytest

from course_lib import DecoderOnly, EncoderDecoder, EncoderOnly
from course_lib.families import ARCHITECTURES, SHORT_NAMES, Family, build, of, stack_parameters


@pytest.mark.parametrize("name,family", [
    ("encoder-only", Family.ENCODER_ONLY), ("decoder-only", Family.DECODER_ONLY), ("prefix-lm", Family.PREFIX_LM),
    ("encoder-decoder", Family.ENCODER_DECODER), ("encdec", Family.ENCODER_DECODER), ("decoder", Family.DECODER_ONLY),
    ("prefixlm", Family.PREFIX_LM), ("Encoder-Decoder", Family.ENCODER_DECODER), (Family.PREFIX_LM, Family.PREFIX_LM),
])
def test_every_name_resolves(name, family):
    assert Family(name) is family


def test_a_family_is_its_canonical_name():
    f = Family("encdec")
    assert f == "encoder-decoder" and {"encoder-decoder": 1}[f] == 1 and f"{f}" == "encoder-decoder"
    assert json.dumps({f: f}) == '{"encoder-decoder": "encoder-decoder"}'
    assert [f.short for f in Family] == [None, "decoder", "prefixlm", "encdec"]
    assert {Family(s).short for s in SHORT_NAMES} == set(SHORT_NAMES)
    assert Family.PREFIX_LM.display == "prefix-LM" and Family.DECODER_ONLY.display == "decoder-only"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown family 'gpt'; use one of \['encoder-only', .*'encdec'"):
        Family("gpt")


@pytest.mark.parametrize("family,cls", [("encoder-only", EncoderOnly), ("decoder-only", DecoderOnly), ("prefixlm", DecoderOnly),
                                        ("encdec", EncoderDecoder)])
def test_build_and_of(family, cls, tiny_cfg):
    model = build(family, tiny_cfg())
    assert type(model) is cls
    assert of(model) is (Family.DECODER_ONLY if cls is DecoderOnly else Family(family))  # prefix-LM is a way of calling it


def test_properties_agree_with_the_models(tiny_cfg):
    cfg = tiny_cfg(n_layers=3, n_enc_layers=2, n_dec_layers=1)
    for f in Family:
        model = build(f, cfg)
        assert f.generates == hasattr(model, "new_cache")
        assert f.cross_attention == hasattr(model, "decode")
        assert f.has_encoder == (hasattr(model, "encode") or hasattr(model, "encoder"))
        layers = {"encoder": len(getattr(model, "encoder", [])) or (len(model.blocks) if f is Family.ENCODER_ONLY else 0),
                  "decoder": len(getattr(model, "decoder", [])) or (len(model.blocks) if f.generates and not f.cross_attention else 0)}
        assert {s: n for s, (_, n) in f.stacks(cfg).items()} == {s: n for s, n in layers.items() if n}
        assert stack_parameters(model)["total"] == model.num_parameters()
    assert ARCHITECTURES == (Family.ENCODER_ONLY, Family.DECODER_ONLY, Family.ENCODER_DECODER)


def test_of_refuses_other_modules():
    import torch

    with pytest.raises(TypeError, match="EncoderOnly, DecoderOnly or EncoderDecoder"):
        of(torch.nn.Linear(2, 2))

"""generate / beam_search / sample_next check their arguments where they enter (table: arguments ->
error naming the argument); empty token ids are refused at the embedding, not deep in attention."""
from __future__ import annotations


import pytest
import torch

from bad_inputs import Bad, assert_refused, rows

from course_lib import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig, beam_search, generate, sample_next

V = 24
CFG = ModelConfig(vocab_size=V, d_model=16, n_heads=2, n_layers=1, max_len=32)
torch.manual_seed(0)
DEC, ED, ENC = DecoderOnly(CFG).eval(), EncoderDecoder(CFG).eval(), EncoderOnly(CFG).eval()
PROMPT, SRC = torch.tensor([[1, 7, 8, 9]]), torch.tensor([[7, 8, 9, 2]])
EMPTY = torch.zeros(1, 0, dtype=torch.long)
S = dict(temperature=1.0)  # sampling

TABLE = [
    Bad("prefix_len=-1", lambda: DEC(PROMPT, prefix_len=-1), ValueError, "prefix_len must be a non-negative int"),
    Bad("prefix_len=1.5", lambda: DEC(PROMPT, prefix_len=1.5), ValueError, "prefix_len"),
    Bad("prefix_len float tensor", lambda: DEC(PROMPT, prefix_len=torch.tensor([1.0])), ValueError, "integer tensor"),
    Bad("prefix_len tensor per row, wrong batch", lambda: DEC(PROMPT, prefix_len=torch.tensor([1, 2])), ValueError, "shape (1,)"),
    Bad("prefix_len negative tensor", lambda: DEC(PROMPT, prefix_len=torch.tensor([-2])), ValueError, ">= 0"),
    Bad("temperature=-1", lambda: generate(DEC, PROMPT, 3, temperature=-1.0), ValueError, "temperature must be a finite number >= 0"),
    Bad("temperature=nan", lambda: generate(DEC, PROMPT, 3, temperature=float("nan")), ValueError, "temperature"),
    Bad("temperature=inf", lambda: generate(DEC, PROMPT, 3, temperature=float("inf")), ValueError, "temperature"),
    Bad("top_k=0", lambda: generate(DEC, PROMPT, 3, **S, top_k=0), ValueError, "top_k"),
    Bad("top_k=-3", lambda: generate(DEC, PROMPT, 3, **S, top_k=-3), ValueError, "top_k"),
    Bad("top_k=2.5", lambda: generate(DEC, PROMPT, 3, **S, top_k=2.5), ValueError, "top_k"),
    Bad("top_p=0", lambda: generate(DEC, PROMPT, 3, **S, top_p=0.0), ValueError, "top_p is the probability mass to keep, in (0, 1]"),
    Bad("top_p=1.5", lambda: generate(DEC, PROMPT, 3, **S, top_p=1.5), ValueError, "top_p"),
    Bad("top_p=nan", lambda: generate(DEC, PROMPT, 3, **S, top_p=float("nan")), ValueError, "top_p"),
    Bad("greedy with top_k", lambda: generate(DEC, PROMPT, 3, top_k=5), ValueError, "only applies when sampling"),
    Bad("greedy with top_p", lambda: generate(DEC, PROMPT, 3, top_p=0.9), ValueError, "leave out top_p"),
    Bad("max_new_tokens=-1", lambda: generate(DEC, PROMPT, -1), ValueError, "max_new_tokens must be a whole number >= 0"),
    Bad("max_new_tokens=2.5", lambda: generate(DEC, PROMPT, 2.5), ValueError, "max_new_tokens"),
    Bad("beam: max_new_tokens=-1", lambda: beam_search(DEC, PROMPT, -1), ValueError, "max_new_tokens"),
    Bad("beam_size=0", lambda: beam_search(DEC, PROMPT, 3, beam_size=0), ValueError, "beam_size must be a whole number >= 1"),
    Bad("beam_size=-1", lambda: beam_search(DEC, PROMPT, 3, beam_size=-1), ValueError, "beam_size"),
    Bad("length_penalty=nan", lambda: beam_search(DEC, PROMPT, 3, length_penalty=float("nan")), ValueError, "length_penalty"),
    Bad("eos_id outside the vocabulary", lambda: generate(DEC, PROMPT, 3, eos_id=V), ValueError, "eos_id=24"),
    Bad("bos_id outside the vocabulary", lambda: beam_search(ED, SRC, 3, bos_id=-1), ValueError, "bos_id"),
    Bad("generator=0", lambda: generate(DEC, PROMPT, 3, **S, generator=0), TypeError, "torch.Generator"),
    Bad("empty prompt", lambda: generate(DEC, EMPTY, 3), ValueError, "the prompt is empty"),
    Bad("batch of 0 prompts", lambda: generate(DEC, torch.zeros(0, 3, dtype=torch.long), 3), ValueError, "empty"),
    Bad("empty source", lambda: generate(ED, EMPTY, 3), ValueError, "the source is empty"),
    Bad("beam: empty source", lambda: beam_search(ED, torch.zeros(2, 0, dtype=torch.long), 3), ValueError, "empty"),
    Bad("1-D prompt", lambda: generate(DEC, PROMPT[0], 3), ValueError, "ids[None]"),
    Bad("float prompt", lambda: generate(DEC, PROMPT.float(), 3), ValueError, "integer dtype"),
    Bad("encoder-only model", lambda: generate(ENC, PROMPT, 3), TypeError, "DecoderOnly or EncoderDecoder"),
    Bad("prompt longer than max_len", lambda: generate(DEC, torch.ones(1, 40, dtype=torch.long), 3), ValueError, "max_len"),
    Bad("sample_next temperature=-1", lambda: sample_next(torch.randn(1, V), temperature=-1.0), ValueError, "temperature"),
    Bad("model: 0 tokens", lambda: DEC(EMPTY), ValueError, "token ids are empty"),
    Bad("model: empty target", lambda: ED(SRC, EMPTY), ValueError, "empty"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row):
    assert_refused(row)


@pytest.mark.parametrize("model, inputs", [(DEC, PROMPT), (ED, SRC)], ids=["decoder", "encdec"])
def test_zero_new_tokens_is_the_same_empty_result_from_both(model, inputs):
    for out in (generate(model, inputs, 0), beam_search(model, inputs, 0)):
        assert out.shape == (1, 0) and out.dtype == torch.long


def test_unusual_but_valid_settings():
    assert torch.equal(beam_search(DEC, PROMPT, 5, beam_size=1), generate(DEC, PROMPT, 5))  # beam 1 is greedy
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    # top_k beyond the vocabulary keeps every token: the same draw as no top_k
    assert torch.equal(generate(DEC, PROMPT, 4, **S, top_k=1000, generator=g()), generate(DEC, PROMPT, 4, **S, generator=g()))
    assert torch.equal(generate(DEC, PROMPT, 4, **S, top_p=1.0, generator=g()), generate(DEC, PROMPT, 4, **S, generator=g()))
    assert beam_search(DEC, PROMPT, 3, beam_size=V + 3).shape[0] == 1
    assert generate(DEC, PROMPT, 3, eos_id=None).shape == (1, 3)

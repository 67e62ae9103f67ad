"""One configuration for all three families, so that comparisons change one thing at a time."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

#: The norms' epsilon wherever a config does not say otherwise (:class:`~course_lib.layers.RMSNorm`,
#: QK-norm and V-norm in :class:`~course_lib.attention.MultiHeadAttention`); PyTorch's LayerNorm default.
NORM_EPS = 1e-5

# Fields checked when a config is built (see ModelConfig._check_values): whole numbers >= 1, whole
# numbers >= 0, and positive finite reals. None is allowed where the field is optional.
_AT_LEAST_ONE = ("vocab_size", "d_model", "n_heads", "n_kv_heads", "d_ff", "max_len", "rel_buckets", "rel_max_distance")
_AT_LEAST_ZERO = ("n_layers", "n_enc_layers", "n_dec_layers", "type_vocab_size", "pos_offset", "pad_id")
_POSITIVE_REALS = ("norm_eps", "embed_norm_eps", "rope_base", "attn_scale")


@dataclass
class ModelConfig:
    """Hyper-parameters shared by :class:`EncoderOnly`, :class:`DecoderOnly` and :class:`EncoderDecoder`.

    Defaults are the modern pre-norm recipe at toy size. ``n_layers`` is the depth of a
    single stack; an encoder-decoder uses ``n_enc_layers``/``n_dec_layers`` when given.
    """

    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int | None = None  # grouped-query attention: fewer K/V heads than query heads (None = n_heads)
    n_layers: int = 2
    n_enc_layers: int | None = None
    n_dec_layers: int | None = None
    d_ff: int | None = None  # default 4 * d_model
    dropout: float = 0.0
    norm: str = "layer"  # "layer" | "rms"
    norm_first: bool = True  # pre-norm (GPT-2 onwards) or post-norm (original Transformer, BERT)
    ffn: str = "gelu"  # "gelu" | "relu" | "swiglu" | "geglu" (T5 v1.1)
    pos: str = "learned"  # "learned" | "sinusoidal" | "rope" | "relative" (T5's bucketed bias) | "none"
    max_len: int = 512
    qk_norm: bool = False
    v_norm: bool = False  # parameter-free RMSNorm of each head's values (next to QK-norm)
    attn_out_norm: bool = False  # an extra norm on the attention output (merged heads, before W_O)
    rope_cross: bool = False  # encoder-decoder: RoPE in cross-attention too, decoder positions continuing after the source
    tie_embeddings: bool = True  # share the token embedding with the output layer
    bias: bool = True
    norm_eps: float = NORM_EPS
    final_norm: bool = True  # a norm after the last block (needed by pre-norm; nn.Transformer has one always)
    scale_embeddings: bool = False  # multiply token embeddings by √d_model (Vaswani et al.)
    pad_id: int = 0
    rope_base: float = 10000.0
    # Options that real checkpoints need (BERT, GPT-2, BART, T5, LLaMA 3; see course_lib.convert).
    # Each is off by default, so the lessons' models are unchanged.
    gelu_approx: str = "none"  # "none": exact erf GELU (BERT, BART) | "tanh": GPT-2's gelu_new, T5 v1.1's gated-gelu
    embed_norm: bool = False  # a LayerNorm on the summed embeddings, before block 0 (BERT, BART)
    embed_norm_eps: float | None = None  # its epsilon; None = norm_eps
    type_vocab_size: int = 0  # token-type (segment A/B) embeddings added to the input, as in BERT; 0 = none
    pos_offset: int = 0  # learned positions are read from row pos + pos_offset of the table (BART: 2)
    mlm_head: bool = False  # BERT's MLM head: dense -> GELU -> LayerNorm before the output layer
    head_bias: bool = False  # a bias on the output layer (BERT's decoder bias, BART's final_logits_bias)
    output_scale: float = 1.0  # final hidden states are multiplied by this before the output layer (T5: d_model**-0.5)
    attn_scale: float | None = None  # attention scores are q·k times this; None = 1/√d_head, T5 uses 1.0 (unscaled)
    rel_buckets: int = 32  # pos="relative" (T5): distances are binned into this many buckets per direction pair
    rel_max_distance: int = 128  # pos="relative": distances beyond this share the last bucket
    rope_scaling: dict | None = None  # {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}

    def __post_init__(self) -> None:
        self._check_values()
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; pick n_heads that divides d_model "
                f"(e.g. {[h for h in (1, 2, 4, 8, 16) if self.d_model % h == 0]})."
            )
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads != 0):
            raise ValueError(
                f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} (each K/V head serves a group of "
                f"query heads); pick one of {[g for g in range(1, self.n_heads + 1) if self.n_heads % g == 0]}."
            )
        choices = {
            "norm": ("layer", "rms"),
            "ffn": ("gelu", "relu", "swiglu", "geglu"),
            "pos": ("learned", "sinusoidal", "rope", "relative", "none"),
            "gelu_approx": ("none", "tanh"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type")
            keys = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
            if kind != "llama3" or not keys <= set(self.rope_scaling):
                raise ValueError(
                    f"rope_scaling supports only rope_type 'llama3' with keys {sorted(keys)}; got {self.rope_scaling!r}."
                )
        if self.rope_cross and self.pos != "rope":
            raise ValueError(f"rope_cross=True rotates cross-attention queries and keys, so it needs pos='rope'; got pos={self.pos!r}.")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.n_enc_layers is None:
            self.n_enc_layers = self.n_layers
        if self.n_dec_layers is None:
            self.n_dec_layers = self.n_layers

    def _check_values(self) -> None:
        """Refuse impossible sizes and rates where the config is built, naming the field (numpy
        integers become plain ints, so the config still saves with ``weights_only=True``)."""
        for name in _AT_LEAST_ONE + _AT_LEAST_ZERO:
            value, low = getattr(self, name), 1 if name in _AT_LEAST_ONE else 0
            if value is None and name in ("n_kv_heads", "d_ff", "n_enc_layers", "n_dec_layers"):
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                hint = f" (write {int(value)})" if isinstance(value, float) and value.is_integer() else ""
                raise TypeError(f"ModelConfig.{name} must be a whole number >= {low}; got {value!r}{hint}.")
            if value < low:
                raise ValueError(f"ModelConfig.{name} must be >= {low}; got {value}.")
            setattr(self, name, int(value))
        if self.pad_id >= self.vocab_size:
            raise ValueError(f"ModelConfig.pad_id={self.pad_id} is outside the vocabulary [0, vocab_size={self.vocab_size}); "
                             "use an id below vocab_size (the course's padding id is 0).")
        if not isinstance(self.dropout, numbers.Real) or isinstance(self.dropout, bool) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout is a probability in [0, 1); got {self.dropout!r} (0.1 is typical, 0 turns it off).")
        for name in _POSITIVE_REALS:
            value = getattr(self, name)
            if value is None and name in ("embed_norm_eps", "attn_scale"):
                continue
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"ModelConfig.{name} must be a positive finite number; got {value!r}.")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_heads`` with grouped-query attention, else ``n_heads``."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    def to_dict(self) -> dict:
        return asdict(self)

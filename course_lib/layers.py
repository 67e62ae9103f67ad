"""The small pieces a transformer block is made of: norms, feed-forward nets, positions.

    LayerNorm(x) = γ ⊙ (x − mean(x)) / √(var(x) + ε) + β
    RMSNorm(x)   = γ ⊙ x / √(mean(x²) + ε)
    FFN(x)       = W₂ act(W₁ x + b₁) + b₂
    SwiGLU(x)    = W₂ (SiLU(W_g x) ⊙ W_u x)      GeGLU: the same with GELU in place of SiLU
    PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
    RoPE: rotate each pair (x₂ᵢ, x₂ᵢ₊₁) of a query/key by the angle pos · base^(−2i/d_head)
    T5 relative bias: a learned scalar per head and per (bucketed) distance key − query, added to the scores
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import NORM_EPS


class RMSNorm(nn.Module):
    """Root-mean-square norm: no mean subtraction, no bias. ``(..., d) -> (..., d)``."""

    def __init__(self, d: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps))


def make_norm(kind: str, d: int, eps: float) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d, eps=eps)
    if kind == "rms":
        return RMSNorm(d, eps=eps)
    raise ValueError(f"norm must be 'layer' or 'rms'; got {kind!r}.")


class FeedForward(nn.Module):
    """Position-wise FFN with a ReLU or GELU in the middle. ``(B, T, d) -> (B, T, d)``.
    Names (``linear1``, ``linear2``) match ``nn.TransformerEncoderLayer`` for weight copying."""

    def __init__(
        self, d: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True, gelu_approx: str = "none"
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu'; got {activation!r}.")
        self.linear1, self.linear2 = nn.Linear(d, d_ff, bias=bias), nn.Linear(d_ff, d, bias=bias)
        self.act = gelu_fn(gelu_approx) if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.linear1(x))
        return self.linear2(self.dropout(h) if self.training else h)  # dropout is the identity in eval mode


def gelu_fn(approx: str = "none"):
    """GELU(x) = x·Φ(x) with the exact normal CDF (``"none"``, BERT) or its tanh approximation
    (``"tanh"``: GPT-2's ``gelu_new``, T5 v1.1). The two differ by up to about 5e-4."""
    if approx not in ("none", "tanh"):
        raise ValueError(f"gelu_approx must be 'none' or 'tanh'; got {approx!r}.")
    return F.gelu if approx == "none" else partial(F.gelu, approximate="tanh")


class SwiGLU(nn.Module):
    """Gated FFN of LLaMA/T5v1.1-style models: three matrices instead of two. ``(B, T, d) -> (B, T, d)``.
    ``activation`` is the gate's: SiLU (SwiGLU, LLaMA) or a GELU (GeGLU, T5 v1.1's gated-gelu)."""

    def __init__(self, d: int, d_ff: int, dropout: float = 0.0, bias: bool = False, activation=F.silu) -> None:
        super().__init__()
        self.w_gate, self.w_up = nn.Linear(d, d_ff, bias=bias), nn.Linear(d, d_ff, bias=bias)
        self.w_down = nn.Linear(d_ff, d, bias=bias)
        self.act = activation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.act(self.w_gate(x)), self.w_up(x)  # (B, T, d_ff) each
        # without autograd the gate's fresh tensor can take the product: one (B, T, d_ff) buffer less to write
        h = gate * up if torch.is_grad_enabled() else gate.mul_(up)
        return self.w_down(self.dropout(h))


#: FFN kinds with a gate: three matrices (gate, up, down) instead of two.
GATED_FFNS = ("swiglu", "geglu")


def make_ffn(kind: str, d: int, d_ff: int, dropout: float, bias: bool, gelu_approx: str = "none") -> nn.Module:
    if kind in GATED_FFNS:
        return SwiGLU(d, d_ff, dropout, bias=bias, activation=F.silu if kind == "swiglu" else gelu_fn(gelu_approx))
    return FeedForward(d, d_ff, kind, dropout, bias=bias, gelu_approx=gelu_approx)


def sinusoidal_table(max_len: int, d: int) -> Tensor:
    """The fixed positional encodings of Vaswani et al. (2017): ``(max_len, d)``."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # 10000^(-2i/d)
    table = torch.zeros(max_len, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return table


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., 2021), GPT-NeoX "rotate half" layout.

    Called on queries or keys ``(B, H, T, d_head)`` with their absolute ``positions (T,)``.
    The dot product of a rotated query and key depends only on their *distance*.
    """

    def __init__(self, d_head: int, max_len: int = 4096, base: float = 10000.0, scaling: dict | None = None) -> None:
        super().__init__()
        if d_head % 2:
            raise ValueError(f"RoPE needs an even head dimension; got d_head={d_head}.")
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d_head/2,)
        if scaling is not None:
            inv_freq = llama3_inv_freq(inv_freq, scaling)
        angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq  # (max_len, d_head/2)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        if int(positions.max()) >= self.cos.shape[0]:
            raise ValueError(f"position {int(positions.max())} is beyond RoPE's table of {self.cos.shape[0]}; raise max_len.")
        # a row of the tables per position (F.embedding: the plain lookup, several times faster than indexing)
        cos, sin = F.embedding(positions, self.cos).to(x.dtype), F.embedding(positions, self.sin).to(x.dtype)  # (T, d_head)
        if positions.dim() == 2:  # per-example positions (B, T): broadcast over the heads of x (B, H, T, d_head)
            cos, sin = cos[:, None], sin[:, None]
        x1, x2 = x.chunk(2, dim=-1)
        # x·cos + rotate_half(x)·sin, the sum written into x·cos (a fresh tensor autograd does not keep): one copy less
        return (x * cos).add_(torch.cat([-x2, x1], dim=-1) * sin)


def llama3_inv_freq(inv_freq: Tensor, scaling: dict) -> Tensor:
    """LLaMA 3.1's RoPE scaling (``rope_type: llama3``) for a longer context: slow rotations
    (wavelength above ``original_max_position_embeddings / low_freq_factor``) are slowed a further
    ``factor`` times, fast ones (wavelength below ``... / high_freq_factor``) are kept, and those in
    between are interpolated smoothly."""
    if scaling.get("rope_type") != "llama3":
        raise ValueError(f"only rope_type 'llama3' is supported; got {scaling.get('rope_type')!r}.")
    factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / lo, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
    return torch.where(medium, smoothed, scaled)


def relative_position_bucket(relative: Tensor, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """T5's bins for the distance ``key − query``: exact for small distances, logarithmic up to
    ``max_distance``, one last bin beyond. Bidirectional (encoder): half the bins for keys to the
    right. Causal (decoder): only keys to the left (or the query itself) get their own bins."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (relative > 0).long() * n_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = n_buckets // 2
    log_bin = exact + (
        torch.log(distance.float() / exact) / math.log(max_distance / exact) * (n_buckets - exact)
    ).long()  # for distance 0 this is log(0) = -inf, but torch.where below picks the exact bin there
    log_bin = log_bin.clamp(max=n_buckets - 1)
    return buckets + torch.where(distance < exact, distance, log_bin)


class RelativePositionBias(nn.Module):
    """T5's relative position bias (Raffel et al., 2020, arXiv 1910.10683): one learned scalar per head
    and per distance bucket, added to the attention scores. One table per stack, shared by its layers.

    ``(q_positions (T_q,), k_positions (T_k,)) -> bias (1, H, T_q, T_k)``.
    """

    def __init__(self, n_heads: int, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128) -> None:
        super().__init__()
        self.bidirectional, self.n_buckets, self.max_distance = bidirectional, n_buckets, max_distance
        self.table = nn.Embedding(n_buckets, n_heads)

    def forward(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        relative = k_positions[None, :] - q_positions[:, None]  # (T_q, T_k): key − query
        buckets = relative_position_bucket(relative, self.bidirectional, self.n_buckets, self.max_distance)
        return self.table(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, T_q, T_k)

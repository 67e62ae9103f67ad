"""The small pieces a transformer block is made of: norms, feed-forward nets, positions.

    LayerNorm(x) = γ ⊙ (x − mean(x)) / √(var(x) + ε) + β
    RMSNorm(x)   = γ ⊙ x / √(mean(x²) + ε)
    FFN(x)       = W₂ act(W₁ x + b₁) + b₂
    SwiGLU(x)    = W₂ (SiLU(W_g x) ⊙ W_u x)
    PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
    RoPE: rotate each pair (x₂ᵢ, x₂ᵢ₊₁) of a query/key by the angle pos · base^(−2i/d_head)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square norm: no mean subtraction, no bias. ``(..., d) -> (..., d)``."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
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

    def __init__(self, d: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu'; got {activation!r}.")
        self.linear1, self.linear2 = nn.Linear(d, d_ff, bias=bias), nn.Linear(d_ff, d, bias=bias)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.linear1(x))
        return self.linear2(self.dropout(h) if self.training else h)  # dropout is the identity in eval mode


class SwiGLU(nn.Module):
    """Gated FFN of LLaMA/T5v1.1-style models: three matrices instead of two. ``(B, T, d) -> (B, T, d)``."""

    def __init__(self, d: int, d_ff: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.w_gate, self.w_up = nn.Linear(d, d_ff, bias=bias), nn.Linear(d, d_ff, bias=bias)
        self.w_down = nn.Linear(d_ff, d, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(self.dropout(F.silu(self.w_gate(x)) * self.w_up(x)))


def make_ffn(kind: str, d: int, d_ff: int, dropout: float, bias: bool) -> nn.Module:
    if kind == "swiglu":
        return SwiGLU(d, d_ff, dropout, bias=bias)
    return FeedForward(d, d_ff, kind, dropout, bias=bias)


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

    def __init__(self, d_head: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        if d_head % 2:
            raise ValueError(f"RoPE needs an even head dimension; got d_head={d_head}.")
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d_head/2,)
        angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq  # (max_len, d_head/2)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        if int(positions.max()) >= self.cos.shape[0]:
            raise ValueError(f"position {int(positions.max())} is beyond RoPE's table of {self.cos.shape[0]}; raise max_len.")
        cos, sin = self.cos[positions].to(x.dtype), self.sin[positions].to(x.dtype)  # (T, d_head)
        if positions.dim() == 2:  # per-example positions (B, T): broadcast over the heads of x (B, H, T, d_head)
            cos, sin = cos[:, None], sin[:, None]
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

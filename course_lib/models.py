"""The three families, built from the same blocks and one :class:`ModelConfig`.

* :class:`EncoderOnly`    (BERT)  bidirectional; an MLM head predicts masked tokens
* :class:`DecoderOnly`    (GPT)   causal; or a prefix-LM ("BiAttn") with a bidirectional prompt
* :class:`EncoderDecoder` (T5)    bidirectional encoder, causal decoder with cross-attention

Token ids are ``(B, T)`` LongTensors; every model returns logits ``(B, T, vocab_size)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .blocks import CrossDecoderBlock, DecoderBlock, DecoderCache, EncoderBlock
from .config import ModelConfig
from .layers import RelativePositionBias, RotaryEmbedding, make_norm, sinusoidal_table
from .masks import causal_mask, padding_mask


class Embeddings(nn.Module):
    """Token embedding (+ learned or sinusoidal positions). ``tokens (B, T) -> (B, T, d)``.
    With RoPE or no positions, positions are handled inside attention (or not at all)."""

    def __init__(self, cfg: ModelConfig, tok: nn.Embedding | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = tok if tok is not None else nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.pos == "learned":
            self.pos = nn.Embedding(cfg.max_len + cfg.pos_offset, cfg.d_model)  # BART keeps 2 unused rows first
        elif cfg.pos == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        # BERT: token-type (segment) embeddings; BERT and BART: a LayerNorm on the sum, before block 0
        self.types = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        eps = cfg.norm_eps if cfg.embed_norm_eps is None else cfg.embed_norm_eps
        self.norm = nn.LayerNorm(cfg.d_model, eps=eps) if cfg.embed_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def _bad_ids(self, tokens: Tensor) -> str | None:
        """What is wrong with ids outside ``[0, vocab_size)``, or None if they are all valid."""
        lo, hi = (int(v) for v in tokens.aminmax())
        if hi >= self.cfg.vocab_size or lo < 0:
            return f"token ids must lie in [0, vocab_size={self.cfg.vocab_size}); got max {hi}, min {lo}."
        return None

    def forward(self, tokens: Tensor, start: int = 0, token_type_ids: Tensor | None = None) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"expected token ids of shape (B, T) and an integer dtype; got {tuple(tokens.shape)} {tokens.dtype}.")
        if tokens.numel() == 0:  # here, not as a reshape error inside attention
            raise ValueError(f"the token ids are empty (shape {tuple(tokens.shape)}); give at least one sequence of at least one token.")
        end = start + tokens.shape[1]
        if self.cfg.pos in ("learned", "sinusoidal") and end > self.cfg.max_len:
            raise ValueError(f"sequence reaches position {end} but max_len={self.cfg.max_len}; raise ModelConfig.max_len.")
        # An id outside the vocabulary must fail with a clear message. On the CPU the lookup itself raises
        # IndexError, so there we only explain it. A GPU would fail later with an opaque device assert, and
        # reading min/max back makes it wait, so we check multi-token inputs there (a decoding step's
        # token comes from the model's own logits, so it is in range).
        if tokens.device.type != "cpu" and tokens.shape[1] > 1 and tokens.numel():
            if (problem := self._bad_ids(tokens)) is not None:
                raise ValueError(problem)
        try:
            x = self.tok(tokens)
        except IndexError:
            raise ValueError(self._bad_ids(tokens) or "token id out of range for the embedding table.") from None
        if self.scale != 1.0:
            x = x * self.scale
        if self.cfg.pos == "learned":
            off = self.cfg.pos_offset
            x = x + self.pos.weight[start + off : end + off]  # = self.pos(torch.arange(start, end) + pos_offset)
        elif self.cfg.pos == "sinusoidal":
            x = x + self.table[start:end]
        if self.types is not None:  # segment A/B; all zeros (segment A) when not given
            x = x + (self.types.weight[0] if token_type_ids is None else self.types(token_type_ids))
        elif token_type_ids is not None:
            raise ValueError("token_type_ids given but this model has no token-type embeddings (ModelConfig.type_vocab_size=0).")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x) if self.training else x


def _rope(cfg: ModelConfig) -> RotaryEmbedding | None:
    return RotaryEmbedding(cfg.d_head, cfg.max_len, cfg.rope_base, cfg.rope_scaling) if cfg.pos == "rope" else None


def _rel_bias(cfg: ModelConfig, bidirectional: bool) -> RelativePositionBias | None:
    """T5's relative position bias, one per stack (shared by its layers); None unless ``pos="relative"``."""
    if cfg.pos != "relative":
        return None
    return RelativePositionBias(cfg.n_heads, bidirectional, cfg.rel_buckets, cfg.rel_max_distance)


def _bias(rel: RelativePositionBias | None, past: int, t: int, device) -> Tensor | None:
    """Bias ``(1, H, t, past + t)`` for queries at positions past..past+t-1 over keys 0..past+t-1."""
    if rel is None:
        return None
    return rel(torch.arange(past, past + t, device=device), torch.arange(past + t, device=device))


def _maybe_norm(cfg: ModelConfig) -> nn.Module:
    return make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.final_norm else nn.Identity()


class _LMHead(nn.Module):
    """Hidden states ``(B, T, d)`` -> logits ``(B, T, V)``; optionally tied to the token embedding."""

    def __init__(self, cfg: ModelConfig, tok: nn.Embedding) -> None:
        super().__init__()
        # BERT's MLM head transforms the hidden states first: dense -> GELU -> LayerNorm
        self.transform = (
            nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(approximate=cfg.gelu_approx), nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps))
            if cfg.mlm_head
            else None
        )
        self.scale = cfg.output_scale  # T5 with tied embeddings: d_model**-0.5
        self.proj = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.tie_embeddings:
            self.proj.weight = tok.weight

    def forward(self, h: Tensor) -> Tensor:
        if self.transform is not None:
            h = self.transform(h)
        if self.scale != 1.0:
            h = h * self.scale
        return self.proj(h)


class _Model(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameters, counting shared tensors once; ``non_embedding`` leaves out token and
        position embeddings and the (tied or not) output layer, as scaling-law papers do."""
        seen, total = set(), 0
        skip = set()
        if non_embedding:
            for m in self.modules():
                if isinstance(m, (Embeddings, _LMHead)):
                    skip |= {id(p) for p in m.parameters()}
        for p in self.parameters():
            if id(p) not in seen and id(p) not in skip:
                seen.add(id(p))
                total += p.numel()
        return total

    def _init_weights(self) -> None:
        # GPT-2 style: small normal init keeps early logits near uniform at any width.
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)


class EncoderOnly(_Model):
    """BERT-style encoder with an MLM head. Attention is bidirectional: only padding is masked."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embed = Embeddings(cfg)
        self.rope = _rope(cfg)
        self.rel_bias = _rel_bias(cfg, bidirectional=True)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = _maybe_norm(cfg)
        self.head = _LMHead(cfg, self.embed.tok)
        self._init_weights()

    def encode(self, tokens: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Contextual vectors ``(B, T, d)``: every position has seen every non-pad token."""
        mask = padding_mask(tokens, self.cfg.pad_id)  # (B, 1, 1, T)
        x = self.embed(tokens, token_type_ids=token_type_ids)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        bias = _bias(self.rel_bias, 0, tokens.shape[1], tokens.device)
        for block in self.blocks:
            x = block(x, mask, rope=self.rope, positions=positions, attn_bias=bias)
        return self.norm(x)

    def forward(self, tokens: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return self.head(self.encode(tokens, token_type_ids))

    @torch.no_grad()
    def sentence_embedding(self, tokens: Tensor) -> Tensor:
        """Mean of the contextual vectors over real (non-pad) tokens: ``(B, d)``, L2-normalised."""
        h = self.encode(tokens)
        keep = (tokens != self.cfg.pad_id).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


def _check_prefix_len(prefix_len: int | Tensor, batch: int) -> None:
    """A prefix length is a count of prompt tokens: one non-negative int, or one per row ``(B,)``."""
    if isinstance(prefix_len, Tensor):
        if prefix_len.dtype.is_floating_point or prefix_len.dtype == torch.bool or prefix_len.shape not in {(batch,), ()}:
            raise ValueError(f"prefix_len must be an int or an integer tensor of shape ({batch},), one length per row; "
                             f"got a {prefix_len.dtype} tensor of shape {tuple(prefix_len.shape)}.")
        if prefix_len.numel() and int(prefix_len.min()) < 0:
            raise ValueError("prefix_len must be >= 0 (the number of prompt tokens); got a negative length.")
    elif isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or prefix_len < 0:
        raise ValueError(f"prefix_len must be a non-negative int (the number of prompt tokens); got {prefix_len!r}.")


class DecoderOnly(_Model):
    """GPT-style decoder. ``prefix_len`` turns it into a prefix-LM: the first ``prefix_len``
    tokens (the prompt / source) attend to each other in both directions; the rest is causal.

    Sequences are right-padded: the causal mask already hides trailing pads from every real token.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embed = Embeddings(cfg)
        self.rope = _rope(cfg)
        self.rel_bias = _rel_bias(cfg, bidirectional=False)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = _maybe_norm(cfg)
        self.head = _LMHead(cfg, self.embed.tok)
        self._init_weights()

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.blocks))

    def self_attention_mask(self, t: int, past: int, prefix_len: int | Tensor | None, device) -> Tensor:
        """Queries at positions past..past+t-1 over keys 0..past+t-1: causal, plus the whole prefix."""
        mask = causal_mask(t, past + t, device=device)  # (t, past+t)
        if prefix_len is None:
            return mask
        keys = torch.arange(past + t, device=device)
        if isinstance(prefix_len, int):
            return mask | (keys < prefix_len)[None, :]
        in_prefix = keys[None, :] < torch.as_tensor(prefix_len, device=device)[:, None]  # (B, past+t)
        return (mask[None] | in_prefix[:, None, :])[:, None]  # (B, 1, t, past+t)

    def forward(self, tokens: Tensor, *, prefix_len: int | Tensor | None = None, cache: DecoderCache | None = None,
                last_only: bool = False) -> Tensor:
        """``tokens (B, T)`` -> logits ``(B, T, V)``. With a ``cache``, ``tokens`` are the new
        positions only and earlier keys/values are read from (and appended to) the cache.
        ``last_only=True`` returns the last position's logits alone, ``(B, 1, V)``: all that generation
        needs after a prompt, and the output layer (V × d, a small model's largest matrix) then maps one position, not T."""
        past = 0 if cache is None else len(cache)
        if prefix_len is not None:
            _check_prefix_len(prefix_len, tokens.shape[0])
        # mask=None: the blocks' attention is causal (PyTorch's causal kernel where exact). A prefix-LM
        # needs its own mask, except for one new token (a decoding step), which may see every key anyway.
        prefix = prefix_len is not None and tokens.shape[1] > 1
        mask = self.self_attention_mask(tokens.shape[1], past, prefix_len, tokens.device) if prefix else None
        x = self.embed(tokens, start=past)
        positions = None if self.rope is None else torch.arange(past, past + tokens.shape[1], device=tokens.device)
        bias = _bias(self.rel_bias, past, tokens.shape[1], tokens.device)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache=None if cache is None else cache[i], rope=self.rope, positions=positions, attn_bias=bias)
        return self.head(self.norm(x[:, -1:] if last_only else x))


class EncoderDecoder(_Model):
    """Original-Transformer / T5-style model. One token embedding is shared by the encoder,
    the decoder and (if tied) the output layer, as in T5."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.src_embed, self.tgt_embed = Embeddings(cfg, tok), Embeddings(cfg, tok)
        self.rope = _rope(cfg)
        self.enc_rel_bias, self.dec_rel_bias = _rel_bias(cfg, bidirectional=True), _rel_bias(cfg, bidirectional=False)
        self.encoder = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_enc_layers))
        self.enc_norm = _maybe_norm(cfg)
        self.decoder = nn.ModuleList(CrossDecoderBlock(cfg) for _ in range(cfg.n_dec_layers))
        self.dec_norm = _maybe_norm(cfg)
        self.head = _LMHead(cfg, tok)
        self._init_weights()

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.decoder))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` -> (memory ``(B, S, d)``, source padding mask ``(B, 1, 1, S)``)."""
        src_mask = padding_mask(src, self.cfg.pad_id)
        x = self.src_embed(src)
        positions = torch.arange(src.shape[1], device=src.device)
        bias = _bias(self.enc_rel_bias, 0, src.shape[1], src.device)
        for block in self.encoder:
            x = block(x, src_mask, rope=self.rope, positions=positions, attn_bias=bias)
        return self.enc_norm(x), src_mask

    def encode_for_decoding(self, src: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`encode`, for generation: the mask is ``None`` when no source token is padding.
        There is nothing to hide then, and each decoding step skips the mask in every layer's
        cross-attention (one check here instead of one per layer per step)."""
        memory, src_mask = self.encode(src)
        return memory, (None if bool(src_mask.all()) else src_mask)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor | None, *, cache: DecoderCache | None = None) -> Tensor:
        """Decoder input ``tgt_in (B, T)`` (BOS + target shifted right) -> logits ``(B, T, V)``."""
        past = 0 if cache is None else len(cache)
        x = self.tgt_embed(tgt_in, start=past)
        positions = None if self.rope is None else torch.arange(past, past + tgt_in.shape[1], device=tgt_in.device)
        context_positions = None
        if self.cfg.rope_cross:  # decoder positions continue after the source: S, S+1, ... (S = real source length)
            n_src = memory.shape[1] if src_mask is None else src_mask.reshape(memory.shape[0], -1).sum(-1)  # (B,)
            positions = positions + (n_src[:, None] if torch.is_tensor(n_src) else n_src)  # (B, T)
            context_positions = torch.arange(memory.shape[1], device=memory.device)
        bias = _bias(self.dec_rel_bias, past, tgt_in.shape[1], tgt_in.device)
        for i, block in enumerate(self.decoder):
            # mask=None: causal self-attention, aligned to the cache (PyTorch's causal kernel where exact)
            x = block(x, memory, src_mask, cache=None if cache is None else cache[i], rope=self.rope, positions=positions,
                      context_positions=context_positions, attn_bias=bias)
        return self.head(self.dec_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

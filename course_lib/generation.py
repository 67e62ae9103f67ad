"""Decoding: greedy, sampling (temperature / top-k / top-p) and beam search, with a KV cache.

A :class:`DecodingSession` hides the difference between the two decoders:

* decoder-only: the prompt is the beginning of the sequence; ``start`` runs it (prefill), then
  each ``step`` feeds one new token.
* encoder-decoder: ``start`` encodes the source once and feeds BOS to the decoder; the
  cross-attention K/V of the encoder output are computed once and cached.

:func:`generate`, :func:`beam_search`, :mod:`course_lib.lessons.latency` and the lessons all decode through it.
With ``use_cache=False`` each step recomputes the whole sequence, the slow reference that
cached decoding must match token for token. With the cache, a plain pre-norm decoder (decoder-only,
or an encoder-decoder's) takes the fast path of :mod:`course_lib.fast_decode` for its steps (same
logits, less Python per token); ``fast_path=False`` keeps every step on the general forward pass.
"""
from __future__ import annotations

import functools
import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import DecoderCache
from .families import of
from .fast_decode import FlatDecoder
from .models import DecoderOnly
from .tokenizer import BOS_ID


def _decoding(fn):
    """Run a decoding function under ``torch.inference_mode``, which is ``no_grad`` plus no version
    counters or view tracking: measurably less work per operation, and a decoding step is
    hundreds of small operations. Tensors made in that mode cannot be used by autograd later, so
    the result is cloned outside it: the generated ids can feed a training step."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return out.clone()

    return wrapper


class DecodingSession:
    """One batch decoded a token at a time, the same way for both decoders.

    * decoder-only: :meth:`start` reads the prompt ``inputs (B, P)`` at once (prefill; with
      ``prefix_lm`` the prompt attends in both directions); each :meth:`step` feeds one new token.
    * encoder-decoder: :meth:`start` encodes the source ``inputs (B, S)`` once and feeds BOS to the
      decoder (which computes the cross-attention K/V of the encoder output then, and caches them);
      each :meth:`step` feeds one new token.

    ``cache`` is the model's :class:`~course_lib.blocks.DecoderCache`, ``len(cache)`` the positions
    read so far (``n_prompt`` of them the prompt's: P for a decoder-only model, 0 for an
    encoder-decoder, whose source sits in cross-attention). ``use_cache=False`` keeps no cache: every
    step re-reads the whole sequence, the slow reference that cached decoding must match token for
    token. With the cache, a plain pre-norm decoder (either family) steps through
    :class:`~course_lib.fast_decode.FlatDecoder` (the same logits, less Python per token);
    ``fast_path=False`` keeps every step on the general forward pass.
    """

    def __init__(self, model, inputs: Tensor, *, use_cache: bool = True, bos_id: int = BOS_ID, prefix_lm: bool = False,
                 fast_path: bool = True) -> None:
        family = of(model)
        if not family.generates:
            raise TypeError(f"generation needs a DecoderOnly or EncoderDecoder model; got {type(model).__name__}.")
        self.model, self.use_cache, self.prefix_lm = model, use_cache, prefix_lm
        self.cache: DecoderCache | None = model.new_cache() if use_cache else None
        # one new token at a time: the flat step does the same arithmetic with its lookups done once
        self.flat = FlatDecoder(model) if use_cache and fast_path and FlatDecoder.supports(model) else None
        self.encoder_decoder = family.cross_attention
        # DecoderOnly's forward can return the last position's logits alone; a subclass's own forward may not
        self.last_only = type(model).forward is DecoderOnly.forward
        if self.encoder_decoder:
            self.memory, self.src_mask = model.encode_for_decoding(inputs)
            self.seq = torch.full((inputs.shape[0], 1), bos_id, dtype=torch.long, device=inputs.device)
            self.n_prompt = 0
        else:
            self.seq = inputs
            self.n_prompt = inputs.shape[1]

    def _logits(self, new: Tensor) -> Tensor:
        tokens = new if self.use_cache else self.seq
        if self.encoder_decoder:
            return self.model.decode(tokens, self.memory, self.src_mask, cache=self.cache)[:, -1]
        prefix = self.n_prompt if self.prefix_lm else None
        if self.last_only:  # the output layer on the last position alone: the only logits decoding reads
            return self.model(tokens, prefix_len=prefix, cache=self.cache, last_only=True)[:, -1]
        return self.model(tokens, prefix_len=prefix, cache=self.cache)[:, -1]

    def start(self) -> Tensor:
        """Logits ``(B, V)`` for the first new token (prefill / encoder pass + BOS step)."""
        return self._logits(self.seq)

    def step(self, token: Tensor) -> Tensor:
        """Append ``token (B,)`` and return logits ``(B, V)`` for the next one."""
        new = token[:, None]
        if self.flat is not None:
            return self.flat.step(new, self.cache, self.src_mask if self.encoder_decoder else None)
        if not self.use_cache:  # only the uncached reference re-reads the whole sequence
            self.seq = torch.cat([self.seq, new], dim=1)
        return self._logits(new)

    def reorder(self, index: Tensor, *, shared_source: bool = True) -> None:
        """Keep rows ``index`` (beam search, after picking the best extensions). Beam search only moves
        an input's beams among themselves, and those share one source: the encoder memory, its mask and
        the cross-attention K/V are the same in every row it can pick, so by default they are not copied;
        ``shared_source=False`` (rows of different inputs) reorders them too."""
        self.seq = self.seq.index_select(0, index)
        if self.encoder_decoder and not shared_source:
            self.memory = self.memory.index_select(0, index)
            self.src_mask = None if self.src_mask is None else self.src_mask.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index, cross=not shared_source)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None, generator=None) -> None:
    """Refuse sampling settings that have no meaning, naming the argument and what it accepts."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None; got {type(generator).__name__}.")
    if not (_is_real(temperature) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy, 1 = the model's own distribution); got {temperature!r}.")
    if top_k is not None and not (isinstance(top_k, numbers.Integral) and not isinstance(top_k, bool) and top_k >= 1):
        raise ValueError(f"top_k is how many of the most likely tokens to keep, a whole number >= 1 (or None for all); got {top_k!r}.")
    if top_p is not None and not (_is_real(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p is the probability mass to keep, in (0, 1] (or None for all); got {top_p!r}.")
    if temperature == 0 and (top_k is not None or top_p is not None):
        given = [(n, v) for n, v in (("top_k", top_k), ("top_p", top_p)) if v is not None]
        raise ValueError(f"{' and '.join(f'{n}={v!r}' for n, v in given)} only applies when sampling, but temperature=0 decodes "
                         f"greedily; pass temperature > 0 (e.g. 1.0) or leave out {' and '.join(n for n, _ in given)}.")


def _check_decoding(model, inputs: Tensor, max_new_tokens: int, *, beam_size: int = 1, length_penalty: float = 1.0,
                    **special_ids: int | None) -> None:
    """Check the arguments every decoder shares where they enter :func:`generate` / :func:`beam_search`."""
    family = of(model)
    if not family.generates:
        raise TypeError(f"generation needs a DecoderOnly or EncoderDecoder model; got {type(model).__name__}.")
    what = "source" if family.cross_attention else "prompt"
    if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.is_floating_point():
        got = f"shape {tuple(inputs.shape)}, dtype {inputs.dtype}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"the {what} must be token ids of shape (B, T) and an integer dtype; got {got} (one sequence: ids[None]).")
    if inputs.numel() == 0:
        raise ValueError(f"the {what} is empty (shape {tuple(inputs.shape)}); give at least one sequence of at least one token"
                         + (" (e.g. BOS alone)." if what == "prompt" else "."))
    if not (isinstance(max_new_tokens, numbers.Integral) and not isinstance(max_new_tokens, bool) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be a whole number >= 0; got {max_new_tokens!r}.")
    if not (isinstance(beam_size, numbers.Integral) and not isinstance(beam_size, bool) and beam_size >= 1):
        raise ValueError(f"beam_size must be a whole number >= 1 (1 = greedy); got {beam_size!r}.")
    if not (_is_real(length_penalty) and math.isfinite(length_penalty)):
        raise ValueError(f"length_penalty must be a finite number (0 = none, 1 = divide by the length); got {length_penalty!r}.")
    vocab = model.cfg.vocab_size
    for name, value in special_ids.items():  # eos_id=None (never stop early) is allowed
        if value is not None and not (isinstance(value, numbers.Integral) and 0 <= value < vocab):
            raise ValueError(f"{name}={value!r} is not a token id of this model's vocabulary [0, {vocab}); pass the tokenizer's id.")


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick the next token from ``logits (B, V)``. ``temperature == 0`` is greedy (argmax).

    * temperature: divide logits by T (T<1 sharper, T>1 flatter);
    * top-k: keep the k most likely tokens;
    * top-p (nucleus): keep the smallest set of tokens whose probabilities sum to at least p.
    """
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # tokens after the nucleus is already full
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@_decoding
def generate(
    model,
    inputs: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = 2,
    pad_id: int = 0,
    bos_id: int = 1,
    use_cache: bool = True,
    prefix_lm: bool = False,
    generator: torch.Generator | None = None,
    fast_path: bool = True,
) -> Tensor:
    """Autoregressive decoding; returns the new tokens ``(B, ≤ max_new_tokens)``.

    ``inputs``: the prompt ``(B, P)`` for a :class:`DecoderOnly` (all prompts of one length),
    or the source ``(B, S)`` (padded) for an :class:`EncoderDecoder`. Defaults to greedy
    (``temperature=0``). After a sequence emits ``eos_id`` it is padded with ``pad_id``.
    ``fast_path=False`` runs every cached step through the model's forward pass instead of
    :class:`~course_lib.fast_decode.FlatDecoder` (the tokens are the same).
    """
    _check_decoding(model, inputs, max_new_tokens, eos_id=eos_id, pad_id=pad_id, bos_id=bos_id)
    _check_sampling(temperature, top_k, top_p, generator)
    if max_new_tokens == 0:
        return inputs.new_empty(inputs.shape[0], 0)
    was_training = model.training
    if was_training:  # (eval() walks every submodule: skip it when there is nothing to switch)
        model.eval()
    session = DecodingSession(model, inputs, use_cache=use_cache, bos_id=bos_id, prefix_lm=prefix_lm, fast_path=fast_path)
    logits = session.start()
    done = torch.zeros(inputs.shape[0], dtype=torch.bool, device=inputs.device)
    out = []
    for i in range(max_new_tokens):
        token = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if eos_id is not None:
            token = token.masked_fill(done, pad_id)  # finished rows emit padding
            done |= token == eos_id
        out.append(token)
        if eos_id is not None and bool(done.all()):
            break
        if i + 1 < max_new_tokens:
            logits = session.step(token)
    if was_training:
        model.train()
    return torch.stack(out, dim=1)


def beam_step(scores: Tensor, logp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of beam search: extend every beam by every token and keep the best ``K``.

    ``scores (B, K)``: total log-probability of each beam so far; ``logp (B*K, V)``: next-token
    log-probabilities of every beam (rows ``b*K ... b*K + K-1`` belong to input ``b``). A candidate
    scores ``scores[b, k] + logp[b*K + k, v]`` (log-probabilities add up). Returns
    ``(new_scores, beam, token)``, each ``(B, K)``, best first: candidate ``c`` of the flattened
    ``K*V`` is beam ``c // V``, token ``c % V``.
    """
    B, K = scores.shape
    V = logp.shape[-1]
    total = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
    new_scores, flat = total.topk(K, dim=-1)
    return new_scores, flat // V, flat % V


@_decoding
def beam_search(
    model,
    inputs: Tensor,
    max_new_tokens: int,
    *,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    eos_id: int = 2,
    pad_id: int = 0,
    bos_id: int = 1,
    use_cache: bool = True,
    prefix_lm: bool = False,
    fast_path: bool = True,
) -> Tensor:
    """Beam search; returns the best hypothesis per input ``(B, ≤ max_new_tokens)``.

    Keeps ``beam_size`` partial outputs per input, ranked by total log-probability; a finished
    beam (one that produced EOS) is carried along unchanged. The winner maximises
    ``log P(y) / len(y) ** length_penalty`` (length normalisation; 0 = none).
    ``beam_size=1`` is exactly greedy decoding. ``fast_path`` as in :func:`generate`.
    """
    _check_decoding(model, inputs, max_new_tokens, beam_size=beam_size, length_penalty=length_penalty,
                    eos_id=eos_id, pad_id=pad_id, bos_id=bos_id)
    if max_new_tokens == 0:
        return inputs.new_empty(inputs.shape[0], 0)
    was_training = model.training
    model.eval()
    B, K = inputs.shape[0], beam_size
    device = inputs.device
    session = DecodingSession(model, inputs.repeat_interleave(K, dim=0), use_cache=use_cache, bos_id=bos_id, prefix_lm=prefix_lm,
                              fast_path=fast_path)
    logp = F.log_softmax(session.start().float(), dim=-1)  # (B*K, V)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    seqs = torch.empty(B * K, 0, dtype=torch.long, device=device)
    done = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    for i in range(max_new_tokens):
        # a finished beam may only "emit" padding, at no cost, so its score stays fixed
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, pad_id] = 0.0
        logp = torch.where(done[:, None], frozen, logp)
        scores, beam, token = beam_step(scores, logp)  # each (B, K)
        rows = (torch.arange(B, device=device)[:, None] * K + beam).view(-1)
        token = token.view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), token[:, None]], dim=1)
        done, lengths = done.index_select(0, rows), lengths.index_select(0, rows)
        lengths = lengths + (~done).float()
        done = done | (token == eos_id)
        if bool(done.all()) or i + 1 == max_new_tokens:
            break
        session.reorder(rows)
        logp = F.log_softmax(session.step(token).float(), dim=-1)
    norm = scores.view(-1) / lengths.clamp(min=1.0) ** length_penalty
    best = norm.view(B, K).argmax(dim=-1)
    model.train(was_training)
    return seqs.view(B, K, -1)[torch.arange(B, device=device), best]

"""The three training objectives, exactly as the formulas read.

    MLM     : L = − Σ_{t ∈ M} log P(x_t | x_{\\M})            (only the corrupted positions M)
    CLM     : L = − Σ_t log P(x_t | x_{<t})                  (logits at t predict the token at t+1)
    seq2seq : L = − Σ_t log P(y_t | y_{<t}, Enc(x))          (teacher forcing: decoder input = BOS + y shifted right)

Each returns the *mean* over the counted tokens (the sum divided by their number), so losses
of batches with different amounts of padding are comparable. ``IGNORE = -100`` marks positions
that do not count (PyTorch's ``ignore_index``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100


def _check_logits(logits: Tensor, targets: Tensor, name: str, label_smoothing: float = 0.0) -> None:
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"{name}: logits must be (B, T, V) and targets (B, T) with the same B and T; "
            f"got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}."
        )
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"{name}: targets are token ids, an integer tensor; got dtype {targets.dtype} (convert with .long()).")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing is a fraction in [0, 1] (0.1 is typical); got {label_smoothing!r}.")


def _cross_entropy(logits: Tensor, targets: Tensor, name: str, label_smoothing: float) -> Tensor:
    """Mean cross-entropy of ``logits (N, V)`` against ``targets (N,)``, ``IGNORE`` skipped. A target
    outside the vocabulary is explained here (on the CPU PyTorch raises; reading the range back on a
    GPU would make every training step wait, so there it is not checked)."""
    try:
        return F.cross_entropy(logits, targets, ignore_index=IGNORE, label_smoothing=label_smoothing)
    except (IndexError, RuntimeError):
        bad = targets[(targets != IGNORE) & ((targets < 0) | (targets >= logits.shape[-1]))]
        if not bad.numel():
            raise
        raise ValueError(f"{name}: target id {int(bad[0])} is outside the vocabulary [0, {logits.shape[-1]}); targets are "
                         f"token ids, with {IGNORE} (IGNORE) marking positions that do not count.") from None


def mlm_corrupt(
    tokens: Tensor,
    vocab_size: int,
    mask_id: int,
    *,
    p: float = 0.15,
    special_ids: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption. Choose each non-special position with probability ``p`` (15%);
    of the chosen: 80% -> ``mask_id``, 10% -> a random non-special token, 10% unchanged.

    Returns ``(inputs, labels)``, both ``(B, T)``; ``labels`` holds the original token at
    chosen positions and ``IGNORE`` elsewhere.
    """
    if tokens.is_floating_point():
        raise TypeError(f"mlm_corrupt: tokens are token ids, an integer tensor; got dtype {tokens.dtype} (convert with .long()).")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"mlm_corrupt: p is the fraction of positions to corrupt, in [0, 1] (BERT: 0.15); got {p!r}.")
    lo = max(special_ids) + 1 if len(special_ids) else 0
    if vocab_size <= lo:
        raise ValueError(f"mlm_corrupt: vocab_size={vocab_size} leaves no ordinary token to draw after the special ids "
                         f"{tuple(special_ids)}; pass the model's vocab_size.")
    device = tokens.device
    rand = lambda: torch.rand(tokens.shape, generator=generator).to(device)
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in special_ids:
        special |= tokens == s
    chosen = (rand() < p) & ~special
    r = rand()
    to_mask = chosen & (r < 0.8)
    to_random = chosen & (r >= 0.8) & (r < 0.9)  # the last 10% stay unchanged
    random_tokens = torch.randint(lo, vocab_size, tokens.shape, generator=generator).to(device)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_tokens, inputs)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    return inputs, labels


def mlm_loss(logits: Tensor, labels: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over the corrupted positions only (``labels != IGNORE``). ``logits (B, T, V)``."""
    _check_logits(logits, labels, "mlm_loss", label_smoothing)
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0  # nothing was masked: zero loss, still differentiable
    return _cross_entropy(logits.flatten(0, 1), labels.flatten(), "mlm_loss", label_smoothing)


def clm_loss(
    logits: Tensor,
    tokens: Tensor,
    *,
    pad_id: int | None = 0,
    loss_mask: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Next-token loss with the shift inside: ``logits[:, t]`` is scored against ``tokens[:, t+1]``.

    ``tokens (B, T)`` is the same sequence the model read. ``loss_mask (B, T)`` (bool), if
    given, says which *tokens* are targets (e.g. only the translation, not the source prompt).
    """
    _check_logits(logits, tokens, "clm_loss", label_smoothing)
    if loss_mask is not None and loss_mask.shape != tokens.shape:
        raise ValueError(f"clm_loss: loss_mask must have the shape of tokens {tuple(tokens.shape)}; got {tuple(loss_mask.shape)}.")
    targets = tokens[:, 1:].clone()  # token t+1 is the answer for position t
    if pad_id is not None:
        targets[targets == pad_id] = IGNORE
    if loss_mask is not None:
        targets[~loss_mask[:, 1:].bool()] = IGNORE
    if not (targets != IGNORE).any():
        return logits.sum() * 0.0  # no token to predict: zero loss, still differentiable (not NaN)
    return _cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), "clm_loss", label_smoothing)


def shift_right(targets: Tensor, bos_id: int) -> Tensor:
    """Teacher forcing's decoder input: ``[BOS, y_1, …, y_{T-1}]`` from ``targets [y_1, …, y_T]`` (B, T)."""
    if targets.dim() != 2:
        raise ValueError(f"shift_right expects targets of shape (B, T); got shape {tuple(targets.shape)} (one sequence: targets[None]).")
    bos = torch.full_like(targets[:, :1], bos_id)
    return torch.cat([bos, targets[:, :-1]], dim=1)


def seq2seq_loss(logits: Tensor, targets: Tensor, *, pad_id: int = 0, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of decoder logits ``(B, T, V)`` (computed from ``shift_right(targets)``)
    against ``targets (B, T)`` (ending in EOS, then padding, which is ignored, as is ``IGNORE``)."""
    _check_logits(logits, targets, "seq2seq_loss", label_smoothing)
    targets = targets.masked_fill(targets == pad_id, IGNORE)  # one ignore index for padding and IGNORE alike
    if not (targets != IGNORE).any():
        return logits.sum() * 0.0
    return _cross_entropy(logits.flatten(0, 1), targets.flatten(), "seq2seq_loss", label_smoothing)

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


def _check_logits(logits: Tensor, targets: Tensor, name: str) -> None:
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"{name}: logits must be (B, T, V) and targets (B, T) with the same B and T; "
            f"got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}."
        )


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
    device = tokens.device
    rand = lambda: torch.rand(tokens.shape, generator=generator).to(device)
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in special_ids:
        special |= tokens == s
    chosen = (rand() < p) & ~special
    r = rand()
    to_mask = chosen & (r < 0.8)
    to_random = chosen & (r >= 0.8) & (r < 0.9)  # the last 10% stay unchanged
    lo = max(special_ids) + 1 if len(special_ids) else 0
    random_tokens = torch.randint(lo, vocab_size, tokens.shape, generator=generator).to(device)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_tokens, inputs)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    return inputs, labels


def mlm_loss(logits: Tensor, labels: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over the corrupted positions only (``labels != IGNORE``). ``logits (B, T, V)``."""
    _check_logits(logits, labels, "mlm_loss")
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0  # nothing was masked: zero loss, still differentiable
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, label_smoothing=label_smoothing)


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
    _check_logits(logits, tokens, "clm_loss")
    targets = tokens[:, 1:].clone()  # token t+1 is the answer for position t
    if pad_id is not None:
        targets[targets == pad_id] = IGNORE
    if loss_mask is not None:
        targets[~loss_mask[:, 1:].bool()] = IGNORE
    if not (targets != IGNORE).any():
        return logits.sum() * 0.0  # no token to predict: zero loss, still differentiable (not NaN)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=IGNORE, label_smoothing=label_smoothing)


def shift_right(targets: Tensor, bos_id: int) -> Tensor:
    """Teacher forcing's decoder input: ``[BOS, y_1, …, y_{T-1}]`` from ``targets [y_1, …, y_T]`` (B, T)."""
    bos = torch.full_like(targets[:, :1], bos_id)
    return torch.cat([bos, targets[:, :-1]], dim=1)


def seq2seq_loss(logits: Tensor, targets: Tensor, *, pad_id: int = 0, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of decoder logits ``(B, T, V)`` (computed from ``shift_right(targets)``)
    against ``targets (B, T)`` (ending in EOS, then padding, which is ignored)."""
    _check_logits(logits, targets, "seq2seq_loss")
    if not (targets != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, label_smoothing=label_smoothing)

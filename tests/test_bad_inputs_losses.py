"""The losses follow their documentation: IGNORE (-100) is skipped by every loss that takes targets
(checked against a hand-written cross-entropy), and bad targets or settings get one clear sentence."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from bad_inputs import Bad, assert_refused, rows

from course_lib.losses import IGNORE, clm_loss, mlm_corrupt, mlm_loss, seq2seq_loss, shift_right

V = 24
torch.manual_seed(0)
LOGITS = torch.randn(2, 5, V)
TGT = torch.randint(6, V, (2, 5))
HOLES = TGT.clone()
HOLES[0, 3:] = IGNORE
HOLES[1, 1] = IGNORE


def reference(logits, targets):
    """Mean of -log softmax at the target over the positions that count (the formula, by hand)."""
    keep = targets != IGNORE
    logp = logits.log_softmax(-1)[keep]
    return -logp.gather(-1, targets[keep][:, None]).mean()


@pytest.mark.parametrize("loss", [
    lambda lg, t: seq2seq_loss(lg, t),
    lambda lg, t: mlm_loss(lg, t),
], ids=["seq2seq_loss", "mlm_loss"])
def test_ignore_index_is_skipped_by_every_loss_with_targets(loss):
    assert torch.allclose(loss(LOGITS, HOLES), reference(LOGITS, HOLES))
    assert torch.allclose(F.cross_entropy(LOGITS.flatten(0, 1), HOLES.flatten()), reference(LOGITS, HOLES))  # PyTorch agrees


def test_clm_and_seq2seq_skip_ignore_and_padding_alike():
    # clm_loss shifts inside: logits at t score token t+1
    assert torch.allclose(clm_loss(LOGITS, HOLES, pad_id=None), reference(LOGITS[:, :-1], HOLES[:, 1:]))
    padded = HOLES.masked_fill(HOLES == IGNORE, 0)  # the same holes written as padding (pad_id=0)
    assert torch.allclose(seq2seq_loss(LOGITS, padded), seq2seq_loss(LOGITS, HOLES))
    assert float(seq2seq_loss(LOGITS, torch.full((2, 5), IGNORE))) == 0.0  # nothing counts: 0, not NaN


TABLE = [
    Bad("seq2seq target >= vocab", lambda: seq2seq_loss(LOGITS, torch.full((2, 5), V)), ValueError, "target id 24 is outside the vocabulary"),
    Bad("mlm target >= vocab", lambda: mlm_loss(LOGITS, torch.full((2, 5), V + 3)), ValueError, "vocabulary [0, 24)"),
    Bad("clm target >= vocab", lambda: clm_loss(LOGITS, torch.full((2, 5), V + 1)), ValueError, "outside the vocabulary"),
    Bad("negative target", lambda: seq2seq_loss(LOGITS, torch.full((2, 5), -7)), ValueError, "target id -7"),
    Bad("float targets", lambda: seq2seq_loss(LOGITS, TGT.float()), TypeError, "integer tensor"),
    Bad("shape mismatch", lambda: clm_loss(LOGITS, TGT[:, :4]), ValueError, "same B and T"),
    Bad("label_smoothing=1.5", lambda: seq2seq_loss(LOGITS, TGT, label_smoothing=1.5), ValueError, "label_smoothing"),
    Bad("label_smoothing=-0.1", lambda: clm_loss(LOGITS, TGT, label_smoothing=-0.1), ValueError, "label_smoothing"),
    Bad("loss_mask of the wrong shape", lambda: clm_loss(LOGITS, TGT, loss_mask=torch.ones(2, 3, dtype=torch.bool)), ValueError, "loss_mask"),
    Bad("mlm_corrupt p=1.5", lambda: mlm_corrupt(TGT, V, 4, p=1.5), ValueError, "p is the fraction"),
    Bad("mlm_corrupt vocab_size too small", lambda: mlm_corrupt(TGT, 6, 4), ValueError, "vocab_size=6"),
    Bad("mlm_corrupt float tokens", lambda: mlm_corrupt(TGT.float(), V, 4), TypeError, "integer"),
    Bad("shift_right of one sequence", lambda: shift_right(TGT[0], 1), ValueError, "targets[None]"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row):
    assert_refused(row)


def test_mlm_corrupt_edge_rates():
    inputs, labels = mlm_corrupt(TGT, V, 4, p=0.0)
    assert torch.equal(inputs, TGT) and bool((labels == IGNORE).all())
    inputs, labels = mlm_corrupt(TGT, V, 4, p=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(labels, TGT)  # every (non-special) position chosen

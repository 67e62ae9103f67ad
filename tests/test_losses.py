"""Tests for course_lib.losses against hand loops over the seed formulas."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.losses import IGNORE, clm_loss, mlm_corrupt, mlm_loss, seq2seq_loss, shift_right


pytestmark = pytest.mark.usefixtures("one_torch_thread")

DT = torch.float64


def logits_for(B, T, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g, dtype=DT) * 2


def nll(logit_row, target):
    """-log softmax(logit_row)[target], by hand."""
    m = max(float(x) for x in logit_row)
    log_z = m + math.log(sum(math.exp(float(x) - m) for x in logit_row))
    return log_z - float(logit_row[target])


# ---------------------------------------------------------------- MLM
def test_mlm_loss_equals_hand_loop():
    logits = logits_for(2, 5, 7)
    labels = torch.tensor([[IGNORE, 3, IGNORE, IGNORE, 6], [0, IGNORE, IGNORE, 2, IGNORE]])
    terms = [nll(logits[b, t], int(labels[b, t])) for b in range(2) for t in range(5) if labels[b, t] != IGNORE]
    assert mlm_loss(logits, labels).item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)


def test_mlm_loss_ignores_unmasked_positions():
    logits = logits_for(2, 5, 7, seed=1)
    labels = torch.tensor([[IGNORE, 3, IGNORE, IGNORE, 6], [0, IGNORE, IGNORE, 2, IGNORE]])
    base = mlm_loss(logits, labels)
    changed = logits.clone()
    changed[0, 0] += 100 * torch.randn(7, dtype=DT)
    changed[1, 2] = -50.0
    assert mlm_loss(changed, labels).item() == pytest.approx(base.item(), abs=1e-12)
    changed[0, 1, 0] += 1.0  # a masked position does count
    assert mlm_loss(changed, labels).item() != pytest.approx(base.item(), abs=1e-6)
    # and gradients flow only into masked positions
    lg = logits.clone().requires_grad_()
    mlm_loss(lg, labels).backward()
    masked = labels != IGNORE
    assert lg.grad[~masked].abs().max() == 0
    assert bool((lg.grad[masked].abs().sum(-1) > 0).all())


def test_mlm_loss_nothing_masked_is_zero_and_differentiable():
    logits = logits_for(1, 3, 4).requires_grad_()
    loss = mlm_loss(logits, torch.full((1, 3), IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def test_mlm_loss_label_smoothing_matches_formula():
    eps, V = 0.1, 7
    logits = logits_for(2, 4, V, seed=2)
    labels = torch.tensor([[1, IGNORE, 4, IGNORE], [IGNORE, 6, IGNORE, 0]])
    terms = []
    for b in range(2):
        for t in range(4):
            y = int(labels[b, t])
            if y == IGNORE:
                continue
            logp = F.log_softmax(logits[b, t], -1)
            terms.append(-(1 - eps) * float(logp[y]) - eps / V * float(logp.sum()))
    assert mlm_loss(logits, labels, label_smoothing=eps).item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)


def test_mlm_corrupt_statistics():
    V, mask_id = 1000, 4
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(6, V, (400, 500), generator=g)  # 200k non-special tokens
    inputs, labels = mlm_corrupt(tokens, V, mask_id, generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE
    n = int(chosen.sum())
    assert abs(n / tokens.numel() - 0.15) < 0.01
    as_mask = (inputs == mask_id) & chosen
    unchanged = (inputs == tokens) & chosen
    randomised = chosen & ~as_mask & ~unchanged
    assert abs(int(as_mask.sum()) / n - 0.8) < 0.02
    # "unchanged" also catches the random replacements that drew the original token (1/994 of them)
    assert abs(int(unchanged.sum()) / n - 0.1) < 0.02
    assert abs(int(randomised.sum()) / n - 0.1) < 0.02
    # labels are the original tokens exactly at the chosen positions, and only there
    assert torch.equal(labels[chosen], tokens[chosen])
    assert bool((labels[~chosen] == IGNORE).all())
    # positions that were not chosen are untouched
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    # random replacements are never special tokens and stay in the vocabulary
    assert int(inputs[randomised].min()) >= 6 and int(inputs[randomised].max()) < V
    # the random replacements are spread over the vocabulary (not one token)
    assert inputs[randomised].unique().numel() > 500


def test_mlm_corrupt_never_touches_special_ids():
    V, mask_id = 50, 4
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, V, (200, 60), generator=g)  # about 12% specials (0..5)
    inputs, labels = mlm_corrupt(tokens, V, mask_id, p=0.9, generator=torch.Generator().manual_seed(4))
    special = tokens < 6
    assert int(special.sum()) > 1000
    assert torch.equal(inputs[special], tokens[special])
    assert bool((labels[special] == IGNORE).all())
    chosen = labels != IGNORE
    assert abs(int(chosen.sum()) / int((~special).sum()) - 0.9) < 0.02
    # the only special id that can appear at a chosen position is the mask token itself
    assert set(inputs[chosen & (inputs < 6)].unique().tolist()) <= {mask_id}


def test_mlm_corrupt_custom_special_ids():
    tokens = torch.arange(10).repeat(300, 1)
    inputs, labels = mlm_corrupt(tokens, 10, 1, p=0.5, special_ids=(1, 7), generator=torch.Generator().manual_seed(0))
    keep = (tokens == 1) | (tokens == 7)
    assert torch.equal(inputs[keep], tokens[keep])
    assert bool((labels[keep] == IGNORE).all())
    assert bool((labels[tokens == 0] != IGNORE).any())  # 0 is not special here


def test_mlm_corrupt_seeded_reproducibility():
    tokens = torch.randint(6, 100, (8, 30), generator=torch.Generator().manual_seed(0))
    a = mlm_corrupt(tokens, 100, 4, generator=torch.Generator().manual_seed(42))
    b = mlm_corrupt(tokens, 100, 4, generator=torch.Generator().manual_seed(42))
    c = mlm_corrupt(tokens, 100, 4, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))
    assert torch.equal(tokens, torch.randint(6, 100, (8, 30), generator=torch.Generator().manual_seed(0)))  # input not mutated


# ---------------------------------------------------------------- CLM
def clm_hand(logits, tokens, pad_id=0, loss_mask=None):
    terms = []
    B, T, _ = logits.shape
    for b in range(B):
        for t in range(T - 1):
            y = int(tokens[b, t + 1])
            if pad_id is not None and y == pad_id:
                continue
            if loss_mask is not None and not bool(loss_mask[b, t + 1]):
                continue
            terms.append(nll(logits[b, t], y))  # -log P(x_{t+1} | x_<=t)
    return sum(terms) / len(terms)


def test_clm_loss_equals_hand_loop_with_pads_ignored():
    tokens = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 3, 4, 5, 6, 2]])
    logits = logits_for(2, 6, 8, seed=5)
    assert clm_loss(logits, tokens).item() == pytest.approx(clm_hand(logits, tokens), abs=1e-12)
    # pad_id=None counts the pads too
    assert clm_loss(logits, tokens, pad_id=None).item() == pytest.approx(clm_hand(logits, tokens, pad_id=None), abs=1e-12)


def test_clm_loss_is_shifted():
    tokens = torch.tensor([[1, 5, 6, 2, 7], [1, 3, 4, 5, 6]])
    logits = logits_for(2, 5, 8, seed=6)
    unshifted = F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).item()
    assert clm_loss(logits, tokens).item() != pytest.approx(unshifted, abs=1e-3)
    # the last position predicts nothing: its logits do not matter
    changed = logits.clone()
    changed[:, -1] = torch.randn(2, 8, dtype=DT) * 10
    assert clm_loss(changed, tokens).item() == pytest.approx(clm_loss(logits, tokens).item(), abs=1e-12)
    # a perfect next-token predictor gets ~0 loss
    perfect = torch.full((2, 5, 8), -30.0, dtype=DT)
    for b in range(2):
        for t in range(4):
            perfect[b, t, tokens[b, t + 1]] = 30.0
    assert clm_loss(perfect, tokens).item() < 1e-20


def test_clm_loss_mask_restricts_to_target_tokens():
    # prompt "1 5 6 |" then target "7 8 2"
    tokens = torch.tensor([[1, 5, 6, 7, 8, 2, 0], [1, 3, 9, 9, 2, 0, 0]])
    loss_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    logits = logits_for(2, 7, 10, seed=7)
    got = clm_loss(logits, tokens, loss_mask=loss_mask).item()
    assert got == pytest.approx(clm_hand(logits, tokens, loss_mask=loss_mask), abs=1e-12)
    assert got != pytest.approx(clm_loss(logits, tokens).item(), abs=1e-4)
    # integer 0/1 loss masks work the same as bool
    assert clm_loss(logits, tokens, loss_mask=loss_mask.long()).item() == pytest.approx(got, abs=1e-12)
    # changing logits at prompt positions that predict prompt tokens does not change it
    changed = logits.clone()
    changed[0, 0:2] += 5.0  # positions 0,1 predict tokens 1,2 (prompt)
    assert clm_loss(changed, tokens, loss_mask=loss_mask).item() == pytest.approx(got, abs=1e-12)


def test_shift_right_hand_example():
    targets = torch.tensor([[7, 8, 9, 2], [5, 2, 0, 0]])
    assert shift_right(targets, bos_id=1).tolist() == [[1, 7, 8, 9], [1, 5, 2, 0]]
    assert shift_right(targets, bos_id=1).dtype == targets.dtype
    assert targets.tolist() == [[7, 8, 9, 2], [5, 2, 0, 0]]  # not modified in place


def test_seq2seq_loss_equals_hand_loop_with_padding_ignored():
    targets = torch.tensor([[7, 8, 9, 2], [5, 2, 0, 0]])
    logits = logits_for(2, 4, 11, seed=8)
    terms = [nll(logits[b, t], int(targets[b, t])) for b in range(2) for t in range(4) if targets[b, t] != 0]
    assert len(terms) == 6
    assert seq2seq_loss(logits, targets).item() == pytest.approx(sum(terms) / 6, abs=1e-12)
    # a different pad id
    terms = [nll(logits[b, t], int(targets[b, t])) for b in range(2) for t in range(4) if targets[b, t] != 2]
    assert seq2seq_loss(logits, targets, pad_id=2).item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_formula(eps):
    V = 6
    targets = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])
    logits = logits_for(2, 4, V, seed=9)
    terms = []
    for b in range(2):
        for t in range(4):
            y = int(targets[b, t])
            if y == 0:
                continue
            logp = F.log_softmax(logits[b, t], -1)
            # smoothed target: (1 - eps) one-hot + eps / V uniform
            terms.append(-sum(((1 - eps) * (c == y) + eps / V) * float(logp[c]) for c in range(V)))
    expected = sum(terms) / len(terms)
    assert seq2seq_loss(logits, targets, label_smoothing=eps).item() == pytest.approx(expected, abs=1e-12)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0, label_smoothing=eps)
    assert seq2seq_loss(logits, targets, label_smoothing=eps).item() == pytest.approx(ref.item(), abs=1e-12)
    # clm_loss supports the same smoothing: shifting the seq2seq example by one gives the same number
    tokens = torch.cat([torch.ones(2, 1, dtype=torch.long), targets], 1)
    padded_logits = torch.cat([logits, torch.zeros(2, 1, V, dtype=DT)], 1)
    assert clm_loss(padded_logits, tokens, label_smoothing=eps).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fn", [mlm_loss, clm_loss, seq2seq_loss])
def test_shape_mismatch_names_both_shapes(fn):
    with pytest.raises(ValueError) as e:
        fn(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))
    assert "(2, 5, 7)" in str(e.value) and "(2, 4)" in str(e.value)
    with pytest.raises(ValueError, match=r"\(10, 7\)"):
        fn(torch.zeros(10, 7), torch.zeros(10, dtype=torch.long))

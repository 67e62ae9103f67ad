"""Tests for course_lib.train: schedule, data order, learning, exact resume, checkpoints, DDP."""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from course_lib.train import (
    TrainConfig,
    _local_batch_size,
    batch_indices,
    load_checkpoint,
    lr_at,
    param_groups,
    save_checkpoint,
    train,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers
def make_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    y = (x @ w + 0.1 * torch.randn(n, generator=g)).unsqueeze(1)
    return [(x[i], y[i]) for i in range(n)]


def make_model(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def noisy_collate(examples):
    """Uses Python's `random` and torch's RNG, so resume must restore both."""
    x = torch.stack([e[0] for e in examples])
    y = torch.stack([e[1] for e in examples])
    return x + 0.01 * random.random() + 0.01 * torch.randn_like(x), y


def cfg_for(**kw):
    base = dict(steps=12, batch_size=8, lr=1e-2, weight_decay=0.1, warmup_steps=5,
                decay="cosine", min_lr_ratio=0.1, grad_clip=1.0, eval_every=4, log_every=1,
                ckpt_path=None, ckpt_every=None, seed=3, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------- schedule
def test_lr_at_hand_values():
    c = TrainConfig(steps=10, lr=1.0, warmup_steps=4, decay="cosine", min_lr_ratio=0.1)
    assert [lr_at(s, c) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, c) == pytest.approx(1.0)  # decay starts at progress 0
    assert lr_at(6, c) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3)))  # 0.775
    assert lr_at(7, c) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert lr_at(10, c) == pytest.approx(0.1)  # reaches min_lr at step == steps
    lin = TrainConfig(steps=10, lr=2.0, warmup_steps=4, decay="linear", min_lr_ratio=0.1)
    assert lr_at(6, lin) == pytest.approx(2.0 * (1 - 0.9 / 3))  # 1.4
    assert lr_at(10, lin) == pytest.approx(0.2)
    flat = TrainConfig(steps=10, lr=0.5, warmup_steps=2, decay="none")
    assert [lr_at(s, flat) for s in (0, 1, 2, 9)] == pytest.approx([0.25, 0.5, 0.5, 0.5])
    assert lr_at(0, TrainConfig(steps=10, lr=1.0, warmup_steps=0)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TrainConfig(decay="step")


def test_scheduler_in_train_follows_lr_at():
    c = cfg_for(steps=9, warmup_steps=3, eval_every=None)
    hist = train(make_model(), mse, make_data(), c)
    assert [r["lr"] for r in hist] == pytest.approx([lr_at(s, c) for s in range(9)])


# ---------------------------------------------------------------- data order
def test_batch_indices_each_example_once_per_epoch_and_deterministic():
    n, bs, seed = 10, 4, 7
    stream = torch.cat([batch_indices(s, n, bs, seed) for s in range(5)])  # 20 = 2 epochs
    for e in range(2):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
        expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))
        assert torch.equal(stream[e * n:(e + 1) * n], expected)
    assert not torch.equal(stream[:n], stream[n:])  # reshuffled every epoch
    for s in range(5):
        assert torch.equal(batch_indices(s, n, bs, seed), batch_indices(s, n, bs, seed))
    assert batch_indices(2, n, bs, seed).dtype == torch.long
    # step 2 straddles the epoch boundary: last 2 of epoch 0, first 2 of epoch 1
    assert torch.equal(batch_indices(2, n, bs, seed), stream[8:12])
    # large step: computed directly, no replay
    big = batch_indices(10**6, n, bs, seed)
    e = (10**6 * bs) // n
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))
    assert torch.equal(big, perm[(10**6 * bs) % n:(10**6 * bs) % n + bs])


def test_batch_indices_give_full_batches_when_steps_times_batch_exceed_the_data():
    """Practice 07's loop: 100 steps of 16 from 571 chunks (a plain slice is empty from step 36 on)."""
    n, bs, steps = 571, 16, 100
    batches = [batch_indices(s, n, bs, seed=0) for s in range(steps)]
    assert all(len(b) == bs and 0 <= int(b.min()) and int(b.max()) < n for b in batches)
    stream = torch.cat(batches)
    for e in range(steps * bs // n):  # every complete epoch holds each chunk exactly once
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))


def test_global_batch_must_divide_world_size():
    assert _local_batch_size(8, 2) == 4
    with pytest.raises(ValueError, match="divisible"):
        _local_batch_size(7, 2)


def test_weight_decay_only_on_matrices():
    m = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = param_groups(m, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(m[1].weight)}
    assert len(no_decay["params"]) == 4  # embedding, linear bias, norm weight and bias


# ---------------------------------------------------------------- learning
def test_loss_decreases_and_evaluate_runs_at_right_steps():
    data = make_data(64)
    xs = torch.stack([d[0] for d in data])
    ys = torch.stack([d[1] for d in data])
    calls = []

    def evaluate(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"val_mse": nn.functional.mse_loss(model(xs), ys).item()}

    def loss_fn(model, batch):
        assert model.training  # back in train mode after every evaluate
        return mse(model, batch)

    c = cfg_for(steps=50, batch_size=16, lr=3e-2, warmup_steps=5, eval_every=20, log_every=10)
    hist = train(make_model(dropout=0.0), loss_fn, data, c, evaluate=evaluate)
    assert [r["step"] for r in hist] == [10, 20, 30, 40, 50]
    assert [r["step"] for r in hist if "val_mse" in r] == [20, 40, 50]  # every 20 and the end
    assert calls == [(False, False)] * 3  # eval mode, no grad
    assert hist[-1]["loss"] < 0.25 * hist[0]["loss"]
    assert hist[-1]["val_mse"] < hist[0]["loss"]
    assert all(r["elapsed_s"] >= 0 for r in hist)


# ---------------------------------------------------------------- exact resume
class Interrupt(Exception):
    pass


@pytest.mark.parametrize("k", [3, 8])  # in the middle of warm-up (5 steps), and after it
def test_resume_is_exact(tmp_path, k):
    data = make_data()
    probe = torch.stack([d[0] for d in data[:8]])

    def evaluate(model):
        return {"probe": model(probe).sum().item()}

    straight_model = make_model(seed=0)
    straight = train(straight_model, mse, data, cfg_for(log_every=2), collate=noisy_collate, evaluate=evaluate)

    ckpt = tmp_path / "run.pt"
    cfg = cfg_for(ckpt_path=str(ckpt), ckpt_every=k, log_every=2)  # k=3: mid log window
    calls = {"n": 0}

    def crashing_loss(model, batch):  # a Colab disconnect during step k+1
        calls["n"] += 1
        if calls["n"] == k + 1:
            raise Interrupt
        return mse(model, batch)

    with pytest.raises(Interrupt):
        train(make_model(seed=0), crashing_loss, data, cfg, collate=noisy_collate,
              evaluate=evaluate)
    assert torch.load(ckpt, weights_only=True)["step"] == k

    # fresh objects (different init, scrambled global RNG) continue from the checkpoint
    random.seed(999)
    torch.manual_seed(999)
    resumed_model = make_model(seed=1)
    resumed = train(resumed_model, mse, data, cfg, collate=noisy_collate, evaluate=evaluate)

    for (name, a), b in zip(straight_model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(a, b), name
    strip = lambda h: [{k2: v for k2, v in r.items() if k2 != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(straight)  # losses, lrs and eval metrics bit-identical
    assert [r["step"] for r in resumed] == [2, 4, 6, 8, 10, 12]

    # a finished run resumes to a no-op returning the whole history
    again = train(make_model(seed=2), mse, data, cfg, collate=noisy_collate)
    assert strip(again) == strip(straight)


# ---------------------------------------------------------------- checkpoint files
def test_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    model = make_model()
    c = cfg_for(steps=4, ckpt_path=str(path), ckpt_every=2)
    hist = train(model, mse, make_data(), c)
    ck = torch.load(path, weights_only=True)  # nothing arbitrary is unpickled
    assert ck["step"] == 4 and ck["history"] == hist
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "step", "history", "cfg", "rng"}
    assert ck["cfg"]["batch_size"] == 8
    assert not [p for p in path.parent.iterdir() if p.name != "ck.pt"]  # no temp files left
    fresh = make_model(seed=5)
    out = load_checkpoint(path, fresh)
    assert out["step"] == 4
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_state_dict_mismatch_names_the_keys(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, make_model())
    other = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))  # no Dropout slot
    with pytest.raises(ValueError, match=r"does not match this model.*missing keys.*2\.weight"
                                         r".*unexpected keys.*3\.weight"):
        load_checkpoint(path, other)
    wider = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 1))
    with pytest.raises(ValueError, match=r"shape mismatches.*0\.weight: checkpoint \(16, 4\) "
                                         r"vs model \(32, 4\)"):
        load_checkpoint(path, wider)


# ---------------------------------------------------------------- DDP
def ddp_cfg(ckpt_path=None):
    return cfg_for(steps=5, batch_size=8, warmup_steps=2, eval_every=None, log_every=1,
                   ckpt_path=ckpt_path, ckpt_every=2)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available")
def test_ddp_two_processes_match_single_process(tmp_path):
    out, ckpt = tmp_path / "ddp.pt", tmp_path / "ddp_ckpt.pt"
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        import torch.distributed as dist
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from test_train import make_data, make_model, mse, ddp_cfg
        from course_lib.train import train

        model = make_model(seed=0, dropout=0.0)
        hist = train(model, mse, make_data(), ddp_cfg({str(ckpt)!r}))
        if dist.get_rank() == 0:
            torch.save({{"params": [p.detach() for p in model.parameters()],
                         "losses": [r["loss"] for r in hist]}}, {str(out)!r})
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        # --standalone: torchrun picks and holds its own rendezvous port (no free-port race)
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single = make_model(seed=0, dropout=0.0)
    hist = train(single, mse, make_data(), ddp_cfg())
    res = torch.load(out, weights_only=True)
    for a, b in zip(single.parameters(), res["params"]):
        torch.testing.assert_close(b, a.detach(), atol=1e-5, rtol=1e-4)
    assert res["losses"] == pytest.approx([r["loss"] for r in hist], rel=1e-4, abs=1e-5)
    ck = torch.load(ckpt, weights_only=True)  # written by rank 0 only, holds both ranks' RNG
    assert ck["step"] == 5 and len(ck["rng"]) == 2

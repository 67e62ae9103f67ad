"""course_lib.train with bad input: TrainConfig names the bad field; an unusable checkpoint is named
with the way out (never PyTorch's weights_only advice); output paths fail before training; SIGINT and
SIGTERM save the step just done, and the run resumes bit-identically; MPS trains in fp32 by default."""
from __future__ import annotations

import importlib
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from bad_inputs import Bad, assert_refused, rows

T = importlib.import_module("course_lib.train")  # the module (course_lib.train is also the function's name)
TC, train, save_checkpoint, load_checkpoint = T.TrainConfig, T.train, T.save_checkpoint, T.load_checkpoint


def make_data(n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return [(x[i], x[i].sum(0, keepdim=True)) for i in range(n)]


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def cfg(**kw) -> T.TrainConfig:
    return TC(**{"steps": 6, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "log_every": 2, "eval_every": None,
                 "ckpt_every": None, "seed": 1, "progress": False, "device": "cpu", **kw})


def run(ckpt, **kw):
    return train(make_model(), mse, make_data(), cfg(ckpt_path=str(ckpt), **kw))


def written(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def saved(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def truncated(path: Path) -> Path:
    run(path.with_name("full.pt"))
    blob = path.with_name("full.pt").read_bytes()
    return written(path, blob[: len(blob) // 2])


def config_table() -> list[Bad]:
    return [Bad(f"TrainConfig({f}={v!r})", lambda f=f, v=v: TC(**{f: v}), ValueError, f"TrainConfig.{f}")
             for f, v in [("steps", 0), ("steps", 2.5), ("batch_size", 0), ("batch_size", 8.0), ("lr", -1e-3), ("lr", float("nan")),
                          ("lr", 0.0), ("warmup_steps", -1), ("grad_clip", -1.0), ("ckpt_every", -10), ("eval_every", -1),
                          ("log_every", 0), ("weight_decay", -0.1), ("amp", "fp16"), ("decay", "exp"), ("min_lr_ratio", 2.0),
                          ("betas", (0.9, 1.5)), ("seed", "0")]]


@pytest.mark.parametrize("row", rows(config_table()))
def test_config_refused(row):
    assert_refused(row)


def test_config_zero_means_off():
    assert TC(ckpt_every=0).ckpt_every == 0 and TC(eval_every=0).eval_every == 0 and TC(grad_clip=0.0).grad_clip == 0.0


# the checkpoint rows need a folder: each builds its file under tmp_path when called
CHECKPOINTS = [
    ("empty file", lambda d: run(written(d / "empty.pt", b"")), T.CheckpointError, "'{d}/empty.pt' is empty"),
    ("random bytes", lambda d: run(written(d / "random.pt", os.urandom(300))), T.CheckpointError, "random.pt' is cut short"),
    ("a text file", lambda d: run(written(d / "text.pt", "hello\n")), T.CheckpointError, "text.pt"),
    ("JSON", lambda d: run(written(d / "j.pt", '{"step": 3}')), T.CheckpointError, "j.pt"),
    ("cut short", lambda d: run(truncated(d / "cut.pt")), T.CheckpointError, "cut.pt' is cut short"),
    ("a plain tensor", lambda d: run(saved(d / "tensor.pt", torch.ones(3))), T.CheckpointError, "tensor.pt' is not a checkpoint"),
    ("a dict without weights", lambda d: run(saved(d / "dict.pt", {"weights": torch.ones(3)})), T.CheckpointError, "no model weights"),
    ("a list", lambda d: run(saved(d / "list.pt", [1, 2, 3])), T.CheckpointError, "list.pt"),
    ("weights of another model", lambda d: run(saved(d / "other.pt", {"model": {"x": torch.ones(2)}, "step": 1})), ValueError,
     "does not match this model"),
    ("weights but no training state", lambda d: (save_checkpoint(d / "w.pt", make_model()), run(d / "w.pt")), T.CheckpointError,
     "no training state"),
    ("load_checkpoint of random bytes", lambda d: load_checkpoint(written(d / "r.pt", os.urandom(64)), make_model()),
     T.CheckpointError, "r.pt"),
    ("load_checkpoint of a missing file", lambda d: load_checkpoint(d / "nope.pt", make_model()), FileNotFoundError, "nope.pt"),
    ("ckpt_path is a folder", lambda d: run(d), ValueError, "is a folder; give a file name"),
    ("ckpt_path inside a file", lambda d: run(written(d / "afile", "x") / "c.pt"), ValueError, "afile' is a file, not a folder"),
    ("save_checkpoint to a folder", lambda d: save_checkpoint(d, make_model()), ValueError, "is a folder"),
    ("an empty dataset", lambda d: train(make_model(), mse, [], cfg()), ValueError, "the dataset is empty"),
    ("a set as dataset", lambda d: train(make_model(), mse, {1, 2}, cfg()), TypeError, "len() and [i]"),
    ("loss_fn returns a vector", lambda d: train(make_model(), lambda m, b: m(b[0]), make_data(), cfg()), ValueError, "0-dim"),
    ("loss_fn returns a float", lambda d: train(make_model(), lambda m, b: 1.0, make_data(), cfg()), ValueError, "got float"),
    ("evaluate returns a float", lambda d: train(make_model(), mse, make_data(), cfg(steps=1), evaluate=lambda m: 1.0), TypeError,
     "dict of metrics"),
    ("device 'gpu0'", lambda d: train(make_model(), mse, make_data(), cfg(device="gpu0")), ValueError, "'gpu0' is not a device name"),
]


@pytest.mark.parametrize("label, call, error, phrase", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_checkpoint_and_data_refused(tmp_path, label, call, error, phrase):
    message = assert_refused(Bad(label, lambda: call(tmp_path), error, phrase.format(d=tmp_path)))
    if error is T.CheckpointError and "load_checkpoint" not in label:
        assert "resume=False" in message and ("delete it" in message or "ckpt_path" in message)


def test_unwritable_folder_is_found_before_training(tmp_path, monkeypatch):
    if os.geteuid() == 0:  # root writes anywhere: simulate the read-only folder
        monkeypatch.setattr(T.tempfile, "NamedTemporaryFile", lambda **kw: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    else:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
    steps = []
    with pytest.raises(ValueError, match=r"cannot write the checkpoint .*ro/c\.pt.*cannot be written"):
        train(make_model(), lambda m, b: steps.append(1) or mse(m, b), make_data(), cfg(ckpt_path=str(tmp_path / "ro" / "c.pt")))
    assert steps == []  # refused before the first step, not at the first save


def test_fresh_start_replaces_an_unreadable_checkpoint(tmp_path):
    ckpt = written(tmp_path / "bad.pt", os.urandom(100))
    hist = train(make_model(), mse, make_data(), cfg(ckpt_path=str(ckpt)), resume=False)
    assert torch.load(ckpt, weights_only=True)["step"] == 6 and hist[-1]["step"] == 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("k", [1, 4])  # log_every=2: in the middle of a log window, and at its end
def test_a_signal_saves_the_step_and_the_run_resumes_bit_identically(tmp_path, sig, k):
    straight_model = make_model()
    straight = train(straight_model, mse, make_data(), cfg())
    # as in a terminal: the signal is handled (a test worker may have been started with SIGINT ignored)
    default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    before = signal.signal(sig, default)
    try:
        signalled_run(tmp_path, sig, k, straight_model, straight)
    finally:
        signal.signal(sig, before)


def test_an_ignored_signal_stays_ignored(tmp_path):
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started in the background
    try:
        calls = {"n": 0}

        def signalling_loss(model, batch):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return mse(model, batch)

        hist = train(make_model(), signalling_loss, make_data(), cfg(ckpt_path=str(tmp_path / "c.pt")))
        assert hist[-1]["step"] == 6 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def signalled_run(tmp_path, sig, k, straight_model, straight):
    before = signal.getsignal(sig)
    calls = {"n": 0}

    def signalling_loss(model, batch):  # the signal arrives in the middle of step k
        calls["n"] += 1
        if calls["n"] == k:
            os.kill(os.getpid(), sig)
        return mse(model, batch)

    ckpt = tmp_path / "run.pt"
    with pytest.raises(T.TrainingInterrupted) as info:
        train(make_model(), signalling_loss, make_data(), cfg(ckpt_path=str(ckpt)))
    assert (info.value.step, info.value.steps, info.value.path) == (k, 6, str(ckpt))
    assert isinstance(info.value, KeyboardInterrupt) and f"after step {k} of 6" in str(info.value)
    assert torch.load(ckpt, weights_only=True)["step"] == k  # the step just done, not the last periodic one
    assert signal.getsignal(sig) is before  # the handlers are put back

    random.seed(999)
    torch.manual_seed(999)
    resumed_model = make_model(seed=7)
    resumed = train(resumed_model, mse, make_data(), cfg(ckpt_path=str(ckpt)))
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    strip = lambda h: [{key: v for key, v in r.items() if key != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(straight)


def test_mps_trains_in_fp32_unless_asked(monkeypatch):
    mps, cuda = torch.device("mps"), torch.device("cuda")
    assert T._amp_for(mps, TC()) == (False, torch.float32)  # amp="auto": fp32 on MPS
    assert T._amp_for(mps, TC(amp="on")) == (True, torch.float16)  # the opt-in
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert T._amp_for(cuda, TC()) == (True, torch.float16)  # CUDA keeps autocast by default
    assert T._amp_for(torch.device("cpu"), TC(amp="on")) == (False, torch.float32)
    assert T._amp_for(cuda, TC(amp="off")) == (False, torch.float32)

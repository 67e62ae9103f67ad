"""Try bad and edge-case inputs across course_lib as a careful user would, and classify each outcome.

    python tools/bad_input_sweep.py            # counts per outcome and per area
    python tools/bad_input_sweep.py -v         # one line per case (area, name, outcome, message)
    python tools/bad_input_sweep.py -k ledger  # only the cases whose area or name contains "ledger"

Every case is either *bad* (the right answer is an error) or *valid but unusual* (the right answer is a
result, which the case checks). Outcomes:

* ``clear``   a bad input refused by a ``raise`` in course_lib (or, on the command line, one ``error:``
              line, exit status 2, no traceback), with a message that names what the case says it must;
* ``correct`` a valid input that gave the right result;
* ``raw``     an error from deep inside (PyTorch, json, Python itself), a command-line traceback, the
              command line's generic "--debug" fallback, a message that advises ``weights_only=False``,
              or any error for a valid input;
* ``silent``  a bad input accepted, or a valid input with a wrong result;
* ``hang``    no answer within the time limit.

This is a development tool (run before and after a change); the regression tests are the
table-driven ``tests/test_bad_inputs_*.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import linecache
import math
import os
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import course_lib  # noqa: E402
from course_lib import quiz as quiz_mod  # noqa: E402
from course_lib.config import ModelConfig  # noqa: E402

LIB = str(REPO / "course_lib")
RAW_PHRASES = ("weights_only=False", "run again with --debug", "Traceback (most recent call last)")


@dataclass
class Case:
    area: str
    name: str
    fn: Callable[[], Any]
    ok: Callable[[Any], bool] | None = None  # valid input: the check its result must pass
    names: str | None = None  # bad input: a phrase the message must contain to count as clear
    cli: bool = False


CASES: list[Case] = []


def bad(area: str, name: str, fn: Callable[[], Any], names: str | None = None) -> None:
    CASES.append(Case(area, name, fn, names=names))


def good(area: str, name: str, fn: Callable[[], Any], ok: Callable[[Any], bool]) -> None:
    CASES.append(Case(area, name, fn, ok=ok))


# ------------------------------------------------------------------------------------------ fixtures
TMP = Path(tempfile.mkdtemp(prefix="bad_input_sweep_"))
V = 24


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": V, "d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 32, **kw})


torch.manual_seed(0)
DEC = course_lib.DecoderOnly(cfg()).eval()
ED = course_lib.EncoderDecoder(cfg()).eval()
ENC = course_lib.EncoderOnly(cfg()).eval()
PROMPT = torch.tensor([[1, 7, 8, 9]])
SRC = torch.tensor([[7, 8, 9, 2]])


def tokens(*shape, hi=V) -> torch.Tensor:
    return torch.randint(6, hi, shape, generator=torch.Generator().manual_seed(0))


def write(name: str, data: bytes | str) -> Path:
    p = TMP / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


# ------------------------------------------------------------------------------------------ config
for field, value in [("vocab_size", 0), ("vocab_size", -5), ("vocab_size", 2.5), ("vocab_size", "24"),
                     ("d_model", 0), ("d_model", -16), ("d_model", 16.0), ("n_heads", 0), ("n_heads", -2),
                     ("n_heads", 2.0), ("n_layers", -1), ("n_layers", 1.5), ("n_enc_layers", -1), ("n_dec_layers", -2),
                     ("d_ff", 0), ("d_ff", -4), ("max_len", 0), ("max_len", -1), ("dropout", -0.1), ("dropout", 1.0),
                     ("dropout", 1.5), ("dropout", float("nan")), ("pad_id", -1), ("pad_id", V), ("pad_id", 1.0),
                     ("n_kv_heads", 0), ("norm_eps", -1e-5), ("vocab_size", True), ("rope_base", 0.0),
                     ("rel_buckets", 0), ("type_vocab_size", -1)]:
    bad("config", f"{field}={value!r}", lambda f=field, v=value: cfg(**{f: v}), names=field)
good("config", "n_layers=0 (no blocks)", lambda: course_lib.DecoderOnly(cfg(n_layers=0))(PROMPT),
     lambda out: out.shape == (1, 4, V))
good("config", "dropout=0.5", lambda: cfg(dropout=0.5), lambda c: c.dropout == 0.5)
good("config", "pad_id=V-1", lambda: cfg(pad_id=V - 1), lambda c: c.pad_id == V - 1)
good("config", "numpy int sizes", lambda: __import__("numpy") and cfg(d_model=__import__("numpy").int64(16)),
     lambda c: c.d_head == 8)

# ------------------------------------------------------------------------------------------ masks
bad("masks", "causal_mask(-1)", lambda: course_lib.causal_mask(-1), names="t_q")
bad("masks", "causal_mask(2.5)", lambda: course_lib.causal_mask(2.5), names="t_q")
bad("masks", "causal_mask(3, -1)", lambda: course_lib.causal_mask(3, -1))
bad("masks", "causal_mask('4')", lambda: course_lib.causal_mask("4"), names="t_q")
bad("masks", "prefix_mask(-2, 1)", lambda: course_lib.prefix_mask(-2, 1))
bad("masks", "prefix_mask(4, 1.5)", lambda: course_lib.prefix_mask(4, 1.5), names="prefix_len")
bad("masks", "prefix_mask(4, -1)", lambda: course_lib.prefix_mask(4, -1), names="prefix_len")
bad("masks", "padding_mask 1-D", lambda: course_lib.padding_mask(torch.tensor([1, 2, 0])))
bad("masks", "padding_mask float ids", lambda: course_lib.padding_mask(torch.tensor([[1.0, 0.0]])))
bad("masks", "combine_masks float", lambda: course_lib.combine_masks(torch.ones(2, 2)))
good("masks", "causal_mask(0)", lambda: course_lib.causal_mask(0), lambda m: m.shape == (0, 0))
good("masks", "causal_mask(2, 5)", lambda: course_lib.causal_mask(2, 5),
     lambda m: m.tolist() == [[True] * 4 + [False], [True] * 5])
good("masks", "prefix_mask(3, 5) prefix longer than t", lambda: course_lib.prefix_mask(3, 5), lambda m: bool(m.all()))
good("masks", "padding_mask all padding", lambda: course_lib.padding_mask(torch.zeros(1, 3, dtype=torch.long)),
     lambda m: not bool(m.any()))

# ------------------------------------------------------------------------------------------ attention
q = torch.randn(1, 2, 3, 4)
sdpa = course_lib.scaled_dot_product_attention
bad("attention", "q fp32, k fp16", lambda: sdpa(q, q.half(), q), names="dtype")
bad("attention", "q fp32, v fp64", lambda: sdpa(q, q, q.double()), names="dtype")
bad("attention", "integer q k v", lambda: sdpa(q.long(), q.long(), q.long()), names="dtype")
bad("attention", "q k d mismatch", lambda: sdpa(q, torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 5)))
bad("attention", "float mask", lambda: sdpa(q, q, q, torch.ones(3, 3)))
bad("attention", "mask wrong shape", lambda: sdpa(q, q, q, torch.ones(4, 4, dtype=torch.bool)))
bad("attention", "MHA given int tensor", lambda: course_lib.MultiHeadAttention(4, 2)(torch.ones(1, 3, 4, dtype=torch.long)),
    names="dtype")
bad("attention", "MHA wrong width", lambda: course_lib.MultiHeadAttention(4, 2)(torch.ones(1, 3, 5)))
bad("attention", "MHA d_model % heads", lambda: course_lib.MultiHeadAttention(6, 4))
good("attention", "fully masked row -> zeros", lambda: sdpa(q, q, q, torch.zeros(3, 3, dtype=torch.bool)),
     lambda out: bool((out == 0).all()))
good("attention", "fp64 everywhere", lambda: sdpa(q.double(), q.double(), q.double()), lambda out: out.dtype == torch.float64)

# ------------------------------------------------------------------------------------------ models / embedding
for name, fn in [
    ("decoder: 0 tokens", lambda: DEC(torch.zeros(1, 0, dtype=torch.long))),
    ("decoder: batch of 0", lambda: DEC(torch.zeros(0, 4, dtype=torch.long))),
    ("encoder: 0 tokens", lambda: ENC(torch.zeros(2, 0, dtype=torch.long))),
    ("encdec: empty source", lambda: ED(torch.zeros(1, 0, dtype=torch.long), PROMPT)),
    ("encdec: empty target", lambda: ED(SRC, torch.zeros(1, 0, dtype=torch.long))),
]:
    bad("models", name, fn, names="empty")
bad("models", "float token ids", lambda: DEC(PROMPT.float()))
bad("models", "1-D token ids", lambda: DEC(PROMPT[0]))
bad("models", "id >= vocab", lambda: DEC(torch.tensor([[1, V]])), names="vocab_size")
bad("models", "negative id", lambda: DEC(torch.tensor([[1, -3]])), names="vocab_size")
bad("models", "longer than max_len (learned)", lambda: DEC(tokens(1, 40)), names="max_len")
bad("models", "prefix_len tensor wrong batch", lambda: DEC(tokens(2, 5), prefix_len=torch.tensor([1, 2, 3])))

# ------------------------------------------------------------------------------------------ generation
gen, beam = course_lib.generate, course_lib.beam_search
for name, kw, phrase in [
    ("temperature=-1", dict(temperature=-1.0), "temperature"),
    ("temperature=nan", dict(temperature=float("nan")), "temperature"),
    ("temperature=inf", dict(temperature=float("inf")), "temperature"),
    ("top_k=0", dict(temperature=1.0, top_k=0), "top_k"),
    ("top_k=-3", dict(temperature=1.0, top_k=-3), "top_k"),
    ("top_k=2.5", dict(temperature=1.0, top_k=2.5), "top_k"),
    ("top_p=0", dict(temperature=1.0, top_p=0.0), "top_p"),
    ("top_p=1.5", dict(temperature=1.0, top_p=1.5), "top_p"),
    ("top_p=-0.2", dict(temperature=1.0, top_p=-0.2), "top_p"),
    ("top_p=nan", dict(temperature=1.0, top_p=float("nan")), "top_p"),
    ("greedy with top_k", dict(top_k=5), "top_k"),
    ("greedy with top_p", dict(top_p=0.9), "top_p"),
]:
    bad("generation", f"generate {name}", lambda kw=kw: gen(DEC, PROMPT, 3, **kw), names=phrase)
for name, args, kw, phrase in [
    ("max_new_tokens=-1", (-1,), {}, "max_new_tokens"),
    ("max_new_tokens=2.5", (2.5,), {}, "max_new_tokens"),
    ("max_new_tokens=None", (None,), {}, "max_new_tokens"),
]:
    bad("generation", f"generate {name}", lambda a=args: gen(DEC, PROMPT, *a), names=phrase)
    bad("generation", f"beam_search {name}", lambda a=args: beam(DEC, PROMPT, *a), names=phrase)
for k in (0, -1, 2.5):
    bad("generation", f"beam_size={k}", lambda k=k: beam(DEC, PROMPT, 3, beam_size=k), names="beam_size")
bad("generation", "beam length_penalty=nan", lambda: beam(DEC, PROMPT, 3, length_penalty=float("nan")), names="length_penalty")
for name, fn in [
    ("generate empty prompt", lambda: gen(DEC, torch.zeros(1, 0, dtype=torch.long), 3)),
    ("generate batch of 0", lambda: gen(DEC, torch.zeros(0, 3, dtype=torch.long), 3)),
    ("generate empty source (encdec)", lambda: gen(ED, torch.zeros(1, 0, dtype=torch.long), 3)),
    ("beam_search empty prompt", lambda: beam(DEC, torch.zeros(1, 0, dtype=torch.long), 3)),
    ("beam_search empty source", lambda: beam(ED, torch.zeros(2, 0, dtype=torch.long), 3)),
]:
    bad("generation", name, fn, names="empty")
bad("generation", "1-D prompt", lambda: gen(DEC, PROMPT[0], 3), names="(B")
bad("generation", "float prompt", lambda: gen(DEC, PROMPT.float(), 3))
bad("generation", "encoder-only model", lambda: gen(ENC, PROMPT, 3))
bad("generation", "prompt longer than max_len", lambda: gen(DEC, tokens(1, 40), 3), names="max_len")
bad("generation", "prompt + new tokens beyond max_len", lambda: gen(DEC, tokens(1, 30), 10), names="max_len")
bad("generation", "sample_next temperature=-1", lambda: course_lib.sample_next(torch.randn(1, V), temperature=-1.0), names="temperature")
bad("generation", "sample_next top_k=0", lambda: course_lib.sample_next(torch.randn(1, V), temperature=1.0, top_k=0), names="top_k")
good("generation", "generate max_new_tokens=0", lambda: gen(DEC, PROMPT, 0), lambda out: out.shape == (1, 0))
good("generation", "beam_search max_new_tokens=0", lambda: beam(DEC, PROMPT, 0), lambda out: out.shape == (1, 0))
good("generation", "encdec generate max_new_tokens=0", lambda: gen(ED, SRC, 0), lambda out: out.shape == (1, 0))
good("generation", "top_k > vocab", lambda: gen(DEC, PROMPT, 3, temperature=1.0, top_k=1000,
                                                generator=torch.Generator().manual_seed(0)), lambda out: out.shape[1] <= 3)
good("generation", "top_p=1.0", lambda: gen(DEC, PROMPT, 3, temperature=1.0, top_p=1.0), lambda out: out.shape[1] <= 3)
good("generation", "beam_size=1 equals greedy", lambda: (beam(DEC, PROMPT, 5, beam_size=1), gen(DEC, PROMPT, 5)),
     lambda pair: pair[0].tolist() == pair[1].tolist())
good("generation", "temperature=0.0 with top_k=None", lambda: gen(DEC, PROMPT, 3, temperature=0.0), lambda out: out.shape[1] <= 3)

# ------------------------------------------------------------------------------------------ losses
from course_lib import losses as L  # noqa: E402
logits = torch.randn(2, 5, V)
tgt = tokens(2, 5)
tgt_ign = tgt.clone()
tgt_ign[0, 3:] = -100


def _ref_ce(lg, t):
    keep = t != -100
    return torch.nn.functional.cross_entropy(lg[keep], t[keep])


good("losses", "seq2seq_loss ignores -100", lambda: L.seq2seq_loss(logits, tgt_ign),
     lambda out: torch.allclose(out, _ref_ce(logits, tgt_ign)))
good("losses", "mlm_loss ignores -100", lambda: L.mlm_loss(logits, tgt_ign), lambda out: torch.allclose(out, _ref_ce(logits, tgt_ign)))
good("losses", "clm_loss target -100", lambda: L.clm_loss(logits, tgt_ign, pad_id=None),
     lambda out: torch.allclose(out, _ref_ce(logits[:, :-1], tgt_ign[:, 1:])))
good("losses", "seq2seq_loss all padding -> 0", lambda: L.seq2seq_loss(logits, torch.zeros(2, 5, dtype=torch.long)),
     lambda out: float(out) == 0.0)
bad("losses", "seq2seq target >= V", lambda: L.seq2seq_loss(logits, torch.full((2, 5), V)), names="vocab")
bad("losses", "mlm target >= V", lambda: L.mlm_loss(logits, torch.full((2, 5), V + 3)), names="vocab")
bad("losses", "clm target >= V", lambda: L.clm_loss(logits, torch.full((2, 5), V + 1)), names="vocab")
bad("losses", "seq2seq negative target", lambda: L.seq2seq_loss(logits, torch.full((2, 5), -7)), names="-7")
bad("losses", "float targets", lambda: L.seq2seq_loss(logits, tgt.float()), names="targets")
bad("losses", "shape mismatch", lambda: L.clm_loss(logits, tokens(2, 4)))
bad("losses", "label_smoothing=1.5", lambda: L.seq2seq_loss(logits, tgt, label_smoothing=1.5), names="label_smoothing")
bad("losses", "label_smoothing=-0.1", lambda: L.clm_loss(logits, tgt, label_smoothing=-0.1), names="label_smoothing")
bad("losses", "mlm_corrupt p=1.5", lambda: L.mlm_corrupt(tgt, V, 4, p=1.5), names="p")
bad("losses", "mlm_corrupt p=-0.1", lambda: L.mlm_corrupt(tgt, V, 4, p=-0.1), names="p")
bad("losses", "mlm_corrupt vocab too small", lambda: L.mlm_corrupt(tgt, 6, 4), names="vocab_size")
bad("losses", "loss_mask wrong shape", lambda: L.clm_loss(logits, tgt, loss_mask=torch.ones(2, 3, dtype=torch.bool)), names="loss_mask")
bad("losses", "logits 2-D", lambda: L.mlm_loss(logits[0], tgt[0]))
good("losses", "mlm_corrupt p=0 -> nothing chosen", lambda: L.mlm_corrupt(tgt, V, 4, p=0.0),
     lambda out: bool((out[1] == -100).all()) and torch.equal(out[0], tgt))

# ------------------------------------------------------------------------------------------ train: config
TC = course_lib.TrainConfig
for field, value in [("steps", 0), ("steps", -5), ("steps", 2.5), ("batch_size", 0), ("lr", -1e-3), ("lr", float("nan")),
                     ("lr", 0.0), ("warmup_steps", -1), ("grad_clip", -1.0), ("ckpt_every", -10), ("batch_size", 8.0),
                     ("eval_every", -1), ("log_every", 0), ("betas", (0.9, 1.5)), ("weight_decay", -0.1), ("amp", "fp16"),
                     ("decay", "exp"), ("min_lr_ratio", 2.0)]:
    bad("train-config", f"{field}={value!r}", lambda f=field, v=value: TC(**{f: v}), names=field)
good("train-config", "ckpt_every=0 (only at the end)", lambda: TC(ckpt_every=0), lambda c: c.ckpt_every == 0)
good("train-config", "grad_clip=0 (no clipping)", lambda: TC(grad_clip=0.0), lambda c: not c.grad_clip)


# ------------------------------------------------------------------------------------------ train: checkpoints
class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)


DATA = [torch.randn(3) for _ in range(8)]
LOSS = lambda m, b: m.lin(b).pow(2).mean()  # noqa: E731


def run_train(ckpt, steps=2, **kw):
    return course_lib.train(_Tiny(), LOSS, DATA, TC(steps=steps, batch_size=4, warmup_steps=0, ckpt_path=str(ckpt),
                                                     progress=False, device="cpu", **kw))


good("checkpoints", "train then resume (no ckpt)", lambda: run_train(TMP / "ok" / "a.pt"), lambda h: h[-1]["step"] == 2)
bad("checkpoints", "empty checkpoint file", lambda: run_train(write("ck/empty.pt", b"")), names="empty.pt")
bad("checkpoints", "random bytes checkpoint", lambda: run_train(write("ck/random.pt", os.urandom(300))), names="random.pt")
bad("checkpoints", "text file as checkpoint", lambda: run_train(write("ck/text.pt", "hello\n")), names="text.pt")
bad("checkpoints", "json as checkpoint", lambda: run_train(write("ck/j.pt", json.dumps({"step": 3}))), names="j.pt")


def _truncated(name):
    p = TMP / "ck" / name
    run_train(TMP / "ck" / ("full_" + name))
    blob = (TMP / "ck" / ("full_" + name)).read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    return run_train(p)


bad("checkpoints", "truncated checkpoint", lambda: _truncated("trunc.pt"), names="trunc.pt")


def _foreign(obj, name):
    p = TMP / "ck" / name
    torch.save(obj, p)
    return run_train(p)


bad("checkpoints", "foreign: a plain tensor", lambda: _foreign(torch.ones(3), "tensor.pt"), names="tensor.pt")
bad("checkpoints", "foreign: dict without model", lambda: _foreign({"weights": torch.ones(3)}, "dict.pt"), names="dict.pt")
bad("checkpoints", "foreign: a list", lambda: _foreign([1, 2, 3], "list.pt"), names="list.pt")
bad("checkpoints", "weights of another model", lambda: _foreign({"model": {"x": torch.ones(2)}}, "other.pt"), names="other.pt")
bad("checkpoints", "ckpt path is a folder", lambda: run_train(TMP), names=str(TMP))
bad("checkpoints", "ckpt parent is a file", lambda: run_train(write("ck/file", "x") / "c.pt"), names="file")
bad("checkpoints", "ckpt in /proc (unwritable)", lambda: run_train("/proc/course_sweep/c.pt"), names="/proc")
bad("checkpoints", "load_checkpoint missing file", lambda: course_lib.load_checkpoint(TMP / "nope.pt", _Tiny()), names="nope.pt")
bad("checkpoints", "load_checkpoint random bytes", lambda: course_lib.load_checkpoint(write("ck/r2.pt", os.urandom(64)), _Tiny()),
    names="r2.pt")
bad("checkpoints", "save_checkpoint to a folder", lambda: course_lib.save_checkpoint(TMP, _Tiny()), names=str(TMP))
bad("checkpoints", "train on an empty dataset", lambda: course_lib.train(_Tiny(), LOSS, [], TC(steps=1, progress=False, device="cpu")),
    names="dataset")
bad("checkpoints", "train loss_fn returns a non-scalar",
    lambda: course_lib.train(_Tiny(), lambda m, b: m.lin(b), DATA, TC(steps=1, batch_size=2, progress=False, device="cpu")),
    names="loss")
good("checkpoints", "dataset smaller than a batch", lambda: course_lib.train(_Tiny(), LOSS, DATA[:1],
                                                                              TC(steps=2, batch_size=4, progress=False, device="cpu")),
     lambda h: len(h) >= 1)
bad("checkpoints", "unknown device name", lambda: course_lib.train(_Tiny(), LOSS, DATA, TC(steps=1, device="gpu0", progress=False)),
    names="gpu0")

# ------------------------------------------------------------------------------------------ runtime / MPS
bad("runtime", "pick_device('banana')", lambda: course_lib.pick_device("banana"), names="banana")
bad("runtime", "configure_threads('x')", lambda: __import__("course_lib.runtime").runtime.configure_threads("x"), names="x")
bad("runtime", "configure_threads(0)", lambda: __import__("course_lib.runtime").runtime.configure_threads(0))


def _mps_amp_default():
    import importlib

    T = importlib.import_module("course_lib.train")  # (course_lib.train is also the name of the function)

    return T._amp_for(torch.device("mps"), TC(device="cpu")) if hasattr(T, "_amp_for") else (True, torch.float16)


good("runtime", "MPS trains in fp32 by default", _mps_amp_default, lambda r: r[0] is False)
good("runtime", "describe_device(mps) says fp32 by default", lambda: course_lib.describe_device("mps"),
     lambda s: "fp32" in s or "float32" in s)

# ------------------------------------------------------------------------------------------ convert
from course_lib import convert  # noqa: E402


def hf_folder(name, config: str | None, st: bytes | None) -> Path:
    d = TMP / "hf" / name
    d.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (d / "config.json").write_text(config)
    if st is not None:
        (d / "model.safetensors").write_bytes(st)
    return d


def _real_safetensors() -> bytes:
    from safetensors.torch import save

    return save({"wte.weight": torch.zeros(4, 2)})


GPT2 = json.dumps({"model_type": "gpt2", "vocab_size": 4, "n_embd": 2, "n_head": 1, "n_layer": 1, "n_positions": 8})
bad("convert", "config.json not JSON", lambda: convert.load_pretrained(hf_folder("notjson", "{model_type: gpt2", _real_safetensors())),
    names="config.json")
bad("convert", "config.json empty", lambda: convert.load_pretrained(hf_folder("emptycfg", "", _real_safetensors())), names="config.json")
bad("convert", "config.json is a list", lambda: convert.load_pretrained(hf_folder("listcfg", "[1, 2]", _real_safetensors())),
    names="config.json")
bad("convert", "config.json lacks model_type", lambda: convert.load_pretrained(hf_folder("notype", "{}", _real_safetensors())),
    names="model_type")
bad("convert", "config.json lacks a field", lambda: convert.load_pretrained(
    hf_folder("nofield", json.dumps({"model_type": "gpt2", "vocab_size": 4}), _real_safetensors())), names="n_embd")
bad("convert", "safetensors empty", lambda: convert.load_pretrained(hf_folder("emptyst", GPT2, b"")), names="model.safetensors")
bad("convert", "safetensors truncated", lambda: convert.load_pretrained(hf_folder("truncst", GPT2, _real_safetensors()[:20])),
    names="model.safetensors")
bad("convert", "safetensors random", lambda: convert.load_pretrained(hf_folder("randst", GPT2, os.urandom(100))),
    names="model.safetensors")
bad("convert", "folder missing", lambda: convert.load_pretrained(TMP / "hf" / "missing"), names="missing")
bad("convert", "path is a file", lambda: convert.load_pretrained(write("hf/afile", "x")), names="afile")
bad("convert", "no safetensors", lambda: convert.load_pretrained(hf_folder("nost", GPT2, None)), names="safetensors")
bad("convert", "generation_ids bad json", lambda: convert.generation_ids(hf_folder("gid", "{", None)), names="config.json")
bad("convert", "unsupported model_type", lambda: convert.load_pretrained(hf_folder("mt", json.dumps({"model_type": "mamba"}),
                                                                                    _real_safetensors())), names="mamba")

# ------------------------------------------------------------------------------------------ ledger
from course_lib import ledger  # noqa: E402

LF = TMP / "ledger"
rc = lambda *a, **kw: ledger.record_claim(*a, **{"lesson": "05_translator", "section": "s", "folder": LF, "save": True, **kw})  # noqa: E731
good("ledger", "numbers with NaN saved as null", lambda: (rc(4, "nuanced", "e", numbers={"x": float("nan")}, folder=TMP / "ledger_nan"),
                                                          (TMP / "ledger_nan" / "05_translator.json").read_text())[1],
     lambda text: "NaN" not in text and '"x": null' in text)
good("ledger", "numbers with inf saved as 'inf'", lambda: (rc(4, "nuanced", "e", numbers={"y": float("inf")}, folder=TMP / "ledger_inf"),
                                                          (TMP / "ledger_inf" / "05_translator.json").read_text())[1],
     lambda text: "Infinity" not in text and '"y": "inf"' in text)
bad("ledger", "lesson '../x'", lambda: rc(4, "nuanced", "e", lesson="../x"), names="../x")
bad("ledger", "lesson with a slash", lambda: rc(4, "nuanced", "e", lesson="a/b"), names="a/b")
bad("ledger", "lesson absolute path", lambda: rc(4, "nuanced", "e", lesson=str(TMP / "evil")), names="lesson")
bad("ledger", "lesson empty", lambda: rc(4, "nuanced", "e", lesson=""), names="lesson")
for c in (4.0, True, 0, 13, "4", None, -1):
    bad("ledger", f"claim={c!r}", lambda c=c: rc(c, "nuanced", "e"), names="1")
bad("ledger", "verdict typo", lambda: rc(4, "supportd", "e"), names="supported")
bad("ledger", "numbers not JSON", lambda: rc(4, "nuanced", "e", numbers={"t": torch.ones(1)}), names="numbers")
good("ledger", "numpy int claim", lambda: rc(__import__("numpy").int64(4), "nuanced", "e", save=False), lambda e: e["claim"] == 4)
good("ledger", "record then load", lambda: (rc(4, "nuanced", "e", folder=TMP / "ledger_ok"), ledger.load_ledger(TMP / "ledger_ok"))[1],
     lambda led: led[4][0]["verdict"] == "nuanced")


def _corrupt_results(text, name="07_recipe.json"):
    d = TMP / f"ledger_{abs(hash(text)) % 10_000}"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return ledger.load_ledger(d)


bad("ledger", "results file not JSON", lambda: _corrupt_results("{oops"), names="07_recipe.json")
bad("ledger", "results file empty", lambda: _corrupt_results(""), names="07_recipe.json")
bad("ledger", "results file a list", lambda: _corrupt_results("[1]"), names="07_recipe.json")
bad("ledger", "results file with NaN", lambda: _corrupt_results('{"4": {"claim": 4, "verdict": "nuanced", "evidence": NaN, '
                                                                 '"lesson": "07_recipe", "section": "s"}}'), names="07_recipe.json")
bad("ledger", "results entry bad verdict", lambda: _corrupt_results('{"4": {"claim": 4, "verdict": "maybe", "evidence": "", '
                                                                     '"lesson": "07_recipe", "section": "s"}}'), names="07_recipe.json")


def _record_into_corrupt():
    d = TMP / "ledger_rc"
    d.mkdir(exist_ok=True)
    (d / "05_translator.json").write_text("{not json")
    return rc(4, "nuanced", "e", folder=d)


bad("ledger", "record into a corrupt file", _record_into_corrupt, names="05_translator.json")
good("ledger", "load_ledger of an empty folder", lambda: ledger.load_ledger(TMP / "ledger_empty"), lambda led: all(v == [] for v in led.values()))

# ------------------------------------------------------------------------------------------ quiz
MC = quiz_mod.MultipleChoice
bad("quiz", "single-letter option text naming another option", lambda: MC("q?", ["b", "a", "c"], answer="a"), names="letter")
bad("quiz", "duplicate options", lambda: MC("q?", ["yes", "no", "yes"], answer=0), names="yes")
bad("quiz", "duplicate options up to case", lambda: MC("q?", ["Yes", "yes "], answer=0), names="yes")
bad("quiz", "options given as one string", lambda: MC("q?", "abc", answer="a"), names="options")
bad("quiz", "answer index out of range", lambda: MC("q?", ["x", "y"], answer=5), names="5")
bad("quiz", "answer True", lambda: MC("q?", ["x", "y"], answer=True), names="True")
bad("quiz", "one option", lambda: MC("q?", ["x"], answer=0), names="2 options")
bad("quiz", "explanations wrong length", lambda: MC("q?", ["x", "y"], answer=0, explanations=["a"]), names="explanations")
bad("quiz", "explanation key unknown", lambda: MC("q?", ["x", "y"], answer=0, explanations={"z": "?"}), names="z")
bad("quiz", "empty option text", lambda: MC("q?", ["x", ""], answer=0), names="empty")
bad("quiz", "check unknown id", lambda: quiz_mod.check("no-such-question-id", "a"), names="no-such-question-id")
good("quiz", "options a b c, answer 'b'", lambda: MC("q?", ["a", "b", "c"], answer="b").answer, lambda i: i == 1)
good("quiz", "grade '(B)'", lambda: quiz_mod.grade_choice(MC("q?", ["x", "y"], answer=1), "(B)")[0], lambda ok: ok is True)
good("quiz", "grade 'z' not an option", lambda: quiz_mod.grade_choice(MC("q?", ["x", "y"], answer=1), "z"),
     lambda r: r[0] is False and "a to b" in r[1])
good("quiz", "answer by option text", lambda: MC("q?", ["causal", "bidirectional"], answer="Bidirectional").answer, lambda i: i == 1)

# ------------------------------------------------------------------------------------------ translate (library)
from course_lib import translate as tr  # noqa: E402
from course_lib.lessons.en_fr import make_splits  # noqa: E402
from course_lib.tokenizer import WordTokenizer  # noqa: E402

_splits = make_splits(seed=0, n_train=400, n_valid=10, n_test=10, n_long=3)
TOK = WordTokenizer.from_texts(t for p in _splits["train"] for t in p)
DATA_TR = tr.TranslationData(TOK, _splits)
torch.manual_seed(0)
TR_CFG = tr.model_configs(TOK.vocab_size, d_model=16, n_heads=2, enc_dec_layers=1, max_len=48)
TR_ED = tr.build_model("encdec", TR_CFG["encdec"]).eval()
TR_DEC = tr.build_model("decoder", TR_CFG["decoder"]).eval()
MODEL = TMP / "tr" / "m.pt"
tr.save_translator(str(MODEL), TR_ED, "encdec", TOK, DATA_TR.source_words())
DEC_MODEL = TMP / "tr" / "dec.pt"
tr.save_translator(str(DEC_MODEL), TR_DEC, "decoder", TOK, DATA_TR.source_words())
EN = _splits["train"][0][0]
LONG = " ".join([EN.rstrip(".")] * 12) + "."  # ~100 words: beyond max_len=48

bad("translate", "translate_ids source longer than max_len", lambda: tr.translate_ids(TR_ED, "encdec", [TOK.encode(LONG)]),
    names="max_len")
bad("translate", "decoder translate_ids source longer than max_len", lambda: tr.translate_ids(TR_DEC, "decoder", [TOK.encode(LONG)]),
    names="max_len")
bad("translate", "translate_ids beam_size=0", lambda: tr.translate_ids(TR_ED, "encdec", [TOK.encode(EN)], beam_size=0),
    names="beam_size")
bad("translate", "translate_ids empty source", lambda: tr.translate_ids(TR_ED, "encdec", [[]]), names="empty")
bad("translate", "unknown family", lambda: tr.translate_ids(TR_ED, "gpt", [TOK.encode(EN)]), names="family")
bad("translate", "load_translator of random bytes", lambda: tr.load_translator(str(write("tr/rand.pt", os.urandom(99)))),
    names="rand.pt")
bad("translate", "load_translator of an empty file", lambda: tr.load_translator(str(write("tr/empty.pt", b""))), names="empty.pt")
bad("translate", "save_translator into a file-as-folder", lambda: tr.save_translator(str(write("tr/f", "x") / "m.pt"), TR_ED, "encdec", TOK),
    names="f")
good("translate", "translate_typed several sentences", lambda: tr.translate_typed(TR_ED, "encdec", TOK, [EN, EN.upper()]),
     lambda rs: len(rs) == 2 and rs[0].translation == rs[1].translation)
good("translate", "translate_typed empty list", lambda: tr.translate_typed(TR_ED, "encdec", TOK, []), lambda rs: rs == [])
good("translate", "translate_typed blank sentence", lambda: tr.translate_typed(TR_ED, "encdec", TOK, ["   "]),
     lambda rs: rs[0].translation is None)


# ------------------------------------------------------------------------------------------ second batch: more of the same kinds
bad("generation", "eos_id outside the vocabulary", lambda: gen(DEC, PROMPT, 3, eos_id=V + 5), names="eos_id")
bad("generation", "pad_id outside the vocabulary", lambda: gen(DEC, PROMPT, 3, pad_id=-2), names="pad_id")
bad("generation", "bos_id outside the vocabulary (encdec)", lambda: gen(ED, SRC, 3, bos_id=V), names="bos_id")
bad("generation", "beam eos_id outside the vocabulary", lambda: beam(DEC, PROMPT, 3, eos_id=V), names="eos_id")
bad("generation", "prompt is a list", lambda: gen(DEC, [[1, 7, 8]], 3), names="prompt")
bad("generation", "prompt ids >= vocab", lambda: gen(DEC, torch.tensor([[1, V + 1]]), 3), names="vocab_size")
bad("generation", "generator of the wrong kind", lambda: gen(DEC, PROMPT, 3, temperature=1.0, generator=0), names="generator")
good("generation", "beam_size larger than the vocabulary", lambda: beam(DEC, PROMPT, 3, beam_size=V + 3), lambda out: out.shape[0] == 1)
good("generation", "use_cache=False same as cached", lambda: (gen(DEC, PROMPT, 5, use_cache=False), gen(DEC, PROMPT, 5)),
     lambda pair: pair[0].tolist() == pair[1].tolist())
bad("models", "prefix_len negative", lambda: DEC(tokens(1, 5), prefix_len=-1), names="prefix_len")
bad("models", "token_type_ids on a model without them", lambda: ENC(tokens(1, 4), token_type_ids=torch.zeros(1, 4, dtype=torch.long)),
    names="token_type")
good("models", "prefix_len longer than the sequence", lambda: DEC(tokens(1, 5), prefix_len=9), lambda out: out.shape == (1, 5, V))
bad("losses", "shift_right of a 1-D tensor", lambda: L.shift_right(tgt[0], 1), names="(B, T)")
bad("losses", "mlm_corrupt of float tokens", lambda: L.mlm_corrupt(tgt.float(), V, 4), names="tokens")
bad("train-config", "device='cuda' on a machine without one", lambda: course_lib.train(_Tiny(), LOSS, DATA, TC(steps=1, device="cuda", progress=False))
    if not torch.cuda.is_available() else (_ for _ in ()).throw(ValueError("cuda")), names="cuda")
bad("checkpoints", "a saved translator as ckpt", lambda: run_train(MODEL_AS_CKPT()), names="m.pt")
bad("checkpoints", "dataset that is not indexable", lambda: course_lib.train(_Tiny(), LOSS, {1, 2, 3}, TC(steps=1, progress=False, device="cpu")),
    names="dataset")
bad("checkpoints", "evaluate returns a float", lambda: course_lib.train(_Tiny(), LOSS, DATA, TC(steps=1, batch_size=2, progress=False, device="cpu"),
                                                                         evaluate=lambda m: 1.0), names="evaluate")
bad("checkpoints", "loss_fn returns a float", lambda: course_lib.train(_Tiny(), lambda m, b: 1.0, DATA, TC(steps=1, batch_size=2, progress=False,
                                                                                                          device="cpu")), names="loss")
bad("runtime", "seed_everything('x')", lambda: course_lib.seed_everything("x"), names="seed")
bad("runtime", "configure_threads(-1)", lambda: __import__("course_lib.runtime").runtime.configure_threads(-1), names="-1")
bad("ledger", "evidence not a string", lambda: rc(4, "nuanced", 3.5), names="evidence")
bad("ledger", "section not a string", lambda: rc(4, "nuanced", "e", section=None), names="section")
bad("ledger", "verdict None", lambda: rc(4, None, "e"), names="verdict")
bad("ledger", "folder is a file", lambda: rc(4, "nuanced", "e", folder=write("ledger_file", "x")), names="ledger_file")
bad("ledger", "numbers not a dict", lambda: rc(4, "nuanced", "e", numbers=[1, 2]), names="numbers")
good("quiz", "grade 1.5 says how to answer", lambda: quiz_mod.grade_choice(MC("q?", ["x", "y"], answer=1), 1.5),
     lambda r: r[0] is False and "letter" in r[1])
good("quiz", "grade None says how to answer", lambda: quiz_mod.grade_choice(MC("q?", ["x", "y"], answer=1), None),
     lambda r: r[0] is False and "letter" in r[1])
bad("quiz", "check_quiz of a list", lambda: quiz_mod.check_quiz(["a", "b"]), names="dict")
bad("quiz", "question not a string", lambda: MC(None, ["x", "y"], answer=0), names="question")
bad("translate", "translate() of one string (not a list)", lambda: tr.translate(TR_ED, "encdec", TOK, EN), names="list")
bad("translate", "translate_typed of one string", lambda: tr.translate_typed(TR_ED, "encdec", TOK, EN), names="list")
bad("translate", "evaluate on an unknown split", lambda: tr.evaluate(TR_ED, "encdec", DATA_TR, "tests"), names="tests")
bad("translate", "evaluate limit=0", lambda: tr.evaluate(TR_ED, "encdec", DATA_TR, "test", limit=0), names="limit")
bad("translate", "model_configs d_model not divisible", lambda: tr.model_configs(50, d_model=30), names="d_model")
bad("translate", "load_data with a missing tsv", lambda: tr.load_data(tsv=str(TMP / "none.tsv")), names="none.tsv")
bad("translate", "translate with a model of another vocabulary", lambda: tr.translate(
    tr.build_model("encdec", tr.model_configs(20, d_model=16, n_heads=2, enc_dec_layers=1)["encdec"]), "encdec", TOK, [EN]),
    names="vocab")
bad("convert", "a tensor missing", lambda: convert.load_pretrained(hf_folder("shape", GPT2, _real_safetensors())), names="wpe")


def MODEL_AS_CKPT():
    p = TMP / "ck" / "m.pt"
    p.write_bytes(MODEL.read_bytes())
    return p


# ------------------------------------------------------------------------------------------ the command line
def cli(*args: str, stdin: str | None = None, timeout: float = 240.0, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "course_lib.lessons.translate", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=TMP, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def cli_bad(name, *args, names=None, **kw):
    CASES.append(Case("cli", name, lambda: cli(*args, **kw), names=names, cli=True))


def cli_good(name, ok, *args, **kw):
    CASES.append(Case("cli", name, lambda: cli(*args, **kw), ok=ok, cli=True))


TSV = write("tr/pairs.tsv", "".join(f"{en}\t{fr}\n" for en, fr in _splits["train"][:120]))
BASE = ("train", "--tsv", str(TSV), "--d-model", "16", "--layers", "1", "--no-progress", "--device", "cpu")
TRAIN = (*BASE, "--steps", "2")
cli_bad("translate: missing model", "translate", str(TMP / "none.pt"), "hello", names="none.pt")
cli_bad("translate: random-bytes model", "translate", str(write("tr/r.pt", os.urandom(50))), "hello", names="r.pt")
cli_bad("translate: empty model file", "translate", str(write("tr/e.pt", b"")), "hello", names="e.pt")
cli_bad("translate: folder as model", "translate", str(TMP), "hello", names="folder")
cli_bad("translate: --beam 0", "translate", str(MODEL), EN, "--beam", "0", names="beam")
cli_bad("translate: --device tpu", "translate", str(MODEL), EN, "--device", "tpu", names="tpu")
cli_good("translate: newline-separated sentences", lambda r: r["rc"] == 0 and len(r["out"].strip().splitlines()) == 2,
         "translate", str(MODEL), f"{EN}\n{EN}")
cli_good("translate: sentences on stdin", lambda r: r["rc"] == 0 and len(r["out"].strip().splitlines()) == 3,
         "translate", str(MODEL), "-", stdin=f"{EN}\n{EN}\n{EN}\n")
cli_good("translate: two sentences on one line", lambda r: r["rc"] == 0 and len(r["out"].strip().splitlines()) == 2,
         "translate", str(MODEL), f"{EN} {EN}")
cli_good("translate: sentence beyond the context is refused with a note",
         lambda r: "max_len" in r["err"] or "longer than" in r["err"], "translate", str(MODEL), LONG)
cli_good("translate: decoder-only long sentence refused with a note",
         lambda r: "max_len" in r["err"] or "longer than" in r["err"], "translate", str(DEC_MODEL), LONG)
cli_good("translate: one sentence", lambda r: r["rc"] == 0 and r["out"].count("\n") == 1, "translate", str(MODEL), EN)
cli_bad("eval: --limit 0", "eval", str(MODEL), "--limit", "0", names="limit")
cli_bad("eval: random-bytes model", "eval", str(write("tr/r3.pt", os.urandom(50))), names="r3.pt")
cli_bad("train: --out in a file-as-folder", *TRAIN, "--out", str(write("cli/afile", "x") / "m.pt"), names="afile")
cli_bad("train: --out in /proc", *TRAIN, "--out", "/proc/sweep/m.pt", names="/proc")
cli_bad("train: --out is a folder", *TRAIN, "--out", str(TMP), names=str(TMP))
cli_bad("train: corrupt checkpoint", *TRAIN, "--out", str(TMP / "cli" / "c.pt"), "--ckpt", str(write("cli/c.ckpt.pt", os.urandom(80))),
        names="c.ckpt.pt")
cli_bad("train: empty checkpoint", *TRAIN, "--out", str(TMP / "cli" / "e.pt"), "--ckpt", str(write("cli/e.ckpt.pt", b"")),
        names="e.ckpt.pt")
cli_bad("train: a saved model as --ckpt", *TRAIN, "--out", str(TMP / "cli" / "mk.pt"), "--ckpt", str(MODEL), names="m.pt")
cli_bad("train: --lr -1", *TRAIN, "--lr", "-1", "--out", str(TMP / "cli" / "lr.pt"), names="lr")
cli_bad("train: --lr nan", *TRAIN, "--lr", "nan", "--out", str(TMP / "cli" / "lrn.pt"), names="lr")
cli_bad("train: --dropout 1.5", *TRAIN, "--dropout", "1.5", "--out", str(TMP / "cli" / "d.pt"), names="dropout")
cli_bad("train: --label-smoothing 2", *TRAIN, "--label-smoothing", "2", "--out", str(TMP / "cli" / "ls.pt"), names="label")
cli_bad("train: --steps 0", *BASE, "--steps", "0", names="steps")
cli_bad("train: --tsv missing", "train", "--tsv", str(TMP / "no.tsv"), names="no.tsv")
cli_bad("train: --tsv binary", "train", "--tsv", str(write("cli/bin.tsv", os.urandom(200) + b"\xff\xfe")), names="bin.tsv")
cli_bad("train: --d-model 10 (heads don't divide it)", *TRAIN, "--d-model", "10", "--out", str(TMP / "cli" / "dm.pt"),
        names="d_model")
cli_good("train: --fresh starts over from a corrupt checkpoint",
         lambda r: r["rc"] == 0 and "saved" in r["out"], *TRAIN, "--out", str(TMP / "cli" / "f.pt"), "--ckpt",
         str(write("cli/f.ckpt.pt", os.urandom(80))), "--fresh")
cli_good("train: --ckpt-every 1", lambda r: r["rc"] == 0 and (TMP / "cli" / "ce.ckpt.pt").exists(), *TRAIN,
         "--out", str(TMP / "cli" / "ce.pt"), "--ckpt-every", "1")


def _interrupted(sig: int, name: str):
    """Start a long training run, send ``sig`` once the first step has run, and read the outcome."""
    out = TMP / "cli" / f"{name}.pt"
    ckpt = TMP / "cli" / f"{name}.ckpt.pt"
    args = [*BASE, "--steps", "100000", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "course_lib.lessons.translate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=TMP,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as typed in a terminal
    # (a job started in the background inherits an ignored SIGINT; a terminal's Ctrl-C is not ignored)
    import time

    time.sleep(15)
    proc.send_signal(sig)
    so, se = proc.communicate(timeout=120)
    return {"rc": proc.returncode, "out": so, "err": se, "saved": ckpt.exists()}


def _truthful(r: dict) -> bool:
    """An interrupted run says "resume" only when a checkpoint exists, and says something either way."""
    return ("resume" in r["err"]) == r["saved"] and r["err"].strip() != ""


for sig, nm in ((signal.SIGINT, "sigint"), (signal.SIGTERM, "sigterm")):
    CASES.append(Case("cli", f"train interrupted by {nm.upper()}: saves, and says so truthfully",
                      lambda s=sig, n=nm: _interrupted(s, n), ok=_truthful, cli=True))


# ------------------------------------------------------------------------------------------ classification
SOURCES: dict[str, list[str]] = {}  # course_lib's source as imported (others may edit the files meanwhile)


def _line(filename: str, lineno: int) -> str:
    if filename not in SOURCES:
        SOURCES[filename] = linecache.getlines(filename)
    lines = SOURCES[filename]
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def _raised_in_course_lib(err: BaseException) -> bool:
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    filename = last.tb_frame.f_code.co_filename
    return filename.startswith(LIB) and "raise" in _line(filename, last.tb_lineno)


def classify(case: Case) -> tuple[str, str]:
    def timeout_handler(*_):
        raise TimeoutError("no answer")

    old = signal.signal(signal.SIGALRM, timeout_handler)
    signal.alarm(600 if case.cli else 120)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = case.fn()
    except (TimeoutError, subprocess.TimeoutExpired):
        return "hang", ""
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, KeyboardInterrupt):
            raise
        msg = f"{type(err).__name__}: {err}".splitlines()[0][:300] if str(err) else type(err).__name__
        if case.ok is not None:
            return "raw", msg
        if isinstance(err, json.JSONDecodeError) or not _raised_in_course_lib(err):
            return "raw", msg
        if any(p in str(err) for p in RAW_PHRASES):
            return "raw", msg
        if case.names and case.names.lower() not in str(err).lower():
            return "raw", msg + f"  [does not name {case.names!r}]"
        return "clear", msg
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if case.cli:
        err = result["err"].strip()
        msg = err.splitlines()[-1][:300] if err else f"rc={result['rc']}"
        if case.ok is not None:
            return ("correct" if case.ok(result) else ("raw" if "Traceback" in err else "silent")), msg
        if result["rc"] == 0:
            return "silent", msg
        if any(p in err for p in RAW_PHRASES) or not err.startswith(("error:", "usage:")):
            return "raw", msg
        if case.names and case.names.lower() not in err.lower():
            return "raw", msg + f"  [does not name {case.names!r}]"
        return "clear", msg
    if case.ok is not None:
        try:
            right = bool(case.ok(result))
        except Exception as err:  # noqa: BLE001
            return "silent", f"check failed: {err}"
        return ("correct" if right else "silent"), " ".join(repr(result).split())[:120]
    return "silent", " ".join(repr(result).split())[:120]


def main() -> None:
    for module in list(sys.modules.values()):  # snapshot the source now, as imported
        f = getattr(module, "__file__", None) or ""
        if f.startswith(LIB):
            _line(f, 1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-k", default=None, help="only cases whose area or name contains this")
    p.add_argument("--json", default=None, help="also write every case's outcome to this file")
    args = p.parse_args()
    cases = [c for c in CASES if args.k is None or args.k in c.area or args.k in c.name]
    totals, by_area, rows = Counter(), defaultdict(Counter), []
    for c in cases:
        outcome, msg = classify(c)
        totals[outcome] += 1
        by_area[c.area][outcome] += 1
        rows.append({"area": c.area, "name": c.name, "outcome": outcome, "message": msg})
        if args.verbose:
            print(f"{outcome:8s} {c.area:13s} {c.name:55s} {msg}", flush=True)
    kinds = ("clear", "correct", "raw", "silent", "hang")
    print(f"\n{len(cases)} cases: " + ", ".join(f"{k} {totals[k]}" for k in kinds))
    for area, cnt in by_area.items():
        print(f"  {area:13s} " + ", ".join(f"{k} {cnt[k]}" for k in kinds if cnt[k]))
    if args.json:
        Path(args.json).write_text(json.dumps({"totals": totals, "cases": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

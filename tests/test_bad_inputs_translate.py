"""The translator with bad input, as a library and as typed on the command line: every refusal is one
sentence naming the file or argument (tables); a sentence longer than the model's context is refused
with a note, several sentences are each translated; an interrupted `train` saves a checkpoint, says so
only when there is one, and the same command resumes it."""
from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from bad_inputs import Bad, assert_refused, rows

from course_lib import en_fr
from course_lib import translate as tr
from course_lib.tokenizer import WordTokenizer

SPLITS = en_fr.make_splits(seed=0, n_train=400, n_valid=10, n_test=10, n_long=3)
TOK = WordTokenizer.from_texts(t for pair in SPLITS["train"] for t in pair)
DATA = tr.TranslationData(TOK, SPLITS)
CFGS = tr.model_configs(TOK.vocab_size, d_model=16, n_heads=2, enc_dec_layers=1, max_len=48)
torch.manual_seed(0)
ED, DEC = tr.build_model("encdec", CFGS["encdec"]).eval(), tr.build_model("decoder", CFGS["decoder"]).eval()
EN = SPLITS["train"][0][0]
LONG = " ".join([EN.rstrip(".")] * 12) + "."  # one sentence of ~100 tokens: beyond max_len=48


def test_longest_source_is_the_context_each_family_can_read():
    assert tr.longest_source(ED, "encdec") == 48  # the encoder reads max_len tokens
    assert tr.longest_source(DEC, "decoder") == tr.longest_source(DEC, "prefixlm") == 23  # source <sep> translation in 48


LIBRARY = [
    Bad("encdec source beyond max_len", lambda: tr.translate_ids(ED, "encdec", [TOK.encode(LONG)]), ValueError,
        "more than the 48 a encdec model with max_len=48 can translate"),
    Bad("decoder source beyond its context", lambda: tr.translate_ids(DEC, "decoder", [TOK.encode(EN)] * 2 + [[7] * 24]), ValueError,
        "source 2 has 24 tokens"),
    Bad("an empty source", lambda: tr.translate_ids(ED, "encdec", [[]]), ValueError, "source 0 is empty"),
    Bad("beam_size=0", lambda: tr.translate_ids(ED, "encdec", [TOK.encode(EN)], beam_size=0), ValueError, "beam_size"),
    Bad("translate() of one string", lambda: tr.translate(ED, "encdec", TOK, EN), TypeError, "wrap it as [text]"),
    Bad("translate_typed() of one string", lambda: tr.translate_typed(ED, "encdec", TOK, EN), TypeError, "list of strings"),
    Bad("evaluate on an unknown split", lambda: tr.evaluate(ED, "encdec", DATA, "tests"), ValueError, "'tests'"),
    Bad("evaluate with limit=0", lambda: tr.evaluate(ED, "encdec", DATA, "test", limit=0), ValueError, "limit"),
    Bad("an unknown family", lambda: tr.translate_ids(ED, "gpt", [TOK.encode(EN)]), ValueError, "gpt"),
    Bad("load_data of a missing TSV", lambda: tr.load_data(tsv="/nonexistent/pairs.tsv"), FileNotFoundError, "pairs.tsv"),
]


@pytest.mark.parametrize("row", rows(LIBRARY))
def test_library_refuses(row):
    assert_refused(row)


def test_files_the_translator_reads_and_writes(tmp_path):
    (tmp_path / "rand.pt").write_bytes(os.urandom(99))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "afile").write_text("x")
    assert_refused(Bad("random bytes", lambda: tr.load_translator(str(tmp_path / "rand.pt")), tr.TranslatorError, "rand.pt' is not a model"))
    assert_refused(Bad("empty", lambda: tr.load_translator(str(tmp_path / "empty.pt")), tr.TranslatorError, "empty.pt"))
    assert_refused(Bad("save inside a file", lambda: tr.save_translator(str(tmp_path / "afile" / "m.pt"), ED, "encdec", TOK),
                       ValueError, "afile' is a file, not a folder"))


def test_long_sentences_are_refused_and_the_rest_translated():
    typed = tr.translate_typed(ED, "encdec", TOK, [EN, LONG, EN.upper()])
    assert typed[1].too_long and typed[1].translation is None
    assert not typed[0].too_long and typed[0].translation == typed[2].translation == tr.translate(ED, "encdec", TOK, [EN])[0]


def test_generation_stops_at_the_models_last_position():
    short = [7, 8, 9]  # a decoder-only prompt of 4 with max_len 48: at most 45 new tokens fit
    out = tr.translate_ids(DEC, "decoder", [short], max_new_tokens=1000)
    assert len(out[0]) <= 48 - len(short)


def test_split_sentences():
    assert tr.split_sentences("The dog runs. The cat sleeps!\n\n  a bird sings  ") == ["The dog runs.", "The cat sleeps!", "a bird sings"]
    assert tr.split_sentences("") == []


# ---------------------------------------------------------------- the command line as typed
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    tr.save_translator(str(d / "m.pt"), ED, "encdec", TOK, DATA.source_words())
    (d / "pairs.tsv").write_text("".join(f"{en}\t{fr}\n" for en, fr in SPLITS["train"][:120]), encoding="utf-8")
    return d


def cli(args, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        tr.main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = done.code
    out = capsys.readouterr()
    return code, out.out, out.err


def train_args(d: Path, *more) -> list:
    return ["train", "--tsv", d / "pairs.tsv", "--d-model", "16", "--layers", "1", "--steps", "6", "--no-progress",
            "--device", "cpu", "--ckpt-every", "1000", *more]


CLI = [  # (label, arguments (d = the fixture's folder), phrase of the one error line)
    ("missing model", lambda d: ["translate", d / "none.pt", "hi"], "there is no file"),
    ("a folder as model", lambda d: ["translate", d, "hi"], "is a folder"),
    ("--device tpu", lambda d: ["translate", d / "m.pt", "hi", "--device", "tpu"], "'tpu' is not a device name"),
    ("--out inside a file", lambda d: train_args(d, "--out", d / "pairs.tsv" / "m.pt"), "pairs.tsv' is a file, not a folder"),
    ("--out is a folder", lambda d: train_args(d, "--out", d), "is a folder; give a file name"),
    ("a model file as checkpoint", lambda d: train_args(d, "--out", d / "c.pt", "--ckpt", d / "m.pt"),
     "m.pt' does not match this model"),
    ("--tsv missing", lambda d: ["train", "--tsv", d / "no.tsv"], "there is no file"),
]
USAGE = [  # argparse refuses these before anything runs: (label, arguments, the argument it names)
    ("--beam 0", lambda d: ["translate", d / "m.pt", "hi", "--beam", "0"], "--beam"),
    ("--lr -1", lambda d: train_args(d, "--lr", "-1"), "--lr"),
    ("--lr nan", lambda d: train_args(d, "--lr", "nan"), "--lr"),
    ("--dropout 1.5", lambda d: train_args(d, "--dropout", "1.5"), "--dropout"),
    ("--label-smoothing 2", lambda d: train_args(d, "--label-smoothing", "2"), "--label-smoothing"),
    ("--d-model 10", lambda d: train_args(d, "--d-model", "10"), "multiple of 4"),
    ("--ckpt-every 0", lambda d: train_args(d, "--ckpt-every", "0"), "--ckpt-every"),
    ("--limit 0", lambda d: ["eval", d / "m.pt", "--limit", "0"], "--limit"),
]


@pytest.mark.parametrize("label, args, phrase", CLI, ids=[c[0] for c in CLI])
def test_cli_refuses_in_one_sentence(files, capsys, label, args, phrase):
    code, out, err = cli(args(files), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert "Traceback" not in err and "--debug" not in err and "weights_only" not in err


@pytest.mark.parametrize("label, args, phrase", USAGE, ids=[u[0] for u in USAGE])
def test_cli_usage_errors_name_the_argument(files, capsys, label, args, phrase):
    code, out, err = cli(args(files), capsys)
    assert code == 2 and "error: argument" in err and phrase in err and "Traceback" not in err


def test_cli_translates_each_sentence_from_arguments_and_stdin(files, capsys, monkeypatch):
    expected = tr.translate(ED, "encdec", TOK, [EN])[0]
    for args, stdin in [([f"{EN}\n{EN}"], None), ([f"{EN} {EN}"], None), (["-"], f"{EN}\n\n{EN}\n"), ([], f"{EN}\n{EN}")]:
        code, out, err = cli(["translate", files / "m.pt", *args], capsys, stdin, monkeypatch)
        assert code == 0 and out.splitlines() == [f"{EN}\t{expected}"] * 2, (args, out, err)


def test_cli_notes_a_sentence_beyond_the_context(files, capsys):
    code, out, err = cli(["translate", files / "m.pt", LONG, EN], capsys)
    assert code == 0 and out.splitlines()[0] == f"{LONG}\t" and out.splitlines()[1].split("\t")[1]
    assert "more than the 48 this encdec model can read (its max_len is 48); split it into shorter sentences" in err


def test_cli_interrupted_train_saves_says_so_and_resumes(files, capsys, monkeypatch, tmp_path):
    out_path, ckpt = tmp_path / "t.pt", tmp_path / "t.ckpt.pt"
    real_loss_for = tr.loss_for
    calls = {"n": 0}

    def loss_for(family, label_smoothing=0.0):
        loss = real_loss_for(family, label_smoothing)

        def signalling(model, batch):
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss(model, batch)

        return signalling

    monkeypatch.setattr(tr.training, "loss_for", loss_for)  # where train_translator looks it up
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a terminal
    try:
        code, out, err = cli(train_args(files, "--out", out_path), capsys)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 130 and not out_path.exists()
    assert f"interrupted after step 3 of 6; the checkpoint '{ckpt}' is saved, so running the same command again resumes" in err
    assert torch.load(ckpt, weights_only=True)["step"] == 3

    monkeypatch.setattr(tr.training, "loss_for", real_loss_for)
    code, out, err = cli(train_args(files, "--out", out_path), capsys)  # the same command resumes and finishes
    assert code == 0 and out_path.exists() and torch.load(ckpt, weights_only=True)["step"] == 6
    straight = tmp_path / "s.pt"
    assert cli(train_args(files, "--out", straight), capsys)[0] == 0
    a, b = torch.load(out_path, weights_only=True)["model"], torch.load(straight, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # interrupted + resumed == straight, bit for bit


def test_cli_interrupted_before_a_checkpoint_does_not_promise_a_resume(files, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(tr.cli, "_load_data_or_explain", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    code, out, err = cli(train_args(files, "--out", tmp_path / "n.pt"), capsys)
    assert code == 130 and "interrupted before anything was saved" in err and "resume" not in err


def test_cli_fresh_replaces_an_unreadable_checkpoint(files, capsys, tmp_path):
    (tmp_path / "f.ckpt.pt").write_bytes(os.urandom(80))
    code, out, err = cli(train_args(files, "--out", tmp_path / "f.pt"), capsys)
    assert code == 2 and "f.ckpt.pt' is cut short" in err and "add --fresh to start over" in err
    code, out, err = cli(train_args(files, "--out", tmp_path / "f.pt", "--fresh"), capsys)
    assert code == 0 and "saved" in out and torch.load(tmp_path / "f.ckpt.pt", weights_only=True)["step"] == 6

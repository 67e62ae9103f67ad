"""The translator as a person meets it: typed input normalised like the training data, words outside
the toy vocabulary named (and the rest translated), and every command-line error answered in one
sentence with exit status 2 and no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib import en_fr
from course_lib.tokenizer import WordTokenizer
from course_lib.lessons.translate import (TranslationData, build_model, load_source_words, load_translator, main,
                                  model_configs, prepare_source, save_translator, translate, translate_typed)

REPO = Path(__file__).resolve().parents[1]
TYPED = ["the small cat eats the red apple", "we do not see the big dogs"]


@pytest.fixture(scope="module")
def data():
    splits = en_fr.make_splits(seed=0, n_train=3000, n_valid=20, n_test=20, n_long=5)
    tok = WordTokenizer.from_texts(t for pair in splits["train"] for t in pair)
    return TranslationData(tok, splits)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """An untrained (but deterministic) small translator saved as `train` saves one."""
    torch.manual_seed(0)
    cfg = model_configs(data.tokenizer.vocab_size, d_model=16, n_heads=2, enc_dec_layers=1)["encdec"]
    model = build_model("encdec", cfg).eval()
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_translator(str(path), model, "encdec", data.tokenizer, data.source_words())
    return path, model


# ---------------------------------------------------------------- normalising typed input
def test_training_sources_all_end_with_a_full_stop(data):
    # the reason prepare_source adds one: the model never saw a sentence end any other way
    assert all(en.endswith(".") for en, _ in data.splits["train"])


def test_prepare_source_adds_the_full_stop_and_lowercases(data):
    tok = data.tokenizer
    for typed in TYPED:
        assert prepare_source(typed, tok) == (typed + ".", [])
        assert prepare_source(typed.capitalize() + "  ", tok) == (typed + ".", [])
        assert prepare_source(typed + ".", tok) == (typed + ".", [])  # already in the training form
        assert prepare_source(typed + "!", tok) == (typed + ".", [])  # punctuation it never saw -> "."


def test_prepare_source_names_unknown_words_and_keeps_the_rest(data):
    tok, words = data.tokenizer, data.source_words()
    assert "zebra" not in words and "love" not in words and "you" in words
    assert prepare_source("I love you", tok, words) == ("i you.", ["love"])
    src, unknown = prepare_source("The zebra sleeps, the zebra eats", tok, words)
    assert unknown == ["zebra"]  # once, in order
    assert "zebra" not in src and src.endswith(".")
    assert prepare_source("zebra", tok, words) == ("", ["zebra"])  # nothing left to translate


def test_source_words_are_the_english_side_only(data):
    words = set(data.source_words())
    assert {"the", "dogs", "."} <= words
    assert not {"chiens", "le", "la"} & words


def test_typed_sentence_is_translated_as_its_training_form(data, saved):
    # whatever the model, typing without the full stop must give exactly what the training form gives
    _, model = saved
    tok = data.tokenizer
    typed = translate_typed(model, "encdec", tok, TYPED + ["zebra", "the zebra flies", "I love you", "Dogs"],
                            data.source_words())
    assert [t.translation for t in typed[:2]] == translate(model, "encdec", tok, [s + "." for s in TYPED])
    assert typed[2].translation is None and typed[2].unknown == ["zebra"]
    assert typed[3].translation is None and typed[3].source == "the."  # one known word next to unknown ones
    assert typed[4].translation == translate(model, "encdec", tok, ["i you."])[0]  # two known words: translated
    assert typed[5].translation is not None and typed[5].unknown == []  # one word, all known


def test_saved_model_keeps_its_source_words(data, saved):
    path, _ = saved
    assert load_source_words(str(path)) == data.source_words()
    model, family, tok = load_translator(str(path))
    assert family == "encdec" and tok.itos == data.tokenizer.itos


# ---------------------------------------------------------------- the command line
def _main(args, capsys):
    code = 0
    try:
        main(args)
    except SystemExit as done:
        code = done.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_translate_typed_sentences_and_unknown_words(saved, data, capsys):
    path, model = saved
    code, out, err = _main(["translate", str(path), *TYPED, "the zebra flies", "I love you"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [*TYPED, "the zebra flies", "I love you"]
    expected = translate(model, "encdec", data.tokenizer, [s + "." for s in TYPED])
    assert [line.split("\t")[1] for line in lines[:2]] == expected
    n_words = sum(any(c.isalnum() for c in w) for w in data.source_words())
    assert f"'zebra', 'flies' are not among the {n_words} English words" in err and "too little is left" in err
    assert lines[2] == "the zebra flies\t"
    assert f"'love' is not among the {n_words} English words" in err and "translated 'i you.' instead" in err


def _one_sentence_error(code, err):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), err
    return lines[0]


def test_cli_missing_model_file(tmp_path, capsys):
    line = _one_sentence_error(*_main(["translate", str(tmp_path / "nope.pt"), "the dog runs"], capsys)[::2])
    assert "there is no file" in line and "train" in line


def test_cli_checkpoint_or_other_file_instead_of_a_model(tmp_path, capsys):
    ckpt = tmp_path / "m.ckpt.pt"
    torch.save({"step": 3, "rng": [], "model": {}}, ckpt)
    line = _one_sentence_error(*_main(["translate", str(ckpt), "the dog runs"], capsys)[::2])
    assert "training checkpoint" in line
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    line = _one_sentence_error(*_main(["eval", str(text)], capsys)[::2])
    assert "is not a model saved by" in line
    line = _one_sentence_error(*_main(["translate", str(tmp_path), "the dog runs"], capsys)[::2])
    assert "is a folder" in line


def test_cli_missing_or_too_small_tsv(tmp_path, capsys):
    line = _one_sentence_error(*_main(["train", "--tsv", str(tmp_path / "none.tsv"), "--steps", "1"], capsys)[::2])
    assert "there is no file" in line and "--tsv" in line
    small = tmp_path / "small.tsv"
    small.write_text("a\tb\n", encoding="utf-8")
    line = _one_sentence_error(*_main(["train", "--tsv", str(small), "--steps", "1"], capsys)[::2])
    assert "need at least 20" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cli_device_this_machine_lacks(saved, capsys):
    path, _ = saved
    line = _one_sentence_error(*_main(["translate", str(path), "the dog runs", "--device", "cuda"], capsys)[::2])
    assert "no CUDA GPU" in line


def test_cli_errors_in_a_real_process_have_no_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "course_lib.lessons.translate", "translate", str(tmp_path / "x.pt"), "hi"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    _one_sentence_error(proc.returncode, proc.stderr)
    assert proc.stdout == ""


def test_cli_threads_option_sets_torch_threads_and_refuses_nonsense(saved, capsys):
    """``--threads N`` is what the translator runs with; without it the choice is runtime's (COURSE_THREADS here)."""
    path, _ = saved
    before = torch.get_num_threads()
    try:
        code, out, err = _main(["--threads", "1", "translate", str(path), "the dog sleeps"], capsys)
        assert code == 0 and torch.get_num_threads() == 1
        code, out, err = _main(["--threads", "0", "translate", str(path), "the dog sleeps"], capsys)
        assert code == 2 and "argument --threads: must be at least 1, got 0" in err
    finally:
        torch.set_num_threads(before)

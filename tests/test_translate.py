"""The translator pipeline (course_lib.lessons.translate): batches and loss masks against hand examples,
batched decoding against one-sentence-at-a-time decoding, saving and loading, a user's TSV file,
and the command line (single process and a 2-process torchrun)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from course_lib import en_fr
from course_lib.generation import beam_search, generate
from course_lib.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, WordTokenizer
from course_lib.lessons.translate import (FAMILIES, TranslationData, build_model, collate_decoder, collate_encdec, collate_for,
                                  evaluate, load_data, load_translator, loss_for, model_configs, save_translator,
                                  translate, translate_ids)

REPO = Path(__file__).resolve().parents[1]
BATCH = [([7, 8, 9], [10, 11]), ([12], [13, 14, 15])]


# ---------------------------------------------------------------- batches and loss masks
def test_collate_encdec_hand_example():
    b = collate_encdec(BATCH)
    assert b["src"].tolist() == [[7, 8, 9], [12, 0, 0]]
    assert b["tgt_out"].tolist() == [[10, 11, EOS_ID, PAD_ID], [13, 14, 15, EOS_ID]]
    assert b["tgt_in"].tolist() == [[BOS_ID, 10, 11, PAD_ID], [BOS_ID, 13, 14, 15]]


def test_collate_decoder_hand_example():
    b = collate_decoder(BATCH)
    assert b["tokens"].tolist() == [[7, 8, 9, SEP_ID, 10, 11, EOS_ID], [12, SEP_ID, 13, 14, 15, EOS_ID, PAD_ID]]
    assert b["loss_mask"].tolist() == [[False, False, False, False, True, True, True],
                                       [False, False, True, True, True, True, False]]
    assert b["loss_mask"].dtype == torch.bool
    assert b["prefix_len"].tolist() == [4, 2]


def _tiny(family: str, vocab: int = 20, seed: int = 0, sharp: bool = True):
    torch.manual_seed(seed)
    cfg = model_configs(vocab, d_model=16, n_heads=2, enc_dec_layers=1, dropout=0.0)[family]
    model = build_model(family, cfg).eval()
    if sharp:  # a random model's logits are nearly uniform; make its choices clear-cut
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.5)
    return model


def test_decoder_loss_counts_only_target_and_eos():
    """The decoder-only loss equals the cross-entropy of the target tokens and EOS alone."""
    model = _tiny("decoder", sharp=False)
    b = collate_decoder(BATCH)
    loss = loss_for("decoder")(model, b)
    logits = model(b["tokens"])
    terms = []
    for i, (s, t) in enumerate(BATCH):
        for pos in range(len(s), len(s) + len(t) + 1):  # logits at <sep> .. last target word predict t_1 .. EOS
            terms.append(F.cross_entropy(logits[i, pos], b["tokens"][i, pos + 1]))
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_encdec_loss_is_teacher_forced_cross_entropy():
    model = _tiny("encdec", sharp=False)
    b = collate_encdec(BATCH)
    logits = model(b["src"], b["tgt_in"])
    keep = b["tgt_out"] != PAD_ID
    expected = F.cross_entropy(logits[keep], b["tgt_out"][keep])
    torch.testing.assert_close(loss_for("encdec")(model, b), expected)


def test_prefix_lm_loss_uses_the_bidirectional_prefix():
    model = _tiny("decoder", sharp=False)
    b = collate_decoder(BATCH)
    causal, prefix = loss_for("decoder")(model, b), loss_for("prefixlm")(model, b)
    assert torch.isfinite(prefix) and not torch.allclose(causal, prefix)
    # with prefix_len the logits of the first source token depend on the later source tokens
    tokens = b["tokens"][:1]
    changed = tokens.clone()
    changed[0, 2] = 6
    out = lambda t, p: model(t, prefix_len=p)[0, 0]
    assert torch.allclose(out(tokens, None), out(changed, None))
    assert not torch.allclose(out(tokens, b["prefix_len"][:1]), out(changed, b["prefix_len"][:1]))


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family 'encoder'"):
        loss_for("encoder")
    with pytest.raises(ValueError, match="encoder-only model cannot translate"):
        translate_ids(_tiny("encdec"), "encoder-only", [[6, 7]])


def test_every_name_of_a_family_works():
    """The lesson's short names are the families' aliases: the canonical names do the same."""
    b = collate_decoder(BATCH)
    model = _tiny("decoder", sharp=False)
    torch.testing.assert_close(loss_for("prefixlm")(model, b), loss_for("prefix-lm")(model, b))
    assert collate_for("encoder-decoder") is collate_for("encdec") is collate_encdec


def test_matched_parameter_counts():
    cfgs = model_configs(500, d_model=64, enc_dec_layers=2)
    n = {f: build_model(f, c).num_parameters() for f, c in cfgs.items()}
    assert cfgs["decoder"].n_layers == 5 and n["decoder"] == n["prefixlm"]
    assert abs(n["decoder"] / n["encdec"] - 1) < 0.08


# ---------------------------------------------------------------- decoding
SOURCES = [[6, 7, 8], [9], [10, 11, 12, 13, 14], [15, 16], [17, 18, 19], [6]]


def _one_by_one(model, family, src, beam):
    if family == "encdec":
        inputs = torch.tensor([src])
    else:
        inputs = torch.tensor([src + [SEP_ID]])
    kw = dict(eos_id=EOS_ID, pad_id=PAD_ID, bos_id=BOS_ID, prefix_lm=family == "prefixlm")
    n_new = 8
    out = (beam_search(model, inputs, n_new, beam_size=beam, **kw) if beam > 1 else generate(model, inputs, n_new, **kw))[0].tolist()
    out = out[: out.index(EOS_ID)] if EOS_ID in out else out
    return [t for t in out if t != PAD_ID]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 3])
def test_translate_ids_matches_per_sentence_decoding(family, beam):
    model = _tiny(family)
    batched = translate_ids(model, family, SOURCES, beam_size=beam, batch_size=4, max_new_tokens=8)
    single = [_one_by_one(model, family, s, beam) for s in SOURCES]
    assert batched == single
    assert all(PAD_ID not in t and EOS_ID not in t for t in batched)


# ---------------------------------------------------------------- data, saving
def _pairs(n: int = 60, seed: int = 3) -> list[tuple[str, str]]:
    import random

    rng = random.Random(seed)
    return [en_fr.generate_pair(rng, max_words=9) for _ in range(n)]


@pytest.fixture
def tiny_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    pairs = _pairs()
    lines = [f"{en}\t{fr}\tCC-BY 2.0 attribution" for en, fr in pairs] + ["", "one column only"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, pairs


def test_load_data_from_a_user_tsv(tiny_tsv):
    path, pairs = tiny_tsv
    data = load_data(seed=0, tsv=str(path))
    assert sorted(p for split in data.splits.values() for p in split) == sorted(pairs)
    assert len(data.splits["valid"]) == len(data.splits["test"]) >= 1 and data.splits["long"]
    longest = max(len(WordTokenizer.tokenize(en)) for en, _ in data.splits["train"])
    assert all(len(WordTokenizer.tokenize(en)) > longest for en, _ in data.splits["long"])
    words = {w for en, fr in data.splits["train"] for w in WordTokenizer.tokenize(en + " " + fr)}
    assert words <= set(data.tokenizer.itos)
    assert load_data(seed=0, tsv=str(path)).splits == data.splits  # deterministic
    ids = data.ids("train")
    assert len(ids) == len(data.splits["train"]) and all(isinstance(i, int) for i in ids[0][0])


def test_load_data_refuses_a_tiny_file(tmp_path):
    path = tmp_path / "few.tsv"
    en_fr.save_tsv(_pairs(5), path)
    with pytest.raises(ValueError, match="need at least 20"):
        load_data(tsv=str(path))


def test_save_and_load_translator_round_trip(tmp_path, tiny_tsv):
    data = load_data(seed=0, tsv=str(tiny_tsv[0]))
    model = _tiny("encdec", vocab=data.tokenizer.vocab_size)
    path = tmp_path / "sub" / "model.pt"
    save_translator(str(path), model, "encdec", data.tokenizer)
    blob = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert blob["family"] == "encdec" and blob["tokenizer"]["itos"] == data.tokenizer.itos
    loaded, family, tok = load_translator(str(path))
    assert family == "encdec" and tok.itos == data.tokenizer.itos and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    sentences = [en for en, _ in data.splits["test"]]
    assert translate(loaded, family, tok, sentences) == translate(model, "encdec", data.tokenizer, sentences)
    metrics = evaluate(loaded, family, TranslationData(tok, data.splits), "test")
    assert set(metrics) == {"bleu", "chrf", "exact"} and 0 <= metrics["bleu"] <= 100


# ---------------------------------------------------------------- the command line
def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _run(args, timeout=120):
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_cli_train_eval_translate(tmp_path, tiny_tsv):
    path, pairs = tiny_tsv
    out = tmp_path / "m.pt"
    log = _run(["-m", "course_lib.lessons.translate", "train", "--tsv", str(path), "--steps", "3", "--batch-size", "8",
                "--no-progress", "--out", str(out)])
    assert out.exists() and (tmp_path / "m.ckpt.pt").exists() and "saved" in log and "bleu" in log
    log = _run(["-m", "course_lib.lessons.translate", "eval", str(out), "--tsv", str(path), "--split", "test", "--beam", "2"])
    assert log.startswith("encdec on test: bleu")
    log = _run(["-m", "course_lib.lessons.translate", "translate", str(out), pairs[0][0], pairs[1][0]])
    lines = log.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [pairs[0][0], pairs[1][0]]


def test_cli_help_lists_the_commands(capsys):
    from course_lib.lessons.translate import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    log = capsys.readouterr().out
    for cmd in ("train", "eval", "translate"):
        assert cmd in log


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available")
def test_cli_under_torchrun_two_processes(tmp_path, tiny_tsv):
    out = tmp_path / "ddp.pt"
    # --standalone: torchrun picks and holds its own rendezvous port (no free-port race)
    log = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "course_lib.lessons.translate", "train", "--tsv", str(tiny_tsv[0]),
                "--steps", "3", "--batch-size", "8", "--no-progress", "--out", str(out)], timeout=180)
    assert log.count("saved") == 1  # rank 0 only
    model, family, tok = load_translator(str(out))
    ckpt = torch.load(tmp_path / "ddp.ckpt.pt", weights_only=True)
    assert family == "encdec" and ckpt["step"] == 3 and len(ckpt["rng"]) == 2


# ---------------------------------------------------------------- costs
def test_training_flops_counted_and_by_the_6n_rule():
    from course_lib.lessons.translate import stack_parameters, training_flops_6n, training_flops_per_sequence

    pairs = [([6, 7, 8, 9], [10, 11, 12]), ([6, 7], [8, 9, 10, 11])]
    S, T = 3.0, 3.5
    flops = {}
    for family in ("encdec", "decoder"):
        model = _tiny(family, vocab=20, sharp=False).train()
        n = stack_parameters(model)
        assert n["encoder"] + n["decoder"] == model.num_parameters()
        flops[family] = (training_flops_per_sequence(model, family, pairs), training_flops_6n(model, family, S, T))
        assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind
    enc = stack_parameters(_tiny("encdec", sharp=False))
    assert flops["encdec"][1] == 6 * (enc["encoder"] * S + enc["decoder"] * (T + 1))
    assert flops["decoder"][1] == 6 * _tiny("decoder", sharp=False).num_parameters() * (S + T + 2)
    for counted, rule in flops.values():  # the counter also sees attention and the output layer
        assert counted > rule
    assert flops["decoder"][0] > flops["encdec"][0]

"""Racing to a quality target (lesson 05's steps-to-target and FLOPs-to-target measurements)."""
from __future__ import annotations

import pytest

from course_lib import en_fr
from course_lib.tokenizer import WordTokenizer
from course_lib.lessons.translate import (TranslationData, default_train_config, model_configs, race_to_target, steps_to,
                                  train_translator, validation_evaluator)


@pytest.fixture(scope="module")
def data():
    splits = en_fr.make_splits(seed=0, n_train=400, n_valid=16, n_test=8, n_long=4)
    tok = WordTokenizer.from_texts(t for pair in splits["train"] for t in pair)
    return TranslationData(tok, splits)


def test_steps_to_hand_record():
    record = [{"step": 5, "valid_loss": 2.0}, {"step": 10, "valid_loss": 0.9, "bleu": 40.0},
              {"step": 15, "valid_loss": 0.95}, {"step": 20, "valid_loss": 0.5, "bleu": 96.0}]
    assert steps_to(record, "bleu", 95) == 20
    assert steps_to(record, "bleu", 30) == 10
    assert steps_to(record, "valid_loss", 1.0, higher_is_better=False) == 10
    assert steps_to(record, "valid_loss", 0.1, higher_is_better=False) is None


@pytest.mark.parametrize("family", ["encdec", "decoder"])
def test_race_stops_at_the_target_and_follows_the_full_run(data, family):
    cfg = model_configs(data.tokenizer.vocab_size, d_model=16, n_heads=2, enc_dec_layers=1)[family]
    tcfg = default_train_config(steps=12, batch_size=8, warmup_steps=2, eval_every=3, log_every=3, ckpt_every=None,
                                device="cpu", progress=False)
    kw = dict(loss_limit=8, bleu_limit=4)
    # BLEU >= 0 is reached at the first BLEU evaluation (the 2nd call); any loss is <= 1e9
    _, record = race_to_target(family, data, cfg, tcfg, bleu_target=0.0, loss_target=1e9, **kw)
    assert [r["step"] for r in record] == [3, 6]
    assert "bleu" not in record[0] and "bleu" in record[1]
    assert all(r["train_s"] >= 0 for r in record)
    # an unreachable target runs to max_steps
    _, capped = race_to_target(family, data, cfg, tcfg, bleu_target=101.0, loss_target=-1.0, max_steps=9, **kw)
    assert [r["step"] for r in capped] == [3, 6, 9]
    # the same seed, the whole schedule: the race record is the beginning of the full run
    _, history = train_translator(family, data, cfg, tcfg, evaluator=validation_evaluator(family, data, **kw))
    full = {r["step"]: r["valid_loss"] for r in history if "valid_loss" in r}
    assert [full[r["step"]] for r in capped] == [r["valid_loss"] for r in capped]

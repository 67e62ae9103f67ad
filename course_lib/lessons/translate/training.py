"""Lesson 05's models at matched size, their loss, training FLOPs, training, the race to a target,
and saving/loading a trained translator."""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from ... import costs
from ...config import ModelConfig
from ...families import build, stack_parameters
from ...layers import GATED_FFNS
from ...losses import clm_loss, seq2seq_loss
from ...runtime import pick, seed_everything
from ...tokenizer import WordTokenizer
from ...train import TrainConfig, check_writable, train
from .data import TranslationData, _translator, collate_for
from .decoding import evaluate


def loss_for(family: str, label_smoothing: float = 0.0):
    """``loss_fn(model, batch)`` for :func:`course_lib.train.train`."""
    f = _translator(family)
    if f.cross_attention:
        return lambda m, b: seq2seq_loss(m(b["src"], b["tgt_in"]), b["tgt_out"], label_smoothing=label_smoothing)
    return lambda m, b: clm_loss(
        m(b["tokens"], prefix_len=b["prefix_len"] if f.prefix_lm else None), b["tokens"],
        loss_mask=b["loss_mask"], label_smoothing=label_smoothing,
    )



# ----------------------------------------------------------------------------------------------
# Models at matched size
# ----------------------------------------------------------------------------------------------
def model_configs(vocab_size: int, d_model: int = 64, n_heads: int = 4, enc_dec_layers: int = 2,
                  dropout: float = 0.1, max_len: int = 256, **kw) -> dict[str, ModelConfig]:
    """One config per family with (nearly) equal non-embedding parameters.

    Per layer (biases and norms aside): encoder 4d² + 2·d·d_ff, decoder with cross-attention
    8d² + 2·d·d_ff, decoder-only 4d² + 2·d·d_ff. With d_ff = 4d that is 12d², 16d² and 12d²,
    so an encoder-decoder with L + L layers matches a decoder-only model of 28L/12 = 7L/3 layers
    (exactly 7 for L = 3; 5 for L = 2, about 7% more): :func:`course_lib.costs.depth_ratio`.
    RoPE positions, so that no position table limits longer inputs.
    The defaults are lesson 05's model (``benchmarks/translator.py`` measures its quality and training time).
    """
    base = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, dropout=dropout, max_len=max_len, pos="rope")
    base.update(kw)
    ed = ModelConfig(**base, n_layers=enc_dec_layers)
    dec_layers = round(enc_dec_layers / costs.depth_ratio(d_model, ed.d_ff, swiglu=ed.ffn in GATED_FFNS))
    dec = ModelConfig(**base, n_layers=dec_layers)
    return {"encdec": ed, "decoder": dec, "prefixlm": dec}


# ----------------------------------------------------------------------------------------------
# Costs: training FLOPs per sequence (the arithmetic is course_lib.costs'; parameters per stack are
# course_lib.families.stack_parameters, imported above under lesson 05's name)
# ----------------------------------------------------------------------------------------------
def tokens_per_stack(family: str, src_len: float, tgt_len: float) -> dict[str, float]:
    """Tokens each stack reads for one pair in this data format: an encoder-decoder's encoder the
    ``S`` source tokens and its decoder the ``T + 1`` inputs (BOS + target); a decoder-only model's
    one stack all ``S + T + 2`` (source, <sep>, target, <eos>)."""
    if _translator(family).cross_attention:
        return {"encoder": src_len, "decoder": tgt_len + 1}
    return {"encoder": 0, "decoder": src_len + tgt_len + 2}


def training_flops_6n(model: nn.Module, family: str, src_len: float, tgt_len: float) -> float:
    """Training FLOPs per sequence by the rule of thumb "6·N per token" (:func:`course_lib.costs.training_flops_6n`),
    each stack's parameters times the tokens it reads (:func:`tokens_per_stack`)."""
    return costs.training_flops_6n(stack_parameters(model), tokens_per_stack(family, src_len, tgt_len))


def training_flops_per_sequence(model: nn.Module, family: str, pairs: Sequence[tuple[list[int], list[int]]]) -> float:
    """Mean FLOPs of a training step's forward and backward pass per sequence, counted by
    :func:`course_lib.costs.counted_training_flops` on each pair of ``pairs`` (token ids, as
    :meth:`TranslationData.ids` gives them) on its own, so padding adds nothing."""
    collate = collate_for(family)
    return costs.counted_training_flops(model, loss_for(family), [collate([pair]) for pair in pairs])


# ----------------------------------------------------------------------------------------------
# Saving a trained translator
# ----------------------------------------------------------------------------------------------
class TranslatorError(Exception):
    """A problem the command line reports as one sentence (no traceback)."""


def save_translator(path: str, model: nn.Module, family: str, tokenizer: WordTokenizer,
                    source_words: Sequence[str] | None = None) -> None:
    """Weights + config + vocabulary + family (+ the English words of the training data, so that a
    typed sentence's unknown words can be named), loadable with ``torch.load(weights_only=True)``."""
    check_writable(path, "model file")  # a clear error naming the path (it also creates the folders)
    model = getattr(model, "module", model)
    blob = {"family": family, "config": model.cfg.to_dict(), "tokenizer": tokenizer.to_dict(),
            "model": {k: v.cpu() for k, v in model.state_dict().items()}}
    if source_words is not None:
        blob["source_words"] = sorted(source_words)
    torch.save(blob, path)


def _read_translator(path: str) -> dict:
    """The saved blob, or a :class:`TranslatorError` that says in one sentence what is wrong."""
    if not os.path.exists(path):
        raise TranslatorError(f"there is no file {path!r}; train a model first with "
                              f"`python -m course_lib.lessons.translate train --out {path}`, or give the path of a saved one.")
    if os.path.isdir(path):
        raise TranslatorError(f"{path!r} is a folder; give the path of a model file saved by `python -m course_lib.lessons.translate train`.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file gets the same one-sentence answer
        raise TranslatorError(f"{path!r} is not a model saved by `python -m course_lib.lessons.translate train` "
                              "(PyTorch cannot read it as a saved model).") from None
    if not isinstance(blob, dict) or not {"family", "config", "tokenizer", "model"} <= set(blob):
        if isinstance(blob, dict) and "step" in blob and "rng" in blob:
            raise TranslatorError(f"{path!r} is a training checkpoint, not a saved model; give the model file "
                                  "(the --out path of `train`, e.g. runs/translator.pt).")
        raise TranslatorError(f"{path!r} is not a model saved by `python -m course_lib.lessons.translate train`.")
    return blob


def load_translator(path: str, device: str | torch.device = "cpu") -> tuple[nn.Module, str, WordTokenizer]:
    """``(model in eval mode, family, tokenizer)`` from a file written by :func:`save_translator`."""
    blob = _read_translator(path)
    model = build(blob["family"], ModelConfig(**blob["config"]))
    model.load_state_dict(blob["model"])
    return model.to(device).eval(), blob["family"], WordTokenizer.from_dict(blob["tokenizer"])


def load_source_words(path: str) -> list[str] | None:
    """The English words a saved translator was trained on (``None`` for files saved without them)."""
    return _read_translator(path).get("source_words")


# ----------------------------------------------------------------------------------------------
# Training entry point
# ----------------------------------------------------------------------------------------------
def default_train_config(**overrides) -> TrainConfig:
    """The schedule lesson 05 uses (with :func:`model_configs`' default size): enough for the
    encoder-decoder to pass 95 BLEU in full mode, in a few minutes on a 2-core CPU."""
    cfg = dict(steps=pick(2000, 60), batch_size=64, lr=2e-3, warmup_steps=pick(200, 10), weight_decay=0.01,
               decay="cosine", min_lr_ratio=0.02, eval_every=None, log_every=pick(50, 10), ckpt_every=pick(500, 1000))
    cfg.update(overrides)
    return TrainConfig(**cfg)


def train_translator(family: str, data: TranslationData, model_cfg: ModelConfig, train_cfg: TrainConfig,
                     *, label_smoothing: float = 0.0, evaluate_split: str | None = None, eval_limit: int = 200,
                     evaluator=None, resume: bool = True) -> tuple[nn.Module, list[dict]]:
    """Build and train one family's model; returns ``(model, history)``. The initial weights are
    drawn after seeding every RNG with ``train_cfg.seed``, so a run does not depend on what ran before.
    ``evaluate_split``: BLEU / exact match on its first ``eval_limit`` sentences at every evaluation;
    or pass any ``evaluator(model) -> dict`` (e.g. :func:`validation_evaluator`). ``resume=False``
    ignores (and later overwrites) an existing checkpoint at ``train_cfg.ckpt_path``."""
    seed_everything(train_cfg.seed)
    model = build(family, model_cfg)
    if evaluator is None and evaluate_split:
        evaluator = lambda m: evaluate(m, family, data, evaluate_split, limit=eval_limit)
    history = train(model, loss_for(family, label_smoothing), data.ids("train"), train_cfg,
                    collate=collate_for(family), evaluate=evaluator, resume=resume)
    return model, history


class _TargetReached(Exception):
    pass


def validation_evaluator(family: str, data: TranslationData, *, loss_limit: int = 200, bleu_limit: int = 100,
                         bleu_every: int = 2, split: str = "valid"):
    """An ``evaluate(model)`` for :func:`course_lib.train.train` that is cheap enough to call often:
    the teacher-forced loss per target token on the first ``loss_limit`` pairs of ``split`` (one batch;
    its exp is the perplexity) at every call, and greedy BLEU / exact match on the first
    ``bleu_limit`` sentences at every ``bleu_every``-th call. ``eval_s`` is the evaluation time
    spent so far (to subtract from training wall time)."""
    batch = collate_for(family)(data.ids(split)[:loss_limit])
    loss_fn = loss_for(family)
    state = {"calls": 0, "eval_s": 0.0}

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        import time

        t0 = time.perf_counter()
        state["calls"] += 1
        device = next(model.parameters()).device
        out = {"valid_loss": float(loss_fn(model, {k: v.to(device) for k, v in batch.items()}))}
        if state["calls"] % bleu_every == 0:
            m = evaluate(model, family, data, split, limit=bleu_limit)
            out.update(bleu=m["bleu"], exact=m["exact"])
        state["eval_s"] += time.perf_counter() - t0
        out["eval_s"] = state["eval_s"]
        return out

    return evaluate_fn


def steps_to(record: Sequence[dict], key: str, target: float, *, higher_is_better: bool = True) -> int | None:
    """The first evaluated step at which ``record[i][key]`` reached ``target`` (``None`` if never)."""
    for row in record:
        if key in row and (row[key] >= target if higher_is_better else row[key] <= target):
            return int(row["step"])
    return None


def race_to_target(family: str, data: TranslationData, model_cfg: ModelConfig, train_cfg: TrainConfig, *,
                   bleu_target: float = 95.0, loss_target: float = 0.1, max_steps: int | None = None,
                   **evaluator_kw) -> tuple[nn.Module, list[dict]]:
    """Train like :func:`train_translator` (same schedule, seed and data order) but stop at the first
    evaluation where validation BLEU >= ``bleu_target`` *and* validation loss <= ``loss_target``
    have both been reached (or after ``max_steps``). ``train_cfg.eval_every`` sets how finely the
    step is resolved. Because only the stopping point differs, the record is exactly the beginning of
    a full run with the same seed. Returns ``(model, record)``: one row per evaluation with ``step``,
    ``valid_loss``, ``bleu`` / ``exact`` (every other row) and ``train_s`` (wall time without evaluations)."""
    import dataclasses
    import time

    if not train_cfg.eval_every:
        raise ValueError("race_to_target needs train_cfg.eval_every (how often to check the targets).")
    cfg = dataclasses.replace(train_cfg, ckpt_path=None, progress=False)
    base_eval = validation_evaluator(family, data, **evaluator_kw)
    record: list[dict] = []
    reached = {"bleu": False, "loss": False}
    t0 = time.perf_counter()

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        row = base_eval(model)
        step = min((len(record) + 1) * cfg.eval_every, cfg.steps)
        row = {"step": step, **row, "train_s": time.perf_counter() - t0 - row["eval_s"]}
        record.append(row)
        reached["bleu"] |= row.get("bleu", -1.0) >= bleu_target
        reached["loss"] |= row["valid_loss"] <= loss_target
        if (reached["bleu"] and reached["loss"]) or (max_steps is not None and step >= max_steps):
            raise _TargetReached
        return row

    seed_everything(cfg.seed)
    model = build(family, model_cfg)
    try:
        train(model, loss_for(family), data.ids("train"), cfg, collate=collate_for(family), evaluate=evaluate_fn)
    except _TargetReached:
        pass
    return model.eval(), record

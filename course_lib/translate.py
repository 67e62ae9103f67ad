"""The toy English→French translator: data, the three model families, training, decoding and
evaluation in one pipeline — used by lesson 05 and runnable from the command line.

Families, at matched non-embedding parameter counts (see :func:`model_configs`), by their short
names (:mod:`course_lib.families` knows them):

* ``encdec``   encoder-decoder; source -> encoder, target -> decoder (teacher forcing)
* ``decoder``  decoder-only, causal over ``source <sep> target <eos>``, loss on the target only
* ``prefixlm`` the same decoder-only model, but bidirectional over ``source <sep>`` ("BiAttn")

Training FLOPs per sequence (:func:`training_flops_6n`, :func:`training_flops_per_sequence`) are
:mod:`course_lib.costs`' arithmetic given the tokens each stack reads in this data format.

Command line (single process, or ``torchrun --nproc_per_node=N -m course_lib.translate train ...``
for DistributedDataParallel: NCCL on GPUs, gloo on CPUs; rank 0 saves and evaluates)::

    python -m course_lib.translate train --family encdec --out runs/encdec.pt
    python -m course_lib.translate eval runs/encdec.pt --split test --beam 4
    python -m course_lib.translate translate runs/encdec.pt "the small dogs do not see the red car."
    python -m course_lib.translate translate runs/encdec.pt - < sentences.txt   # one sentence per line
    python -m course_lib.translate train --tsv my_pairs.tsv ...   # your own English<TAB>French file

``train`` resumes from its checkpoint (``runs/encdec.ckpt.pt`` next to ``runs/encdec.pt``) if one
exists (``--fresh`` starts over instead). The checkpoint is saved every ``--ckpt-every`` steps, at
the end, and when the run is stopped with Ctrl-C or SIGTERM (single process). ``runs/`` and ``*.pt``
are git-ignored: weights never go into the repository.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .data import collate_pairs
from .layers import GATED_FFNS
from . import costs
from .en_fr import corpus_bleu, corpus_chrf, exact_match, load_tsv, make_splits
from .families import SHORT_NAMES, Family, build, stack_parameters
from .generation import beam_search, generate
from .losses import clm_loss, seq2seq_loss
from .runtime import pick, seed_everything
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, WordTokenizer, detokenize, pad_batch
from .train import FRESH_HINT, CheckpointError, TrainConfig, TrainingInterrupted, check_writable, train

FAMILIES = tuple(SHORT_NAMES)  # ("encdec", "decoder", "prefixlm")
build_model = build  # lesson 05's name for families.build


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class TranslationData:
    """Sentence pairs by split and one joint word vocabulary for both languages."""

    tokenizer: WordTokenizer
    splits: dict[str, list[tuple[str, str]]]

    def ids(self, split: str) -> list[tuple[list[int], list[int]]]:
        """``[(source ids, target ids), ...]`` without special tokens."""
        enc = self.tokenizer.encode
        return [(enc(en), enc(fr)) for en, fr in self.splits[split]]

    def source_words(self) -> list[str]:
        """Every token of the training sources (the English the model has seen), sorted."""
        tokenize = self.tokenizer.tokenize
        return sorted({t for en, _ in self.splits["train"] for t in tokenize(en)})


def load_data(seed: int = 0, n_train: int | None = None, tsv: str | None = None) -> TranslationData:
    """The generated fragment (default) or a user's ``English<TAB>French`` file.

    A TSV file is shuffled with ``seed`` and cut like the generated data: its longest 5% of
    pairs (by English length; at least the longest ones, if many tie) become the ``long`` split,
    the rest is split 90/5/5 into train/valid/test.
    """
    if tsv is None:
        n_train = n_train if n_train is not None else pick(60_000, 60_000)
        splits = make_splits(seed=seed, n_train=n_train)
    else:
        if not os.path.isfile(tsv):
            raise FileNotFoundError(f"there is no file {tsv!r}; give a text file with one English<TAB>French pair per line.")
        pairs = load_tsv(tsv)
        if len(pairs) < 20:
            raise ValueError(f"{tsv} has only {len(pairs)} usable sentence pairs; need at least 20.")
        random.Random(seed).shuffle(pairs)
        tok_len = lambda p: len(WordTokenizer.tokenize(p[0]))
        lengths = sorted(tok_len(p) for p in pairs)
        cut = lengths[int(0.95 * (len(pairs) - 1))]
        if cut == lengths[-1]:  # ties at the maximum: the longest pairs alone form `long`
            cut = max((n for n in lengths if n < cut), default=cut)
        short, long = [p for p in pairs if tok_len(p) <= cut], [p for p in pairs if tok_len(p) > cut]
        n_hold = max(1, len(short) // 20)
        splits = {"train": short[2 * n_hold:], "valid": short[:n_hold], "test": short[n_hold:2 * n_hold], "long": long}
        if n_train is not None:
            splits["train"] = splits["train"][:n_train]
    tokenizer = WordTokenizer.from_texts(t for pair in splits["train"] for t in pair)
    return TranslationData(tokenizer, splits)


def collate_encdec(batch: Sequence[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """Teacher forcing: ``src (B, S)`` = the source ids; ``tgt_out (B, T)`` = target + EOS (what to
    predict); ``tgt_in (B, T)`` = BOS + target (the target shifted right), all right-padded.
    Lesson 04's :func:`course_lib.data.collate_pairs`, under the name lesson 05 gives it."""
    return collate_pairs(batch)


def collate_decoder(batch: Sequence[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """``tokens (B, L)`` = source <sep> target <eos> (right-padded); ``loss_mask`` marks the tokens
    to predict (target and EOS); ``prefix_len (B,)`` = len(source) + 1 for the prefix-LM."""
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        loss_mask[i, len(s) + 1 : len(s) + 2 + len(t)] = True
    prefix_len = torch.tensor([len(s) + 1 for s, _ in batch])
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": prefix_len}


def collate_for(family: str):
    return collate_encdec if _translator(family).cross_attention else collate_decoder


def loss_for(family: str, label_smoothing: float = 0.0):
    """``loss_fn(model, batch)`` for :func:`course_lib.train.train`."""
    f = _translator(family)
    if f.cross_attention:
        return lambda m, b: seq2seq_loss(m(b["src"], b["tgt_in"]), b["tgt_out"], label_smoothing=label_smoothing)
    return lambda m, b: clm_loss(
        m(b["tokens"], prefix_len=b["prefix_len"] if f.prefix_lm else None), b["tokens"],
        loss_mask=b["loss_mask"], label_smoothing=label_smoothing,
    )


def _translator(family: str) -> Family:
    """The :class:`Family` of ``family`` (any of its names), which must be able to translate."""
    f = Family(family)
    if not f.generates:
        raise ValueError(f"an {f} model cannot translate (it does not generate); use one of {FAMILIES}.")
    return f


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
# Decoding and evaluation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def translate_ids(model: nn.Module, family: str, sources: Sequence[list[int]], *, beam_size: int = 1,
                  batch_size: int = 256, max_new_tokens: int | None = None, length_penalty: float = 1.0) -> list[list[int]]:
    """Translate token-id sources; returns target ids without BOS/EOS/padding.

    Decoder-only prompts (``source <sep>``) must share a length within a batch, so sources are
    grouped by length; encoder-decoder sources are simply padded. A source longer than
    :func:`longest_source` allows is refused (the model would read positions it never had).
    """
    f = _translator(family)
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_size must be a whole number >= 1 (1 = greedy); got {beam_size!r}.")
    limit, max_len = longest_source(model, family), getattr(model, "module", model).cfg.max_len
    for i, src in enumerate(sources):
        if not 1 <= len(src) <= limit:
            what = "is empty" if not src else f"has {len(src)} tokens, more than the {limit} a {family} model with max_len={max_len} can translate"
            raise ValueError(f"source {i} {what}; give sentences of 1 to {limit} tokens (split longer text into sentences).")
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[int]] = [[] for _ in sources]
    groups: list[list[int]] = []
    for i in order:  # consecutive chunks; decoder-only chunks also split at every length change
        if groups and len(groups[-1]) < batch_size and (f.cross_attention or len(sources[groups[-1][0]]) == len(sources[i])):
            groups[-1].append(i)
        else:
            groups.append([i])
    for idx in groups:
        longest = max(len(sources[i]) for i in idx)
        # as long as asked (or twice the source, plus some), but never past the model's last position
        room = max_len if f.cross_attention else max_len - longest
        n_new = min(max_new_tokens or 2 * longest + 10, room)
        if f.cross_attention:
            inputs = pad_batch([sources[i] for i in idx]).to(device)
        else:
            inputs = torch.tensor([sources[i] + [SEP_ID] for i in idx], device=device)
        kw = dict(eos_id=EOS_ID, pad_id=PAD_ID, bos_id=BOS_ID, prefix_lm=f.prefix_lm)
        if beam_size > 1:
            out = beam_search(model, inputs, n_new, beam_size=beam_size, length_penalty=length_penalty, **kw)
        else:
            out = generate(model, inputs, n_new, **kw)
        for row, i in zip(out.tolist(), idx):
            results[i] = [t for t in row[: row.index(EOS_ID)] if t != PAD_ID] if EOS_ID in row else [t for t in row if t != PAD_ID]
    return results


def translate(model: nn.Module, family: str, tokenizer: WordTokenizer, sentences: Sequence[str], **kw) -> list[str]:
    """English sentences -> French sentences."""
    _check_sentences(sentences)
    ids = translate_ids(model, family, [tokenizer.encode(s) for s in sentences], **kw)
    return [tokenizer.decode(t) for t in ids]


def _check_sentences(sentences) -> None:
    if isinstance(sentences, str):  # iterating over it would translate it letter by letter
        raise TypeError(f"sentences must be a list of strings; got one string ({_shorten(sentences)!r}): wrap it as [text].")


def longest_source(model: nn.Module, family: str) -> int:
    """The longest source (in tokens) :func:`translate_ids` accepts: an encoder-decoder reads up to
    ``max_len`` source tokens; a decoder-only prompt needs room for ``source <sep>`` and a translation
    as long as the source within its ``max_len`` positions."""
    max_len = getattr(model, "module", model).cfg.max_len
    return max_len if _translator(family).cross_attention else (max_len - 1) // 2


SENTENCE_END = (".", "!", "?")


def split_sentences(text: str) -> list[str]:
    """Typed text -> its sentences: one per line, and a line split after each ``.``, ``!`` or ``?``
    that a space follows (the models were trained on one sentence at a time)."""
    return [s for line in text.splitlines() for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s]


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def prepare_source(text: str, tokenizer: WordTokenizer, source_words=None) -> tuple[str, list[str]]:
    """Bring a sentence someone typed into the form the training sources have.

    Lowercased and tokenized like the data; a sentence without final punctuation gets the full
    stop every training sentence ends with (without it the model, which never saw a sentence end
    without one, can repeat words or run on). Words outside ``source_words`` (default: the
    tokenizer's vocabulary) are left out, since the model never saw them, and returned so the
    caller can say so; unknown punctuation is dropped silently.
    Returns ``(text as the model will read it, [unknown words, in order, once each])``.
    """
    known = set(source_words) if source_words is not None else set(tokenizer.stoi)
    tokens = tokenizer.tokenize(text)
    unknown = list(dict.fromkeys(t for t in tokens if t not in known and _is_word(t)))
    kept = [t for t in tokens if t in known]
    if any(_is_word(t) for t in kept) and kept[-1] not in SENTENCE_END:
        end = next((p for p in SENTENCE_END if p in known), None)
        if end is not None:
            kept.append(end)
    return detokenize(kept), unknown


@dataclass
class TypedTranslation:
    """One typed sentence: what the model read, what it wrote, and the words it could not use."""

    text: str  # as typed
    source: str  # normalised, unknown words left out (what the model reads)
    unknown: list[str]  # words outside the vocabulary
    translation: str | None  # None when too little is left, or the sentence is too long (see translate_typed)
    too_long: bool = False  # longer than the model can read (see longest_source): left untranslated


def translate_typed(model: nn.Module, family: str, tokenizer: WordTokenizer, sentences: Sequence[str],
                    source_words=None, **kw) -> list[TypedTranslation]:
    """Translate sentences as a person types them (any case, with or without the final full stop,
    possibly with words the toy vocabulary lacks): see :func:`prepare_source`. A sentence is left
    untranslated (``translation=None``) when no known word remains, or only one next to unknown words,
    or when it is longer than :func:`longest_source` (then ``too_long`` is True)."""
    _check_sentences(sentences)
    prepared = [prepare_source(s, tokenizer, source_words) for s in sentences]
    limit = longest_source(model, family)
    too_long = {i for i, (src, _) in enumerate(prepared) if len(tokenizer.encode(src)) > limit}

    def enough(src: str, unknown: list[str]) -> bool:  # with words missing, one known word alone says nothing
        n_known = sum(_is_word(t) for t in tokenizer.tokenize(src))
        return n_known >= (2 if unknown else 1)

    todo = [i for i, (src, unknown) in enumerate(prepared) if enough(src, unknown) and i not in too_long]
    outs = translate(model, family, tokenizer, [prepared[i][0] for i in todo], **kw) if todo else []
    done = dict(zip(todo, outs))
    return [TypedTranslation(text, src, unknown, done.get(i), i in too_long)
            for i, (text, (src, unknown)) in enumerate(zip(sentences, prepared))]


def evaluate(model: nn.Module, family: str, data: TranslationData, split: str = "test", *,
             limit: int | None = None, **kw) -> dict[str, float]:
    """BLEU and chrF (sacrebleu) and exact match (%) of the model's translations of ``split``."""
    if split not in data.splits:
        raise ValueError(f"split must be one of {sorted(data.splits)}; got {split!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit is how many sentences to score, a whole number >= 1 (or None for all); got {limit!r}.")
    pairs = data.splits[split][:limit]
    hyps = translate(model, family, data.tokenizer, [en for en, _ in pairs], **kw)
    refs = [data.tokenizer.decode(data.tokenizer.encode(fr)) for _, fr in pairs]  # normalised like hyps
    return {"bleu": corpus_bleu(hyps, refs), "chrf": corpus_chrf(hyps, refs), "exact": 100.0 * exact_match(hyps, refs)}


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
                              f"`python -m course_lib.translate train --out {path}`, or give the path of a saved one.")
    if os.path.isdir(path):
        raise TranslatorError(f"{path!r} is a folder; give the path of a model file saved by `python -m course_lib.translate train`.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file gets the same one-sentence answer
        raise TranslatorError(f"{path!r} is not a model saved by `python -m course_lib.translate train` "
                              "(PyTorch cannot read it as a saved model).") from None
    if not isinstance(blob, dict) or not {"family", "config", "tokenizer", "model"} <= set(blob):
        if isinstance(blob, dict) and "step" in blob and "rng" in blob:
            raise TranslatorError(f"{path!r} is a training checkpoint, not a saved model; give the model file "
                                  "(the --out path of `train`, e.g. runs/translator.pt).")
        raise TranslatorError(f"{path!r} is not a model saved by `python -m course_lib.translate train`.")
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


def default_ckpt_path(out: str) -> str:
    """The training checkpoint next to the saved model: ``runs/m.pt`` -> ``runs/m.ckpt.pt``."""
    root, ext = os.path.splitext(out)
    return root + ".ckpt" + (ext or ".pt")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the interval, or a one-line usage error saying which."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"must be in {lo}{low}, {high}{hi}, got {text}")
        return value

    return parse


def _d_model(text: str) -> int:
    value = _positive_int(text)
    if value % 4:  # model_configs' 4 heads must divide it
        raise argparse.ArgumentTypeError(f"must be a multiple of 4 (the number of attention heads), got {value}")
    return value


def _device(name: str | None) -> torch.device:
    """The requested device, or a :class:`TranslatorError` if this machine does not have it."""
    from .runtime import pick_device

    try:
        return pick_device(name)
    except ValueError as e:
        raise TranslatorError(f"--device {name}: {e}") from None


def _typed_sentences(args_sentences: Sequence[str]) -> list[str]:
    """The sentences to translate: the arguments, or standard input for ``-`` (or none, when piped),
    one per line; lines are split into sentences (:func:`split_sentences`)."""
    import sys

    texts = list(args_sentences)
    if not texts or "-" in texts:
        if not texts and sys.stdin.isatty():
            raise TranslatorError("give the sentences to translate after the model file, or pipe them in, one per line.")
        piped = sys.stdin.read()
        texts = [piped if t == "-" else t for t in texts] if texts else [piped]
    return [s for text in texts for s in split_sentences(text)]


def _load_data_or_explain(seed: int, n_train: int | None, tsv: str | None) -> TranslationData:
    if tsv is not None and not os.path.isfile(tsv):
        raise TranslatorError(f"there is no file {tsv!r}; --tsv needs a text file with one English<TAB>French pair per line.")
    try:
        return load_data(seed, n_train, tsv)
    except UnicodeDecodeError:
        raise TranslatorError(f"{tsv!r} is not UTF-8 text; save it as UTF-8 (one English<TAB>French pair per line).") from None
    except ValueError as e:  # e.g. too few pairs
        raise TranslatorError(str(e).rstrip(".") + ".") from None


def _vocabulary_note(source_words: Sequence[str] | None, tokenizer: WordTokenizer) -> str:
    if source_words is not None:
        return f"the {sum(_is_word(w) for w in source_words)} English words of its training data"
    return f"its vocabulary of {sum(_is_word(w) for w in tokenizer.itos)} English and French words"


def _run_translate(args) -> None:
    import sys

    model, family, tok = load_translator(args.model, _device(args.device))
    source_words = load_source_words(args.model)
    results = translate_typed(model, family, tok, _typed_sentences(args.sentences), source_words, beam_size=args.beam)
    for r in results:
        print(f"{r.text}\t{r.translation if r.translation is not None else ''}")
        if r.too_long:
            print(f"note: {_shorten(r.text)!r} has {len(tok.encode(r.source))} tokens, more than the {longest_source(model, family)} "
                  f"this {family} model can read (its max_len is {model.cfg.max_len}); split it into shorter sentences.",
                  file=sys.stderr)
        elif r.unknown:
            words = ", ".join(repr(w) for w in r.unknown)
            what = (f"translated {r.source!r} instead" if r.translation is not None else
                    "too little is left to translate")
            print(f"note: {words} {'is' if len(r.unknown) == 1 else 'are'} not among {_vocabulary_note(source_words, tok)} "
                  f"(a toy fragment of English); {what}.", file=sys.stderr)
        elif r.translation is None:
            print(f"note: {r.text!r} has no words to translate.", file=sys.stderr)


def _shorten(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def main(argv: Sequence[str] | None = None) -> None:
    """The command line. Every expected problem (a missing or wrong model file, a missing TSV file,
    a device this machine lacks, ...) ends with one sentence on stderr and exit status 2, no traceback;
    ``--debug`` shows the traceback instead."""
    import sys

    p = argparse.ArgumentParser(prog="python -m course_lib.translate", description=__doc__.split("\n\n")[0])
    p.add_argument("--debug", action="store_true", help="show the full traceback when something goes wrong")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one family's translator (resumes from its checkpoint if one exists)")
    t.add_argument("--family", choices=FAMILIES, default="encdec")
    t.add_argument("--out", default="runs/translator.pt", help="where to save the trained model")
    t.add_argument("--ckpt", default=None, help="training checkpoint for resume (default: runs/translator.ckpt.pt for "
                   "--out runs/translator.pt; *.pt files are git-ignored)")
    t.add_argument("--ckpt-every", type=_positive_int, default=None, help="save the checkpoint every this many steps "
                   "(default 500; it is also saved at the end and when the run is interrupted with Ctrl-C or SIGTERM)")
    t.add_argument("--fresh", action="store_true", help="start from scratch, ignoring (and later replacing) an existing checkpoint")
    t.add_argument("--tsv", default=None, help="your own English<TAB>French file instead of the generated data")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=_positive_int, default=None)
    t.add_argument("--steps", type=_positive_int, default=None)
    t.add_argument("--batch-size", type=_positive_int, default=None, help="global batch (split over torchrun processes)")
    t.add_argument("--lr", type=_number(0, math.inf, low_open=True, high_open=True), default=None)
    t.add_argument("--d-model", type=_d_model, default=None)
    t.add_argument("--layers", type=_positive_int, default=None, help="encoder and decoder depth of the encoder-decoder "
                   "(the decoder-only models get the depth that matches its parameters)")
    t.add_argument("--dropout", type=_number(0, 1, high_open=True), default=None)
    t.add_argument("--label-smoothing", type=_number(0, 1), default=0.0)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    t.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("eval", help="BLEU / chrF / exact match of a saved model")
    e.add_argument("model")
    e.add_argument("--split", default="test", choices=("train", "valid", "test", "long"))
    e.add_argument("--beam", type=_positive_int, default=1, help="beam size (1 = greedy)")
    e.add_argument("--length-penalty", type=_number(-math.inf, math.inf, low_open=True, high_open=True), default=1.0)
    e.add_argument("--tsv", default=None, help="the TSV file the model was trained on (default: generated data)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--limit", type=_positive_int, default=None, help="only the first LIMIT sentences")
    e.add_argument("--device", default=None)
    s = sub.add_parser("translate", help="translate sentences given on the command line, or one per line on standard input "
                       "(any case, full stop optional)")
    s.add_argument("model")
    s.add_argument("sentences", nargs="*", help="sentences to translate; - (or none) reads them from standard input, one per line")
    s.add_argument("--beam", type=_positive_int, default=1)
    s.add_argument("--device", default=None)
    args = p.parse_args(argv)
    try:
        _run(args)
    except KeyboardInterrupt as err:
        print(f"error: {_interrupted(args, err)}", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:  # noqa: BLE001 - the CLI answers in one sentence; --debug shows the traceback
        if args.debug:
            raise
        if isinstance(err, (TranslatorError, CheckpointError)):
            message = str(err).replace(FRESH_HINT, "delete it, or add --fresh to start over")
        elif isinstance(err, OSError) and err.filename is not None:
            message = f"cannot use {err.filename!r}: {err.strerror or err}."
        else:
            first = str(err).splitlines()[0] if str(err) else ""
            message = f"{type(err).__name__}: {first} (run again with --debug for the full traceback)."
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _interrupted(args, err: KeyboardInterrupt) -> str:
    """What an interrupted command did; "run the same command again" only where that resumes something."""
    if isinstance(err, TrainingInterrupted):
        return (f"interrupted after step {err.step} of {err.steps}; the checkpoint {err.path!r} is saved, so running the same "
                "command again resumes from there.")
    ckpt = (args.ckpt or default_ckpt_path(args.out)) if args.cmd == "train" else None
    if ckpt and os.path.isfile(ckpt) and not args.fresh:
        return f"interrupted; running the same command again resumes from the checkpoint {ckpt!r}."
    return "interrupted before anything was saved."


def _run(args) -> None:
    if args.cmd == "train":
        ckpt = args.ckpt or default_ckpt_path(args.out)
        try:  # both now, not after training
            check_writable(args.out, "model file")
            check_writable(ckpt, "checkpoint")
        except ValueError as e:
            raise TranslatorError(str(e)) from None
        device = _device(args.device) if args.device else None
        data = _load_data_or_explain(args.seed, args.n_train, args.tsv)
        over = {k: v for k, v in dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                      device=str(device) if device else None).items() if v is not None}
        if args.ckpt_every is not None:
            over["ckpt_every"] = args.ckpt_every
        tcfg = default_train_config(seed=args.seed, ckpt_path=ckpt, progress=not args.no_progress, **over)
        size = {k: v for k, v in dict(d_model=args.d_model, enc_dec_layers=args.layers, dropout=args.dropout).items() if v is not None}
        mcfg = model_configs(data.tokenizer.vocab_size, **size)[args.family]
        model, history = train_translator(args.family, data, mcfg, tcfg, label_smoothing=args.label_smoothing,
                                          resume=not args.fresh)
        if int(os.environ.get("RANK", "0")) == 0:
            save_translator(args.out, model, args.family, data.tokenizer, data.source_words())
            metrics = evaluate(model.eval(), args.family, data, "valid", limit=500)
            print(f"saved {args.out} ({args.family}, {model.num_parameters():,} non-embedding parameters, "
                  f"{history[-1]['elapsed_s']:.0f} s); final train loss {history[-1]['loss']:.4f}; valid (first 500): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    elif args.cmd == "eval":
        model, family, tok = load_translator(args.model, _device(args.device))
        data = _load_data_or_explain(args.seed, None, args.tsv)
        data = TranslationData(tok, data.splits)  # the vocabulary the model was trained with
        metrics = evaluate(model, family, data, args.split, limit=args.limit, beam_size=args.beam, length_penalty=args.length_penalty)
        print(f"{family} on {args.split}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    else:
        _run_translate(args)


if __name__ == "__main__":
    main()

"""The toy English→French translator: data, the three model families, training, decoding and
evaluation in one pipeline — used by lesson 05 and runnable from the command line.

Families, at matched non-embedding parameter counts (see :func:`model_configs`):

* ``encdec``   encoder-decoder; source -> encoder, target -> decoder (teacher forcing)
* ``decoder``  decoder-only, causal over ``source <sep> target <eos>``, loss on the target only
* ``prefixlm`` the same decoder-only model, but bidirectional over ``source <sep>`` ("BiAttn")

Costs (:func:`stack_parameters`, :func:`training_flops_6n`, :func:`training_flops_per_sequence`)
support the lesson's comparison of training FLOPs per sequence.

Command line (single process, or ``torchrun --nproc_per_node=N -m course_lib.translate train ...``
for DistributedDataParallel: NCCL on GPUs, gloo on CPUs; rank 0 saves and evaluates)::

    python -m course_lib.translate train --family encdec --out runs/encdec.pt
    python -m course_lib.translate eval runs/encdec.pt --split test --beam 4
    python -m course_lib.translate translate runs/encdec.pt "the small dogs do not see the red car."
    python -m course_lib.translate train --tsv my_pairs.tsv ...   # your own English<TAB>French file

``train`` resumes from its checkpoint (``runs/encdec.ckpt.pt`` next to ``runs/encdec.pt``) if one
exists. ``runs/`` and ``*.pt`` are git-ignored: weights never go into the repository.
"""
from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .data import collate_pairs
from .en_fr import corpus_bleu, corpus_chrf, exact_match, load_tsv, make_splits
from .generation import beam_search, generate
from .losses import clm_loss, seq2seq_loss
from .models import DecoderOnly, EncoderDecoder
from .runtime import pick, seed_everything
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, WordTokenizer, pad_batch
from .train import TrainConfig, train

FAMILIES = ("encdec", "decoder", "prefixlm")


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
    _check_family(family)
    return collate_encdec if family == "encdec" else collate_decoder


def loss_for(family: str, label_smoothing: float = 0.0):
    """``loss_fn(model, batch)`` for :func:`course_lib.train.train`."""
    _check_family(family)
    if family == "encdec":
        return lambda m, b: seq2seq_loss(m(b["src"], b["tgt_in"]), b["tgt_out"], label_smoothing=label_smoothing)
    prefix = family == "prefixlm"
    return lambda m, b: clm_loss(
        m(b["tokens"], prefix_len=b["prefix_len"] if prefix else None), b["tokens"],
        loss_mask=b["loss_mask"], label_smoothing=label_smoothing,
    )


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")


# ----------------------------------------------------------------------------------------------
# Models at matched size
# ----------------------------------------------------------------------------------------------
def model_configs(vocab_size: int, d_model: int = 64, n_heads: int = 4, enc_dec_layers: int = 2,
                  dropout: float = 0.1, max_len: int = 256, **kw) -> dict[str, ModelConfig]:
    """One config per family with (nearly) equal non-embedding parameters.

    Per layer (biases and norms aside): encoder 4d² + 2·d·d_ff, decoder with cross-attention
    8d² + 2·d·d_ff, decoder-only 4d² + 2·d·d_ff. With d_ff = 4d that is 12d², 16d² and 12d²,
    so an encoder-decoder with L + L layers matches a decoder-only model of 28L/12 = 7L/3 layers
    (exactly 7 for L = 3; 5 for L = 2, about 7% more). RoPE positions, so that no position table limits longer inputs.
    The defaults are lesson 05's model (``benchmarks/translator.py`` measures its quality and training time).
    """
    base = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, dropout=dropout, max_len=max_len, pos="rope")
    base.update(kw)
    d_ff = base.get("d_ff") or 4 * d_model
    per_enc, per_cross = 4 * d_model**2 + 2 * d_model * d_ff, 8 * d_model**2 + 2 * d_model * d_ff
    dec_layers = round(enc_dec_layers * (per_enc + per_cross) / per_enc)
    ed = ModelConfig(**base, n_layers=enc_dec_layers)
    dec = ModelConfig(**base, n_layers=dec_layers)
    return {"encdec": ed, "decoder": dec, "prefixlm": dec}


def build_model(family: str, cfg: ModelConfig) -> nn.Module:
    _check_family(family)
    return EncoderDecoder(cfg) if family == "encdec" else DecoderOnly(cfg)


# ----------------------------------------------------------------------------------------------
# Decoding and evaluation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def translate_ids(model: nn.Module, family: str, sources: Sequence[list[int]], *, beam_size: int = 1,
                  batch_size: int = 256, max_new_tokens: int | None = None, length_penalty: float = 1.0) -> list[list[int]]:
    """Translate token-id sources; returns target ids without BOS/EOS/padding.

    Decoder-only prompts (``source <sep>``) must share a length within a batch, so sources are
    grouped by length; encoder-decoder sources are simply padded.
    """
    _check_family(family)
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[int]] = [[] for _ in sources]
    groups: list[list[int]] = []
    for i in order:  # consecutive chunks; decoder-only chunks also split at every length change
        if groups and len(groups[-1]) < batch_size and (family == "encdec" or len(sources[groups[-1][0]]) == len(sources[i])):
            groups[-1].append(i)
        else:
            groups.append([i])
    for idx in groups:
        longest = max(len(sources[i]) for i in idx)
        n_new = max_new_tokens or 2 * longest + 10
        if family == "encdec":
            inputs = pad_batch([sources[i] for i in idx]).to(device)
        else:
            inputs = torch.tensor([sources[i] + [SEP_ID] for i in idx], device=device)
        kw = dict(eos_id=EOS_ID, pad_id=PAD_ID, bos_id=BOS_ID, prefix_lm=family == "prefixlm")
        if beam_size > 1:
            out = beam_search(model, inputs, n_new, beam_size=beam_size, length_penalty=length_penalty, **kw)
        else:
            out = generate(model, inputs, n_new, **kw)
        for row, i in zip(out.tolist(), idx):
            results[i] = [t for t in row[: row.index(EOS_ID)] if t != PAD_ID] if EOS_ID in row else [t for t in row if t != PAD_ID]
    return results


def translate(model: nn.Module, family: str, tokenizer: WordTokenizer, sentences: Sequence[str], **kw) -> list[str]:
    """English sentences -> French sentences."""
    ids = translate_ids(model, family, [tokenizer.encode(s) for s in sentences], **kw)
    return [tokenizer.decode(t) for t in ids]


def evaluate(model: nn.Module, family: str, data: TranslationData, split: str = "test", *,
             limit: int | None = None, **kw) -> dict[str, float]:
    """BLEU and chrF (sacrebleu) and exact match (%) of the model's translations of ``split``."""
    pairs = data.splits[split][:limit]
    hyps = translate(model, family, data.tokenizer, [en for en, _ in pairs], **kw)
    refs = [data.tokenizer.decode(data.tokenizer.encode(fr)) for _, fr in pairs]  # normalised like hyps
    return {"bleu": corpus_bleu(hyps, refs), "chrf": corpus_chrf(hyps, refs), "exact": 100.0 * exact_match(hyps, refs)}


# ----------------------------------------------------------------------------------------------
# Costs: parameters by stack, training FLOPs per sequence
# ----------------------------------------------------------------------------------------------
def stack_parameters(model: nn.Module) -> dict[str, int]:
    """Non-embedding parameters by the tokens they process: ``encoder`` (source tokens) and
    ``decoder`` (target tokens) of an encoder-decoder; ``decoder`` only for a decoder-only model,
    whose every parameter processes source and target alike."""
    model = getattr(model, "module", model)
    total = model.num_parameters()
    if not isinstance(model, EncoderDecoder):
        return {"encoder": 0, "decoder": total}
    enc = sum(p.numel() for m in (model.encoder, model.enc_norm) for p in m.parameters())
    return {"encoder": enc, "decoder": total - enc}


def training_flops_6n(model: nn.Module, family: str, src_len: float, tgt_len: float) -> float:
    """Training FLOPs per sequence by the rule of thumb "6·N per token" (forward 2N, backward 4N),
    counting for each parameter the tokens it actually processes:

    * decoder-only: all N parameters see ``S + T + 2`` tokens (source, <sep>, target, <eos>);
    * encoder-decoder: the encoder's ``N_enc`` see the ``S`` source tokens, the decoder's ``N_dec``
      the ``T + 1`` decoder inputs (BOS + target).

    Leaves out attention over the context and the output layer (see :mod:`course_lib.costs`).
    """
    _check_family(family)
    n = stack_parameters(model)
    if family == "encdec":
        return 6 * (n["encoder"] * src_len + n["decoder"] * (tgt_len + 1))
    return 6 * n["decoder"] * (src_len + tgt_len + 2)


def training_flops_per_sequence(model: nn.Module, family: str, pairs: Sequence[tuple[list[int], list[int]]]) -> float:
    """Mean FLOPs of a training step's forward and backward pass per sequence, counted by
    :func:`course_lib.costs.count_flops` (matrix multiplies, including attention run by
    ``scaled_dot_product_attention`` on CPU, and the output layer). Each pair of ``pairs``
    (token ids, as :meth:`TranslationData.ids` gives them) is counted on its own, so padding adds nothing."""
    from .costs import count_flops

    loss_fn, collate = loss_for(family), collate_for(family)
    total = 0
    for pair in pairs:
        batch = collate([pair])
        total += count_flops(lambda: loss_fn(model, batch).backward())
    model.zero_grad(set_to_none=True)
    return total / len(pairs)


# ----------------------------------------------------------------------------------------------
# Saving a trained translator
# ----------------------------------------------------------------------------------------------
def save_translator(path: str, model: nn.Module, family: str, tokenizer: WordTokenizer) -> None:
    """Weights + config + vocabulary + family, loadable with ``torch.load(weights_only=True)``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model = getattr(model, "module", model)
    torch.save({"family": family, "config": model.cfg.to_dict(), "tokenizer": tokenizer.to_dict(),
                "model": {k: v.cpu() for k, v in model.state_dict().items()}}, path)


def load_translator(path: str, device: str | torch.device = "cpu") -> tuple[nn.Module, str, WordTokenizer]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(blob["family"], ModelConfig(**blob["config"]))
    model.load_state_dict(blob["model"])
    return model.to(device).eval(), blob["family"], WordTokenizer.from_dict(blob["tokenizer"])


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
                     *, label_smoothing: float = 0.0, evaluate_split: str | None = None, eval_limit: int = 200) -> tuple[nn.Module, list[dict]]:
    """Build and train one family's model; returns ``(model, history)``. The initial weights are
    drawn after seeding every RNG with ``train_cfg.seed``, so a run does not depend on what ran before."""
    seed_everything(train_cfg.seed)
    model = build_model(family, model_cfg)
    evaluator = None
    if evaluate_split:
        evaluator = lambda m: evaluate(m, family, data, evaluate_split, limit=eval_limit)
    history = train(model, loss_for(family, label_smoothing), data.ids("train"), train_cfg,
                    collate=collate_for(family), evaluate=evaluator)
    return model, history


def default_ckpt_path(out: str) -> str:
    """The training checkpoint next to the saved model: ``runs/m.pt`` -> ``runs/m.ckpt.pt``."""
    root, ext = os.path.splitext(out)
    return root + ".ckpt" + (ext or ".pt")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m course_lib.translate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one family's translator (resumes from its checkpoint if one exists)")
    t.add_argument("--family", choices=FAMILIES, default="encdec")
    t.add_argument("--out", default="runs/translator.pt", help="where to save the trained model")
    t.add_argument("--ckpt", default=None, help="training checkpoint for resume (default: runs/translator.ckpt.pt for "
                   "--out runs/translator.pt; *.pt files are git-ignored)")
    t.add_argument("--tsv", default=None, help="your own English<TAB>French file instead of the generated data")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=int, default=None)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None, help="global batch (split over torchrun processes)")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--d-model", type=int, default=None)
    t.add_argument("--layers", type=int, default=None, help="encoder and decoder depth of the encoder-decoder "
                   "(the decoder-only models get the depth that matches its parameters)")
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    t.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("eval", help="BLEU / chrF / exact match of a saved model")
    e.add_argument("model")
    e.add_argument("--split", default="test", choices=("train", "valid", "test", "long"))
    e.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    e.add_argument("--length-penalty", type=float, default=1.0)
    e.add_argument("--tsv", default=None, help="the TSV file the model was trained on (default: generated data)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--limit", type=int, default=None, help="only the first LIMIT sentences")
    e.add_argument("--device", default=None)
    s = sub.add_parser("translate", help="translate sentences given on the command line")
    s.add_argument("model")
    s.add_argument("sentences", nargs="+")
    s.add_argument("--beam", type=int, default=1)
    s.add_argument("--device", default=None)
    args = p.parse_args(argv)

    from .runtime import pick_device

    if args.cmd == "train":
        data = load_data(args.seed, args.n_train, args.tsv)
        over = {k: v for k, v in dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device).items() if v is not None}
        tcfg = default_train_config(seed=args.seed, ckpt_path=args.ckpt or default_ckpt_path(args.out), progress=not args.no_progress, **over)
        size = {k: v for k, v in dict(d_model=args.d_model, enc_dec_layers=args.layers, dropout=args.dropout).items() if v is not None}
        mcfg = model_configs(data.tokenizer.vocab_size, **size)[args.family]
        model, history = train_translator(args.family, data, mcfg, tcfg, label_smoothing=args.label_smoothing)
        if int(os.environ.get("RANK", "0")) == 0:
            save_translator(args.out, model, args.family, data.tokenizer)
            metrics = evaluate(model.eval(), args.family, data, "valid", limit=500)
            print(f"saved {args.out} ({args.family}, {model.num_parameters():,} non-embedding parameters, "
                  f"{history[-1]['elapsed_s']:.0f} s); final train loss {history[-1]['loss']:.4f}; valid (first 500): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    elif args.cmd == "eval":
        model, family, tok = load_translator(args.model, pick_device(args.device))
        data = load_data(args.seed, tsv=args.tsv)
        data = TranslationData(tok, data.splits)  # the vocabulary the model was trained with
        metrics = evaluate(model, family, data, args.split, limit=args.limit, beam_size=args.beam, length_penalty=args.length_penalty)
        print(f"{family} on {args.split}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    else:
        model, family, tok = load_translator(args.model, pick_device(args.device))
        for src, out in zip(args.sentences, translate(model, family, tok, args.sentences, beam_size=args.beam)):
            print(f"{src}\t{out}")


if __name__ == "__main__":
    main()

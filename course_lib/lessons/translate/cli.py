"""The translator's command line: ``python -m course_lib.lessons.translate train|eval|translate ...``."""
from __future__ import annotations

import argparse
import math
import os
from typing import Sequence

import torch

from ...tokenizer import WordTokenizer
from ...train import FRESH_HINT, CheckpointError, TrainingInterrupted, check_writable
from .data import FAMILIES, TranslationData, load_data
from .decoding import _is_word, _shorten, evaluate, longest_source, split_sentences, translate_typed
from .training import (
    TranslatorError,
    default_train_config,
    load_source_words,
    load_translator,
    model_configs,
    save_translator,
    train_translator,
)

DESCRIPTION = ("The toy English→French translator: data, the three model families, training, decoding and "
               "evaluation in one pipeline — used by lesson 05 and runnable from the command line.")


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
    from ...runtime import pick_device

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


def main(argv: Sequence[str] | None = None) -> None:
    """The command line. Every expected problem (a missing or wrong model file, a missing TSV file,
    a device this machine lacks, ...) ends with one sentence on stderr and exit status 2, no traceback;
    ``--debug`` shows the traceback instead."""
    import sys

    p = argparse.ArgumentParser(prog="python -m course_lib.lessons.translate", description=DESCRIPTION)
    p.add_argument("--debug", action="store_true", help="show the full traceback when something goes wrong")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch (default: COURSE_THREADS, "
                   "or the fastest of 1, 2, 4 and all cores for this small model, timed in under a second)")
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
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # torchrun's CPU processes share the cores already
        from ...runtime import configure_threads

        configure_threads(getattr(args, "threads", None))  # a tiny model is often fastest on fewer threads
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

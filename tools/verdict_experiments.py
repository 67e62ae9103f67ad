"""Lesson 07's seeded experiments for claims 6(b), 8, 10 and 11, at the lesson's full-mode size, outside the
notebook: the numbers and the verdicts that the proposed lesson cells compute (``/work/coord/verdict_cells.md``).

    python tools/verdict_experiments.py                      # everything, about 10 minutes on 2 free cores
    python tools/verdict_experiments.py --cache /tmp/exp     # keep (and reuse) the pretrained models there
    python tools/verdict_experiments.py --only 8 11          # some claims

Writes ``results/experiments/raw.json`` (every per-seed number, with the hardware and seconds per experiment) and
``results/experiments/07_encoder_decoder_revisited.json`` (the verdicts, through ``ledger.record_claim``: readable
with ``ledger.load_ledger("results/experiments")``). The course's ledger in ``results/claims/`` is written only by
the lessons themselves.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course_lib import experiments as ex
from course_lib import ledger, redllm
from course_lib.bench import hardware_info

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "experiments"
LESSON = "07_encoder_decoder_revisited"

# lesson 07's full-mode sizes
T, P, SEEDS, STEPS, LR = 32, 16, [0, 1, 2], 200, 3e-3


def pretrained_models(cfgs, train_chunks, cache: Path | None):
    """Lesson 07's pretraining runs (and DecLLM at half the batch), loaded from ``cache`` when saved there."""
    models = {}
    for seed in SEEDS:
        for run, family, batch in (("decoder", "decoder", 32), ("encdec", "encdec", 32), ("decoder_half_batch", "decoder", 16)):
            path = cache / f"{family}_b{batch}_s{seed}.pt" if cache else None
            model = redllm.build(family, cfgs[family])
            if path and path.exists():
                model.load_state_dict(torch.load(path, weights_only=True))
            else:
                model, _ = ex.pretrain(family, cfgs[family], train_chunks, prefix_len=P, steps=STEPS, seed=seed,
                                       batch_size=batch, lr=LR)
                if path:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.save(model.state_dict(), path)
            models[run, seed] = model.eval()
    return models


def claim6(cfgs, train_chunks, valid_chunks, models):
    r = ex.equal_compute(cfgs, train_chunks, valid_chunks[:256], prefix_len=P, steps=STEPS, seeds=SEEDS, pretrained=models)
    s = ex.equal_compute_summary(r)
    a = ledger.judge_exact(s["flops_ratio_equal_steps"], (1.6, 2.4), part="a",
                           what="training FLOPs per chunk, DecLLM / RedLLM at equal parameters")
    b = ledger.judge_similar(s["compute_to_match"], ex.SIMILAR_COMPUTE, part="b",
                             what="training FLOPs DecLLM needs for RedLLM's perplexity / RedLLM's FLOPs")
    steps = ledger.judge(r["ppl"]["decoder"], r["ppl"]["encdec"], higher_is_better=False, names=("DecLLM", "RedLLM"),
                         what=f"perplexity after {STEPS} steps each (equal steps, DecLLM at 2x the FLOPs)")
    flops = ledger.judge(r["ppl"]["decoder_half_batch"], r["ppl"]["encdec"], higher_is_better=False,
                         names=("DecLLM", "RedLLM"), what=f"perplexity after {STEPS} steps each at equal FLOPs "
                                                          "(DecLLM with half the batch)")
    return r | {"summary": s}, [a, b], {"equal_steps": steps, "equal_flops": flops}


def claim8(long_chunks, models):
    r = ex.length_extrapolation({f: [models[f, s] for s in SEEDS] for f in ("decoder", "encdec")}, long_chunks[:64],
                                [T, 2 * T, 4 * T, 8 * T])
    v = ledger.judge(r["degradation"]["encdec"], r["degradation"]["decoder"], higher_is_better=False,
                     names=("RedLLM", "DecLLM"), what=f"perplexity at {8 * T} tokens / at {T} (trained at {T})")
    r["ppl"] = {f: {str(L): x for L, x in d.items()} for f, d in r["ppl"].items()}
    return r, v


def claim10(models):
    symbols = list(range(6, 16))
    train_pairs = ex.finetune_pairs("sort", 4000, 1, symbols=symbols, min_len=3, max_len=6)
    test_pairs = ex.finetune_pairs("sort", 300, 2, symbols=symbols, min_len=3, max_len=6)
    r = ex.biattn_finetune(models, train_pairs, test_pairs, seeds=SEEDS, steps=150, lr=LR,
                           variants=("decoder", "prefixlm"))
    v = ledger.judge(r["exact"]["prefixlm"], r["exact"]["decoder"], higher_is_better=True, paired=True, floor=5.0,
                     ceiling=95.0, names=("BiAttn", "causal"), what="exact match (%) on unseen inputs, sorting 3-6 of 10")
    return r, v


def claim11(vocab_size, train_chunks, valid_chunks):
    """The ablation at lr 0.1 (judged) and at lr 0.3 (the top of lesson 07's sweep, reported): at 0.3 every variant
    trains badly and the seed spread covers every difference."""
    runs = {lr: ex.norm_ablation(vocab_size, train_chunks, valid_chunks[:128], seeds=SEEDS, lr=lr, steps=100)
            for lr in (0.1, 0.3)}
    return runs, {lr: ex.norm_verdicts(r) for lr, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="folder to keep the pretrained models in (reused when present)")
    parser.add_argument("--only", nargs="+", type=int, choices=(6, 8, 10, 11), default=(6, 8, 10, 11))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the lessons' tiny models are fastest on one thread (runtime.configure_threads)
    tok, train_chunks, valid_chunks, long_chunks = redllm.text_corpus(T, seed=0, n_train=20000, n_valid=2000,
                                                                      long_length=8 * T)
    cfgs = redllm.recipe_configs(tok.vocab_size, d_model=32, n_heads=4, dec_layers=9)
    OUT.mkdir(parents=True, exist_ok=True)
    raw_file = OUT / "raw.json"
    raw = json.loads(raw_file.read_text()) if raw_file.exists() else {}
    raw["hardware"] = hardware_info()
    t0 = time.perf_counter()
    models = pretrained_models(cfgs, train_chunks, args.cache) if {6, 8, 10} & set(args.only) else {}
    raw["pretraining_s"] = time.perf_counter() - t0

    def save(claim, verdict, evidence, section, numbers, seconds):
        raw[str(claim)] = ledger.json_safe(numbers) | {"seconds": seconds}
        ledger.record_claim(claim, verdict, evidence, lesson=LESSON, section=section, numbers={"see": "raw.json"},
                            save=True, folder=OUT)
        for v in verdict if isinstance(verdict, list) else [verdict]:
            print(f"claim {claim}{f' ({v.part})' if v.part else ''}: {v.verdict}. {v.reason}")

    if 6 in args.only:
        t0 = time.perf_counter()
        r, parts, context = claim6(cfgs, train_chunks, valid_chunks, models)
        for name, v in context.items():
            print(f"claim 6, {name}: {v.verdict}. {v.reason}")
        save(6, parts, f"{context['equal_steps'].reason} {context['equal_flops'].reason}", "2.1-2.2 Claim 6",
             r | {"context": {k: v.reason for k, v in context.items()}}, time.perf_counter() - t0)
    if 8 in args.only:
        t0 = time.perf_counter()
        r, v = claim8(long_chunks, models)
        save(8, v, v.reason, "4. Claim 8", r, time.perf_counter() - t0)
    if 10 in args.only:
        t0 = time.perf_counter()
        r, v = claim10(models)
        save(10, v, v.reason, "6. Claim 10", r, time.perf_counter() - t0)
    if 11 in args.only:
        t0 = time.perf_counter()
        runs, by_lr = claim11(tok.vocab_size, train_chunks, valid_chunks)
        for v in by_lr[0.3]:
            print(f"claim 11 at lr 0.3 ({v.part}): {v.verdict}. {v.reason}")
        at_03 = "; ".join(f"{v.part} {v.verdict}" for v in by_lr[0.3])
        save(11, by_lr[0.1], f"Judged at lr 0.1. At lr 0.3, where every variant trains badly: {at_03}.", "1.4 QK-norm",
             {str(lr): r for lr, r in runs.items()}, time.perf_counter() - t0)
    raw_file.write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Lesson 07's seeded experiments for claims 6(b), 8, 10 and 11, at the lesson's full-mode size, outside the
notebook: the numbers and the verdicts that the proposed lesson cells compute (``/work/coord/verdict_cells.md``).

    python tools/verdict_experiments.py                      # everything, about 10 minutes on 2 free cores
    python tools/verdict_experiments.py --cache /tmp/exp     # keep (and reuse) the pretrained models there
    python tools/verdict_experiments.py --only 8 11          # some claims
    python tools/verdict_experiments.py --rejudge            # verdicts again from the saved numbers, no training
    python tools/verdict_experiments.py --trials             # claim 10's task-size trials (six seeds, ~25 minutes)

Writes ``results/experiments/raw.json`` (every per-seed number, with the hardware and seconds per experiment) and
``results/experiments/claims/07_encoder_decoder_revisited.json`` (the verdicts, through ``ledger.record_claim``:
readable with ``ledger.load_ledger("results/experiments/claims")``). The course's ledger in ``results/claims/`` is written only by
the lessons themselves. ``--trials`` writes ``results/experiments/biattn_trials.json``: the sorting task at the sizes lesson 07
tried before choosing its own (per-seed exact match and token accuracy, and the rule's verdict for each size).
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
ABLATION_LRS = (0.1, 0.3)
# claim 10's task: (shortest, longest sequence, fine-tuning steps), lesson 07's and the trials that chose it
SORT_TASK = (7, 12, 200)
TRIALS, TRIAL_SEEDS = [(3, 6, 150), (3, 6, 400), (7, 12, 200), (7, 12, 300)], [0, 1, 2, 3, 4, 5]  # judged at 0.1; 0.3 (the top of lesson 07's sweep) reported: every variant trains badly


def pretrained_models(cfgs, train_chunks, cache: Path | None, seeds=SEEDS):
    """Lesson 07's pretraining runs (and DecLLM at half the batch), loaded from ``cache`` when saved there."""
    models = {}
    for seed in seeds:
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


# ----------------------------------------------------------------------------------------- measurements
def measure(claim: int, data: dict, models: dict) -> dict:
    """The per-seed numbers of one claim's experiment (JSON-ready)."""
    if claim == 6:
        r = ex.equal_compute(data["cfgs"], data["train"], data["valid"][:256], prefix_len=P, steps=STEPS, seeds=SEEDS,
                             pretrained=models)
        return r | {"summary": ex.equal_compute_summary(r)}
    if claim == 8:
        r = ex.length_extrapolation({f: [models[f, s] for s in SEEDS] for f in ("decoder", "encdec")}, data["long"][:64],
                                    [T, 2 * T, 4 * T, 8 * T])
        return r | {"ppl": {f: {str(L): x for L, x in d.items()} for f, d in r["ppl"].items()}}
    if claim == 10:
        return sort_finetune(models, SEEDS, *SORT_TASK)
    if claim == 11:
        return {str(lr): ex.norm_ablation(data["vocab"], data["train"], data["valid"][:128], seeds=SEEDS, lr=lr, steps=100)
                for lr in ABLATION_LRS}
    raise ValueError(f"no experiment for claim {claim}")


# ----------------------------------------------------------------------------------------- verdicts
def verdicts(claim: int, r: dict) -> tuple[list[ledger.Verdict], str, str]:
    """``(verdicts, evidence, section)`` for one claim from its saved numbers, as the proposed lesson cell judges them."""
    if claim == 6:
        s = r["summary"]
        by_steps = ledger.judge(r["ppl"]["decoder"], r["ppl"]["encdec"], higher_is_better=False, names=("DecLLM", "RedLLM"),
                                what=f"equal steps ({STEPS}; DecLLM at 2x the FLOPs), perplexity")
        by_flops = ledger.judge(r["ppl"]["decoder_half_batch"], r["ppl"]["encdec"], higher_is_better=False,
                                names=("DecLLM", "RedLLM"), what="equal steps and FLOPs (DecLLM with half the batch), perplexity")
        return ([ledger.judge_exact(s["flops_ratio_equal_steps"], (1.6, 2.4), part="a",
                                    what="training FLOPs per chunk, DecLLM / RedLLM at equal parameters"),
                 ledger.judge_similar(s["compute_to_match"], ex.SIMILAR_COMPUTE, part="b",
                                      what="training FLOPs DecLLM needs for RedLLM's perplexity / RedLLM's")],
                f"{by_steps.reason} {by_flops.reason}", "2.1-2.2 Claim 6")
    if claim == 8:
        v = ledger.judge(r["degradation"]["encdec"], r["degradation"]["decoder"], higher_is_better=False,
                         names=("RedLLM", "DecLLM"), what=f"perplexity at {8 * T} / at {T} tokens (trained at {T})")
        return [v], "Short independent sentences: a long context adds little information.", "4. Claim 8"
    if claim == 10:
        lo, hi, _ = SORT_TASK
        return ([judge_biattn(r)], (f"Token accuracy: BiAttn {ledger.spread(r['token_acc']['prefixlm'])}%, causal "
                                    f"{ledger.spread(r['token_acc']['decoder'])}%. Sorting {lo}-{hi} symbols of 10."), "6. Claim 10")
    if claim == 11:
        judged, reported = (ex.norm_verdicts(r[str(lr)]) for lr in ABLATION_LRS)
        return (judged, f"At lr {ABLATION_LRS[1]:g}, where every variant trains badly: "
                        + "; ".join(f"{v.part} {v.verdict}" for v in reported) + ".", "1.4 QK-norm")
    raise ValueError(f"no verdict for claim {claim}")


def sort_finetune(models: dict, seeds, lo: int, hi: int, steps: int) -> dict:
    """Claim 10's experiment: each seed's DecLLM fine-tuned to sort ``lo``-``hi`` of 10 symbols, causal and BiAttn."""
    symbols = list(range(6, 16))
    train_pairs = ex.finetune_pairs("sort", 4000, 1, symbols=symbols, min_len=lo, max_len=hi)
    test_pairs = ex.finetune_pairs("sort", 300, 2, symbols=symbols, min_len=lo, max_len=hi)
    return ex.biattn_finetune(models, train_pairs, test_pairs, seeds=seeds, steps=steps, lr=LR, variants=("decoder", "prefixlm"))


def judge_biattn(r: dict) -> ledger.Verdict:
    """Claim 10's verdict, as lesson 07 judges it: paired by seed, floor 5% and ceiling 95%, "a lot" = 10 points."""
    return ledger.judge(r["exact"]["prefixlm"], r["exact"]["decoder"], higher_is_better=True, paired=True, floor=5.0,
                        ceiling=95.0, min_effect=10.0, names=("BiAttn", "causal"),
                        what=f"exact match (%) after {r['steps']} fine-tuning steps")


def trials(models: dict) -> dict:
    """Claim 10's comparison at each size of :data:`TRIALS`, over :data:`TRIAL_SEEDS`, judged as lesson 07 judges it."""
    out = {}
    for lo, hi, steps in TRIALS:
        r = sort_finetune(models, TRIAL_SEEDS, lo, hi, steps)
        v = judge_biattn(r)
        out[f"sort {lo}-{hi} symbols, {steps} steps"] = {"exact": r["exact"], "token_acc": r["token_acc"], "seeds": TRIAL_SEEDS,
                                                         "verdict": v.verdict, "reason": v.reason}
        print(f"trial {lo}-{hi}, {steps} steps: {v}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="folder to keep the pretrained models in (reused when present)")
    parser.add_argument("--only", nargs="+", type=int, choices=(6, 8, 10, 11), default=(6, 8, 10, 11))
    parser.add_argument("--rejudge", action="store_true", help="no training: verdicts from results/experiments/raw.json")
    parser.add_argument("--trials", action="store_true", help="claim 10's task-size trials only (results/experiments/biattn_trials.json)")
    args = parser.parse_args()
    if args.trials:
        torch.set_num_threads(1)
        tok, train, _, _ = redllm.text_corpus(T, seed=0, n_train=20000, n_valid=2000, long_length=8 * T)
        cfgs = redllm.recipe_configs(tok.vocab_size, d_model=32, n_heads=4, dec_layers=9)
        out = {"hardware": hardware_info(), "threads": 1} | trials(pretrained_models(cfgs, train, args.cache, TRIAL_SEEDS))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "biattn_trials.json").write_text(json.dumps(ledger.json_safe(out), indent=1) + "\n")
        return
    raw_file = OUT / "raw.json"
    raw = json.loads(raw_file.read_text()) if raw_file.exists() else {}
    if not args.rejudge:
        torch.set_num_threads(1)  # the lessons' tiny models are fastest on one thread (runtime.configure_threads)
        tok, train, valid, long = redllm.text_corpus(T, seed=0, n_train=20000, n_valid=2000, long_length=8 * T)
        data = {"vocab": tok.vocab_size, "train": train, "valid": valid, "long": long,
                "cfgs": redllm.recipe_configs(tok.vocab_size, d_model=32, n_heads=4, dec_layers=9)}
        raw["hardware"] = hardware_info()
        t0 = time.perf_counter()
        models = pretrained_models(data["cfgs"], train, args.cache) if {6, 8, 10} & set(args.only) else {}
        raw["pretraining_s"] = time.perf_counter() - t0
        for claim in args.only:
            t0 = time.perf_counter()
            raw[str(claim)] = ledger.json_safe(measure(claim, data, models)) | {"seconds": time.perf_counter() - t0}
        OUT.mkdir(parents=True, exist_ok=True)
        raw_file.write_text(json.dumps(raw, indent=1) + "\n")
    for claim in args.only:
        if str(claim) not in raw:
            raise SystemExit(f"no saved numbers for claim {claim} in {raw_file}; run without --rejudge first.")
        vs, evidence, section = verdicts(claim, raw[str(claim)])
        for v in vs:
            print(f"claim {claim} {v}")
        ledger.record_claim(claim, vs if len(vs) > 1 else vs[0], evidence, lesson=LESSON, section=section,
                            numbers={"raw": "../raw.json", "seconds": raw[str(claim)]["seconds"]}, save=True,
                            folder=OUT / "claims")


if __name__ == "__main__":
    main()

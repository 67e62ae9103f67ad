"""Lesson 05's translator, trained and evaluated in full mode on the machine in front of you.

    python benchmarks/translator.py                     # encoder-decoder: train (2000 steps) + evaluate
    python benchmarks/translator.py --compare           # + decoder-only and prefix-LM at matched size
    python benchmarks/translator.py --device cuda       # on a GPU (Colab T4, ...)
    python benchmarks/translator.py --quick --out /tmp/t   # smoke test: 30 steps, 100 sentences
    python benchmarks/translator.py --race 0 1 2        # steps- and FLOPs-to-target, 3 seeds (lesson 05, section 9)

Trains the encoder-decoder with the lesson's configuration (course_lib.lessons.translate.model_configs and
default_train_config, full mode), then reports BLEU / chrF / exact match with greedy decoding and
length-normalised beam search (beam 4) on valid, test and long, next to the word-by-word
dictionary baseline. Targets (the course's issue): at most 5M parameters, test BLEU >= 95 and
exact match >= 90% after at most 10 minutes of training on a 2-core CPU.

Writes ``<out>/translator-<hardware-slug>.json`` (every number) and ``.md`` (a table) and prints
the table. Wall time on a shared machine is inflated by other processes: the files also record
the process CPU time and the load average. It is a measurement, not a test: it exits 0 either way.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a plain checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import en_fr, metrics  # noqa: E402
from course_lib.bench import hardware_info, hardware_slug, report_header, save_report  # noqa: E402
from course_lib.lessons.translate import (FAMILIES, build_model, default_train_config, evaluate, load_data,  # noqa: E402
                                  model_configs, race_to_target, save_translator, steps_to, train_translator,
                                  training_flops_6n, training_flops_per_sequence)

TARGETS = {"params_max": 5_000_000, "bleu_min": 95.0, "exact_min": 90.0, "train_s_max": 600.0}
SPLITS = ("valid", "test", "long")
DECODERS = {"greedy": dict(beam_size=1), "beam4": dict(beam_size=4, length_penalty=1.0)}


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - Windows
        return []


def run_family(family: str, data, device: torch.device, *, steps: int, limit: int | None, decoders: dict, progress: bool) -> dict:
    cfg = model_configs(data.tokenizer.vocab_size)[family]
    tcfg = default_train_config(steps=steps, device=str(device), progress=progress)
    load_before = _load()
    cpu0, t0 = time.process_time(), time.perf_counter()
    model, history = train_translator(family, data, cfg, tcfg)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    model.eval()
    row = {
        "family": family,
        "model_config": cfg.to_dict(),
        "train_config": {k: v for k, v in vars(tcfg).items() if k not in ("device", "progress")},
        "params_non_embedding": model.num_parameters(),
        "params_total": model.num_parameters(non_embedding=False),
        "train_wall_s": train_s,
        "train_cpu_s": train_cpu_s,
        "s_per_step": train_s / steps,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "final_train_loss": history[-1]["loss"],
        "metrics": {},
        "decode_s": {},
    }
    for name, kw in decoders.items():
        for split in SPLITS:
            t0 = time.perf_counter()
            row["metrics"][f"{split}/{name}"] = evaluate(model, family, data, split, limit=limit, **kw)
            row["decode_s"][f"{split}/{name}"] = time.perf_counter() - t0
    ids = data.ids("train")[:32]
    src_len = statistics.mean(len(s) for s, _ in data.ids("train"))
    tgt_len = statistics.mean(len(t) for _, t in data.ids("train"))
    model.cpu().train()
    row["train_flops_per_seq_counted"] = training_flops_per_sequence(model, family, ids)
    row["train_flops_per_seq_6n"] = training_flops_6n(model, family, statistics.mean(len(s) for s, _ in ids), statistics.mean(len(t) for _, t in ids))
    row["train_flops_per_seq_6n_all_train"] = training_flops_6n(model, family, src_len, tgt_len)
    return row, model


RACE = {"bleu_target": 95.0, "loss_target": 0.1}
LOSS_LEVELS = (1.0, 0.5, 0.2, 0.1)


def run_race(data, device: torch.device, seeds: list[int], families: tuple[str, ...], *, quick: bool) -> dict:
    """Lesson 05's race (section 9): the lesson's schedule, checks every 25 steps (BLEU every 50),
    stopped once validation BLEU >= 95 and validation loss <= 0.1; steps, FLOPs and seconds to target per seed."""
    tcfg = default_train_config(eval_every=10 if quick else 25, device=str(device), progress=False,
                                **({"steps": 30} if quick else {}))
    out = {"targets": RACE, "check_every": tcfg.eval_every, "runs": {}}
    sample = data.ids("train")[:8 if quick else 32]
    for family in families:
        cfg = model_configs(data.tokenizer.vocab_size)[family]
        m = build_model(family, cfg).train()
        per_seq = training_flops_per_sequence(m, family, sample)
        for seed in seeds:
            t0 = time.perf_counter()
            _, rec = race_to_target(family, data, cfg, dataclasses.replace(tcfg, seed=seed), max_steps=1500,
                                    bleu_limit=50 if quick else 100, **RACE)
            st = steps_to(rec, "bleu", RACE["bleu_target"])
            row = {"family": family, "seed": seed, "flops_per_step": tcfg.batch_size * per_seq, "stopped_at": rec[-1]["step"],
                   "wall_s": time.perf_counter() - t0, "steps_to_bleu": st,
                   "train_s_to_bleu": None if st is None else next(r["train_s"] for r in rec if r["step"] == st),
                   **{f"steps_to_loss_{x}": steps_to(rec, "valid_loss", x, higher_is_better=False) for x in LOSS_LEVELS},
                   "record": rec}
            out["runs"][f"{family}/{seed}"] = row
            print(f"race {family} seed {seed}: BLEU {RACE['bleu_target']:g} after {st} steps, stopped at {rec[-1]['step']} "
                  f"({row['wall_s']:.0f} s)", flush=True)
    return out


def _race_markdown(race: dict) -> list[str]:
    lines = ["", f"## Race to validation BLEU {race['targets']['bleu_target']:g} and loss {race['targets']['loss_target']:g} "
             f"(checked every {race['check_every']} steps, BLEU every {2 * race['check_every']})", "",
             "| model | seed | steps to BLEU | FLOPs to BLEU | train s to BLEU | "
             + " | ".join(f"steps to loss {x}" for x in LOSS_LEVELS) + " |", "|---|---|---|---|---|" + "---|" * len(LOSS_LEVELS)]
    for r in race["runs"].values():
        st, ts = r["steps_to_bleu"], r["train_s_to_bleu"]
        flops = "-" if st is None else "%.3e" % (st * r["flops_per_step"])
        secs = "-" if ts is None else "%.0f" % ts
        lines.append(f"| {r['family']} | {r['seed']} | {st} | {flops} | {secs} | "
                     + " | ".join(str(r[f"steps_to_loss_{x}"]) for x in LOSS_LEVELS) + " |")
    return lines


def render_markdown(report: dict) -> str:
    lines = [
        *report_header("Translator benchmark", report),
        f"- data: generated English→French fragment, {report['data']['sizes']}; vocabulary {report['data']['vocab_size']} words",
        "",
        "## Quality",
        "",
        "| model | params (non-emb.) | steps | train wall s | train CPU s | decoding | split | BLEU | chrF | exact % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    b = report["baseline"]
    lines.append(f"| word-by-word dictionary | - | - | - | - | - | test | {b['bleu']:.2f} | {b['chrf']:.2f} | {b['exact']:.1f} |")
    for row in report["families"]:
        for key, m in row["metrics"].items():
            split, dec = key.split("/")
            lines.append(f"| {row['family']} | {row['params_non_embedding']:,} | {row['train_config']['steps']} | "
                         f"{row['train_wall_s']:.0f} | {row['train_cpu_s']:.0f} | {dec} | {split} | {m['bleu']:.2f} | {m['chrf']:.2f} | {m['exact']:.1f} |")
    lines += ["", "## Targets (encoder-decoder, test split)", "", "| target | measured | verdict |", "|---|---|---|"]
    for name, (measured, target, ok) in report["targets"].items():
        lines.append(f"| {name} {target} | {measured} | {'PASS' if ok else 'FAIL'} |")
    lines += ["", "## Training cost per sequence", "",
              "| model | FLOPs counted (FlopCounterMode, incl. attention and output layer) | 6·N·tokens | s/step |", "|---|---|---|---|"]
    for row in report["families"]:
        lines.append(f"| {row['family']} | {row['train_flops_per_seq_counted']:.3e} | {row['train_flops_per_seq_6n']:.3e} | {row['s_per_step']:.3f} |")
    lines += ["", "Load average before / after training: "
              + "; ".join(f"{r['family']} {r['load_average_before']} / {r['load_average_after']}" for r in report["families"]),
              "", "Wall time on a machine shared with other work is inflated; CPU time counts this process only "
              "(all its threads).", ""]
    if report.get("race"):
        lines += _race_markdown(report["race"]) + [""]
    if report["device"] == "cpu" and not report["hardware"].get("gpu"):
        lines += ["## GPU", "", "pending: no GPU lent to this session. Run `python benchmarks/translator.py --device cuda` "
                  "on one (e.g. a Colab T4) to add its file here.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument("--compare", action="store_true", help="also train the decoder-only and prefix-LM models (same data, steps)")
    p.add_argument("--quick", action="store_true", help="30 steps, 100 sentences per split: a smoke test")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the lesson's full-mode schedule)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the .json and .md")
    p.add_argument("--save", default=None, help="also save the trained encoder-decoder here (use runs/...: git-ignored)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--race", type=int, nargs="+", metavar="SEED", default=None,
                   help="also race the encoder-decoder and decoder-only models (with --compare: prefix-LM too) to "
                        "validation BLEU 95 and loss 0.1 with these seeds (lesson 05, section 9)")
    args = p.parse_args(argv)

    os.environ.pop("COURSE_FAST", None)  # full mode: the lesson's real schedule
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps = args.steps or (30 if args.quick else default_train_config().steps)
    limit = 100 if args.quick else None

    t0 = time.perf_counter()
    data = load_data(seed=0)
    data_s = time.perf_counter() - t0
    baseline = en_fr.dictionary_baseline(data.splits["train"])
    test = data.splits["test"][:limit]
    hyps, refs = [baseline(en) for en, _ in test], [fr for _, fr in test]
    base = {"bleu": metrics.corpus_bleu(hyps, refs), "chrf": metrics.corpus_chrf(hyps, refs), "exact": 100 * metrics.exact_match(hyps, refs)}

    rows = []
    for family in FAMILIES if args.compare else ("encdec",):
        decoders = DECODERS if family == "encdec" else {"greedy": DECODERS["greedy"]}
        row, model = run_family(family, data, device, steps=steps, limit=limit, decoders=decoders, progress=not args.no_progress)
        rows.append(row)
        print(f"{family}: {row['train_wall_s']:.0f} s wall, {row['train_cpu_s']:.0f} s CPU; "
              + ", ".join(f"{k} BLEU {v['bleu']:.2f} exact {v['exact']:.1f}" for k, v in row["metrics"].items()), flush=True)
        if family == "encdec" and args.save:
            save_translator(args.save, model, family, data.tokenizer)

    ed = rows[0]
    test_m = ed["metrics"]["test/greedy"]
    targets = {
        "non-embedding params <=": (f"{ed['params_non_embedding']:,} ({ed['params_total']:,} with embeddings)", f"{TARGETS['params_max']:,}",
                                    ed["params_total"] <= TARGETS["params_max"]),
        "test BLEU (greedy) >=": (f"{test_m['bleu']:.2f}", TARGETS["bleu_min"], test_m["bleu"] >= TARGETS["bleu_min"]),
        "test exact match % (greedy) >=": (f"{test_m['exact']:.1f}", TARGETS["exact_min"], test_m["exact"] >= TARGETS["exact_min"]),
        "training wall time s <=": (f"{ed['train_wall_s']:.0f} ({ed['train_cpu_s']:.0f} s CPU)", TARGETS["train_s_max"],
                                    ed["train_wall_s"] <= TARGETS["train_s_max"]),
    }
    info = hardware_info()
    report = {
        "slug": "translator-" + hardware_slug(info, device, args.quick),
        "hardware": info,
        "device": str(device),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/translator.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "data": {"sizes": {k: len(v) for k, v in data.splits.items()}, "vocab_size": data.tokenizer.vocab_size, "generate_s": data_s},
        "baseline": base,
        "families": rows,
        "targets": targets,
    }
    if args.race:
        families = FAMILIES if args.compare else ("encdec", "decoder")
        report["race"] = run_race(data, device, args.race, families, quick=args.quick)
    save_report(report, args.out, render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

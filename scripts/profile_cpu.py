"""Where a wronai training step spends its time on a CPU, and whether `CpuDropout` keeps what is learned
(nbs/06d_bench.ipynb shows the file).

    python scripts/profile_cpu.py --json benchmarks/profile_cpu.json        # about 10 minutes on 2 cores

Three runs of the bench work (`wronai bench`'s config and settings: quick_test, batch 8, checkpointing on, 30 steps),
each in a process of its own, identical in model, LoRA initialisation, data and batch order, and different only in
the adapters' dropout:

- `torch`: peft's own `nn.Dropout`, torch seeded with 1 as the first step begins;
- `torch_seed2`: the same with seed 2, so its distance from `torch` is the noise that dropout's randomness alone puts in
  a loss curve;
- `cpu`: wronai's `CpuDropout` (what `wronai train` uses), seed 1.

Each reports real tokens/s over the steps after the warm-up and before the profiled ones, the loss of every step, and
torch's profile of its last steps: each operator's own time per step.
"""
import argparse, json, os, platform, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"torch": (True, 1), "torch_seed2": (True, 2), "cpu": (False, 1)}   # name: (peft's nn.Dropout, dropout seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT/"configs/quick_test.yaml"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", type=int, default=3, help="profiled steps at the end of each run (not timed)")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE, as in `wronai bench --set`")
    ap.add_argument("--json", help="write the results here")
    # a run's name: run it in this process
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.warmup < 0 or a.profile < 1 or a.steps <= a.warmup + a.profile:
        ap.error(f"--steps ({a.steps}) must be more than --warmup ({a.warmup}) plus "
                 f"--profile ({a.profile}), with --warmup at least 0 "
                 "and --profile at least 1: the timed steps come between them")
    from wronai.bench import BENCH_SETTINGS
    sets = [*BENCH_SETTINGS, *a.set]
    if a.one:
        from wronai.bench import run_one
        from wronai.config import load_config
        torch_dropout, seed = RUNS[a.one]
        r = run_one("wronai", load_config(a.config, sets), a.steps, a.warmup, torch_dropout=torch_dropout,
                    dropout_seed=seed, profile=a.profile)
        total = sum(r["profile"].values())
        r["profile"] = {k: round(v, 5) for k, v in sorted(r["profile"].items(), key=lambda kv: -kv[1])
                        if v >= 0.002 * total}
        r["profile_total_s"] = round(total, 4)
        print("RESULT " + json.dumps(r), flush=True)
        return 0
    import importlib.metadata as md
    import torch
    from wronai.quant import cpu_flags
    out = {"script": "scripts/profile_cpu.py", "config": os.path.relpath(a.config, ROOT), "settings": sets,
           "steps": a.steps,
           "warmup_steps": a.warmup, "profiled_steps": a.profile, "python": platform.python_version(),
           "cpu": cpu_flags(),
           "threads": torch.get_num_threads(),
           "versions": {p: md.version(p) for p in ("torch", "transformers", "peft", "bitsandbytes")}, "runs": {}}
    for name in RUNS:
        cmd = [sys.executable, __file__, "--one", name, "--config", a.config, "--steps", str(a.steps), "--warmup",
               str(a.warmup),
               "--profile", str(a.profile)] + [x for s in a.set for x in ("--set", s)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None: raise SystemExit(f"the {name} run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        out["runs"][name] = r = json.loads(line[7:])
        print(f"{name}: {r['real_tokens_per_s']:.1f} real tokens/s, final loss {r['final_loss']:.4f}", flush=True)
    t, t2, c = (out["runs"][k] for k in RUNS)
    if not t["lengths"] == t2["lengths"] == c["lengths"]:
        raise SystemExit("the runs did not see the same batches; they cannot be compared")
    gap = lambda x, y: sum(abs(u - v) for u, v in zip(x["losses"], y["losses"])) / len(x["losses"])
    out["speedup"] = c["real_tokens_per_s"] / t["real_tokens_per_s"]
    # mean |difference| of the step losses
    out["loss_gap"] = {"cpu_vs_torch": gap(c, t), "torch_seed2_vs_torch": gap(t2, t)}
    print(f"CpuDropout {out['speedup']:.2f}x; mean step-loss gap "
          f"{out['loss_gap']['cpu_vs_torch']:.4f} against torch's dropout, "
          f"{out['loss_gap']['torch_seed2_vs_torch']:.4f} between two seeds of torch's dropout")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

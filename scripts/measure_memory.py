"""Measured peak memory of QLoRA training steps, for checking what `wronai.memory.plan` predicts (nbs/06c_memory.ipynb
compares them).

    python scripts/measure_memory.py --json benchmarks/memory_cpu.json        # the CPU plans below, about 8 minutes on 2 cores

Each plan runs in a process of its own: the config's model loads in NF4 with LoRA (and the Polish tags' trainable
rows), then a few optimizer steps of `WronaiTrainer` on fixed-length batches of random tokens, every token scored:
the longest batch a run can meet, which is what the planner predicts. On a CPU the peak is the process's highest
anonymous resident memory (RssAnon, read every millisecond; the weights' file pages that safetensors maps are not the
run's) less the same after the imports, before the model loaded: what the run adds to the Python runtime. glibc is
told to return freed blocks of 64 KiB and more to the system (MALLOC_MMAP_THRESHOLD_), so the figure is what the
tensors hold; with glibc's moving threshold a CPU process holds more (--mmap-threshold ''). On CUDA it is
`torch.cuda.max_memory_allocated()`.
"""  # noqa: E501 (Markdown: a table row or a paragraph is one line)
import argparse, ctypes, dataclasses, json, os, platform, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# sequence length x batch size, `:ckpt` with gradient checkpointing
PLANS = "128x8,256x8,256x2,256x8:ckpt,512x4:ckpt,512x2"


def one(config, seq, batch, ckpt, steps, overrides):
    "Measure one plan in this process; returns a dict."
    import torch
    import bitsandbytes, peft, transformers                                        # noqa: F401 (the runtime, before the model)
    from wronai.config import load_config
    from wronai.data import pad_collator
    from wronai.lora import add_lora
    from wronai.new_rows import rows_layer
    from wronai.quant import load_quantized
    from wronai.runs import WronaiTrainer
    from wronai.runs import PeakMemory, anon_mb
    from wronai.tokens import prepare_tokenizer, resize_with_piece_mean, token_indices
    from wronai.train import training_arguments
    cfg = load_config(config,
                      [*overrides, f"training.per_device_train_batch_size={batch}",
                       "training.gradient_accumulation_steps=1",
                               f"training.gradient_checkpointing={str(ckpt).lower()}", "training.group_by_length=false",
                               f"data.max_seq_length={seq}", "monitoring.report_to=[]"])
    cuda = torch.cuda.is_available()
    tok = prepare_tokenizer(cfg)
    rss0 = anon_mb()
    model = load_quantized(cfg)
    model = add_lora(model, cfg, token_indices(model, resize_with_piece_mean(model, tok)))
    args, _, _ = training_arguments(cfg, "/tmp/wronai-measure-memory", max_steps=steps)
    args = dataclasses.replace(args, eval_strategy="no", save_strategy="no", report_to=[], logging_steps=1)
    g = torch.Generator().manual_seed(seq * batch)
    data = [{"input_ids": ids, "attention_mask": [1] * seq, "labels": ids, "kind": "text"}
            for ids in torch.randint(100, len(tok) - 20, (batch * steps, seq), generator=g).tolist()]
    trainer = WronaiTrainer(model=model, args=args, train_dataset=data, data_collator=pad_collator(tok),
                            processing_class=tok)
    # hand what loading freed back to the system
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    rss1 = anon_mb()
    if cuda: torch.cuda.empty_cache()                                             # PeakMemory resets the peak
    t = time.time()
    with PeakMemory("cuda" if cuda else "cpu") as peak: trainer.train()
    r = {"seq": seq, "batch": batch, "checkpointing": ckpt, "steps": steps, "seconds": round(time.time() - t, 1),
         "new_rows": rows_layer(model),
         "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
    if cuda: r["measured_mib"] = round(peak.peak, 1)
    else:
        r.update(runtime_anon_mib=round(rss0, 1), ready_anon_mib=round(rss1, 1), peak_anon_mib=round(peak.peak, 1),
                 measured_mib=round(peak.peak - rss0, 1),
                 malloc_mmap_threshold=os.environ.get("MALLOC_MMAP_THRESHOLD_"))
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT/"configs/quick_test.yaml"))
    ap.add_argument("--plans", default=PLANS, help=f"comma-separated SEQxBATCH[:ckpt] (default {PLANS})")
    ap.add_argument("--steps", type=int, default=3,
                    help="optimizer steps per plan (the optimizer state exists from the first)")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE, as in `wronai train --set`")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--mmap-threshold", default="65536",
                    help="glibc's MALLOC_MMAP_THRESHOLD_ for the measured process ('' for glibc's own, "
                    "which keeps freed blocks below a moving threshold in the heap: more "
                    "resident memory than the tensors hold)")
    # SEQxBATCH[:ckpt]: measure it in this process
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        size, _, flag = a.one.partition(":")
        seq, batch = map(int, size.split("x"))
        print("RESULT " + json.dumps(one(a.config, seq, batch, flag == "ckpt", a.steps, a.set)), flush=True)
        return 0
    from wronai.quant import cpu_flags
    out = {"script": "scripts/measure_memory.py", "config": os.path.relpath(a.config, ROOT), "overrides": a.set,
           "python": platform.python_version(), "cpu": cpu_flags(), "runs": []}
    for p in a.plans.split(","):
        cmd = [sys.executable, __file__, "--one", p, "--config", a.config, "--steps", str(a.steps)] + [
            x for s in a.set for x in ("--set", s)
        ]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": a.mmap_threshold} if a.mmap_threshold else None
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in res.stdout.splitlines() if l.startswith("RESULT ")), None)
        r = json.loads(line[7:]) if line else {"plan": p, "error": res.stderr[-2000:]}
        print(json.dumps(r), flush=True)
        out["runs"].append(r)
        if a.json: Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

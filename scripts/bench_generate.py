"""Generation speed of a trained adapter, three ways, in one process on the same held-out prompts.

    python scripts/bench_generate.py --adapter runs/benchmark [--json benchmarks/quick_test_cpu_generate.json]

- "NF4 base + adapter": how it was trained (bitsandbytes 4-bit base, peft LoRA beside each layer), as inference loads
  it:
  on a CPU with AVX512-BF16 bitsandbytes' fused 4-bit kernel runs it, and then a second row, "NF4 base + adapter,
  standard layout", times the same model with that kernel off (the layout training uses), in the same process;
- "full base + adapter": the base in full precision (fp32 on CPU, bf16/fp16 on CUDA), LoRA still unmerged;
- "merged": the adapter folded in by `wronai.infer.merge` and loaded with plain transformers, the peer
  that each ratio is taken against.
Each is timed by `wronai.infer.generation_speed` (greedy, a fixed number of new tokens per prompt, one
untimed warm-up batch) at every batch size asked for. Figures only; nothing here passes or fails on speed.
"""
import argparse, json, platform, sys, tempfile
from pathlib import Path

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="output folder of `wronai train` (holds wronai.yaml)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--prompts", type=int, default=16, help="held-out questions to generate for (default 16)")
    ap.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (default 32)")
    ap.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    a = ap.parse_args(argv)
    try: sizes = [int(x) for x in a.batch_sizes.split(",")]
    except ValueError: ap.error(f"--batch-sizes must be comma-separated integers, got {a.batch_sizes!r}")
    if a.prompts < 1 or a.new_tokens < 1 or min(sizes) < 1:
        ap.error("--prompts, --new-tokens and each batch size must be at least 1")

    from wronai.evaluate import benchmark_rows
    from wronai.infer import generation_speed, load_adapter, merge, prompt_for
    from wronai.models import load_model
    from wronai.quant import has_fused_cpu_kernel, cpu_flags, cpu_packing
    from transformers import AutoTokenizer
    try: cfg, tok, nf4 = load_adapter(a.adapter)
    except FileNotFoundError as e: ap.exit(2, f"bench_generate: {e}\n")
    rows = benchmark_rows(cfg)[:a.prompts]
    prompts = [prompt_for(r["instruction"], tok, cfg.data.prompt_format, r["register"]) for r in rows]

    _, ftok, full = load_adapter(a.adapter, quantized=False)
    models = {"NF4 base + adapter": (nf4, tok)}
    dev = next(nf4.parameters()).device
    # its fused 4-bit CPU kernel needs AVX512-BF16
    fused = dev.type == "cpu" and has_fused_cpu_kernel()
    if fused: models["NF4 base + adapter, standard layout"] = (cpu_packing(load_adapter(a.adapter)[2], False), tok)
    models["full base + adapter"] = (full, ftok)
    with tempfile.TemporaryDirectory() as tmp:
        merge(a.adapter, Path(tmp)/"merged")
        models["merged"] = (load_model(str(Path(tmp)/"merged"), cfg.model.dtype, cfg.hardware.device),
                            AutoTokenizer.from_pretrained(Path(tmp)/"merged"))
    runs = []
    for bs in sizes:
        for name, (model, t) in models.items():
            r = dict(model=name, **generation_speed(model, t, prompts, a.new_tokens, bs))
            runs.append(r)
            print(f"{name:<20} batch {bs:>2}: {r['tokens_per_s']:8.1f} tokens/s  weights {r['weights_mib']:7.0f} MiB"
                  + (f"  peak {r['peak_mib']:7.0f} MiB" if r["peak_mib"] is not None else ""), flush=True)
    for r in runs:
        peer = next(p for p in runs if p["model"] == "merged" and p["batch_size"] == r["batch_size"])
        r["speed_vs_merged"] = r["tokens_per_s"] / peer["tokens_per_s"]
        r["weights_vs_merged"] = r["weights_mib"] / peer["weights_mib"]
    out = dict(adapter=str(a.adapter), base_model=cfg.model.name, prompts=len(prompts), new_tokens=a.new_tokens,
               device=torch.cuda.get_device_name(dev) if dev.type == "cuda"
               else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
               torch=torch.__version__, runs=runs)
    if dev.type == "cpu":
        out["bnb_fused_cpu_4bit"] = fused
        out["cpu_flags"] = cpu_flags()
    for r in runs: print(f"{r['model']:<20} batch {r['batch_size']:>2}: speed "
                         f"x{r['speed_vs_merged']:.2f}, weights x{r['weights_vs_merged']:.2f} of merged")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

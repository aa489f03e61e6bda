"""bitsandbytes' fused 4-bit CPU kernel against dequantizing each weight, for scoring in batches and for one answer at a
time (nbs/07_eval.ipynb says which `load_tuned` uses where).

    python scripts/fused_cpu_speed.py --adapter runs/quick_test [--examples 64] [--tokens 8]

Loads the adapter as `wronai eval` does, then times, with the kernel allowed and forbidden in turn (each twice, the
better time kept): the perplexity of `--examples` test answers in one batch, greedy answers to them in one batch, and
two answers one at a time. Prints the CPU's flags and the thread count beside the figures. On a CPU without
AVX512-BF16 there is no fused kernel, and it says so.
"""
import argparse, time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="a `wronai train` output folder")
    ap.add_argument("--config", default=None, help="its config (default: the one saved beside it)")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=8, help="new tokens per batched answer")
    a = ap.parse_args(argv)
    import torch
    from pathlib import Path
    from wronai.config import load_config
    from wronai.data import pad_collator, perplexity, tokenize
    from wronai.evaluate import benchmark_rows, generate_answers, load_tuned
    from wronai.quant import has_fused_cpu_kernel, cpu_flags
    print(cpu_flags(), f"{torch.get_num_threads()} threads")
    if not has_fused_cpu_kernel():
        print("no fused 4-bit CPU kernel on this CPU (it needs AVX512-BF16): nothing to compare")
        return
    cfg = load_config(str(a.config or Path(a.adapter)/"wronai.yaml"), [f"evaluation.max_examples={a.examples}"])
    rows = benchmark_rows(cfg)
    res = {}
    for fused in (True, False):
        # a model that has run packed cannot be unpacked exactly: one load per side
        tok, model = load_tuned(cfg, a.adapter, fused_cpu=fused)
        ex, _ = tokenize(rows, tok, cfg.data.max_seq_length, cfg.data.prompt_format)
        def best(f):
            times = []
            for _ in range(2):
                t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
            return min(times)
        res[fused] = (best(lambda: perplexity(model, ex, pad_collator(tok), len(ex))),
                      best(lambda: generate_answers(model, tok, rows, cfg.data.prompt_format, a.tokens, len(rows))),
                      best(lambda: generate_answers(model, tok, rows[:2], cfg.data.prompt_format, 24, 1)))
    for i, what in enumerate((f"perplexity of {len(rows)} answers, one batch",
                              f"greedy answers to {len(rows)} questions ({a.tokens} tokens), one batch",
                              "two answers one at a time (24 tokens)")):
        print(f"{what}: fused kernel {res[True][i]:.1f} s, without it {res[False][i]:.1f} s")


if __name__ == "__main__":
    main()

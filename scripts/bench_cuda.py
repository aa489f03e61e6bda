"""The CUDA path, checked and measured on whatever NVIDIA GPU runs it, with nothing downloaded.

    python scripts/bench_cuda.py --json benchmarks/cuda_t4.json    # after `make install`: the packaged assets serve

The lent machine that made benchmarks/cuda_h100.json had no wronai install; it was given the folders instead:
    --small ~/.cache/wronai/models/smollm2-135m (config and tokenizer files only) --mistral-tokenizer DIR
    (DIR: `wronai.tokens.mistral_tokenizer().save_pretrained(DIR)`), and WRONAI_CACHE holding the built datasets.

1. `nf4`: bitsandbytes' CUDA NF4 kernels against wronai's hand-written NF4 (03_quantization), byte for byte.
2. `matmul_peak`: the dense bf16 and fp16 matrix-product rate of this GPU, the denominator of model-FLOPs utilisation.
3. `train_small`: `wronai.train.train` itself on configs/quick_test.yaml with the recipe's paged optimizer and
   gradient checkpointing, in bf16 and in fp16 (what a T4, which has no bf16, trains in), on a model of
   SmolLM2-135M's shape with random weights and SmolLM2's real tokenizer (--small: a folder with its config.json
   and tokenizer files); then greedy answers from each saved adapter through `wronai.infer`. Random weights say
   nothing about quality: this checks that the path runs and that the losses stay finite.
4. `mistral7b`: a model of Mistral-7B-v0.1's shape with random weights, its real tokenizer (--mistral-tokenizer),
   loaded through wronai's own NF4 path with the reference recipe (configs/default.yaml: NF4, double quant, bf16
   compute, LoRA r=16 on all seven projections, trainable rows for the Polish tags, paged AdamW), then a few
   optimizer steps of `WronaiTrainer` on fixed-length batches for several sequence lengths, batch sizes, and
   checkpointing on and off: peak allocated memory, and tokens per second after one warm-up step.
5. `recipe_data` (not in the default parts; run it in a process of its own, so that its peak is its own):
   `wronai.train.train`
   with configs/default.yaml unchanged on that model, 8 optimizer steps of 1 x 16 sequences of the real mixed data,
   longest batch first (length grouping): the recipe's peak memory as a user meets it.

6. `trainers` (`make bench-cuda`, benchmarks/bench_cuda.json; alone, since it needs Unsloth's install): `wronai bench`
   on this GPU, each side in a process of its own: wronai, TRL's SFTTrainer three ways (defaults, grouped by length,
   packed) and Unsloth where it is installed, on the quick_test work (batch 8, checkpointing on) once with the packaged
   SmolLM2-135M and once with the random Mistral-7B-shaped model: real tokens/s, memory, loss, MFU against this GPU's
   bf16 peak, and wronai's speedup against each. A side that fails is recorded with its error, and the others run.

Each part is written to the JSON as soon as it ends, and a part that fails records its error and the rest go on.
`--tiny` runs the same code with toy shapes (on CPU too), to check the script itself.
"""
import argparse, dataclasses, json, platform, shutil, sys, time, traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# the checkout's wronai, installed or not
sys.path.insert(0, str(ROOT))
# (sequence length, batch size, gradient checkpointing): checkpointing off first, since the Trainer only turns it on
PLANS = [
    (512, 1, False), (2048, 1, False), (256, 8, False),
    (512, 1, True), (2048, 1, True), (1024, 4, True), (4096, 1, True)]


def _sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()


def _mib(x):
    from wronai.models import MiB
    return round(x / MiB, 1)


def env():
    import bitsandbytes, peft, transformers
    from wronai.quant import cpu_flags
    r = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "bitsandbytes": bitsandbytes.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
         "cpu": cpu_flags()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        r.update(gpu=p.name, capability=list(torch.cuda.get_device_capability()), gpu_memory_mib=_mib(p.total_memory),
                 multiprocessors=p.multi_processor_count)
    return r


def _codes(packed): return torch.stack([packed >> 4, packed & 15], -1).flatten().long()   # high nibble first


def nf4(device):
    """wronai's NF4 codes and absmax against bitsandbytes' kernels on `device`, plain and double-quantized; where codes
    differ, by how much and how near a boundary."""
    import bitsandbytes.functional as F
    from wronai.quant import dequantize_nf4, nf4_levels, quantize_nf4
    torch.manual_seed(0)
    out, lv = {}, nf4_levels()
    for shape in [(4096, 4096), (14336, 4096), (1000, 37)]:
        # float32, as 03_quantization compares them
        w = torch.randn(shape, device=device) * 0.02
        q, st = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
        # ours runs on the same device, in float32
        levels = lv.to(device)
        packed, absmax = quantize_nf4(w, levels=levels)
        ours = dequantize_nf4(packed, absmax, shape, levels=levels).cpu()
        packed, absmax = packed.cpu(), absmax.cpu()
        theirs = F.dequantize_4bit(q, st).float().cpu()
        q2, st2 = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        a, b = _codes(packed), _codes(q.flatten().cpu())
        diff = (a != b).nonzero().flatten()
        r = {"values": w.numel(), "codes_equal": bool(torch.equal(q.flatten().cpu(), packed)),
             "codes_differing": diff.numel(),
             "absmax_max_diff": float((st.absmax.float().cpu() - absmax).abs().max()),
             "dequant_max_diff": float((ours - theirs).abs().max()),
             "double_quant_error_vs_plain": float((F.dequantize_4bit(q2, st2).float().cpu() - theirs).abs().max())}
        if diff.numel():
            # the scaled value each code was chosen for
            x = (w.flatten().cpu()[diff] / absmax[diff // 64]).double()
            lo, hi = torch.minimum(a[diff], b[diff]), torch.maximum(a[diff], b[diff])
            # the boundary between the two levels picked
            mid = (lv.double()[lo] + lv.double()[hi]) / 2
            r.update(max_level_steps=int((hi - lo).max()), max_distance_from_boundary=float((x - mid).abs().max()))
        out["x".join(map(str, shape))] = r
    return out


def matmul_peak(device, n=8192, reps=10):
    "Dense matrix-product rate in TFLOP/s for bf16 and fp16 (mean of `reps` after 3 warm-ups, random data)."
    if device != "cuda": n, reps = 1024, 3
    out = {"n": n}
    for name, dt in [("bf16", torch.bfloat16),
                     ("fp16", torch.float16)] if device == "cuda" else [("fp32", torch.float32)]:
        a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
        for _ in range(3): a @ b
        _sync(); t = time.perf_counter()
        for _ in range(reps): a @ b
        _sync(); out[f"{name}_tflops"] = round(2 * n**3 * reps / (time.perf_counter() - t) / 1e12, 3)
        del a, b
    return out


def random_model_dir(config, tokenizer_dir, out, dtype):
    """Save a model of `config`'s shape with random weights (transformers' own initialisation) and the tokenizer in
    `tokenizer_dir` to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out, max_shard_size="2GB")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available(): torch.cuda.empty_cache()
    return n


def mistral_shape(tiny):
    "Mistral-7B-v0.1's shape (transformers' `MistralConfig` defaults), or toy dimensions of it with `tiny`."
    from transformers import MistralConfig
    config = MistralConfig()
    if tiny: config.update(dict(num_hidden_layers=2, hidden_size=128, intermediate_size=448, num_attention_heads=4,
                                num_key_value_heads=2))
    return config


def mistral_dir(tok_dir, work, tiny):
    "The random Mistral-7B-shaped model's folder in `work`, built by the first part that asks for it."
    mdir = Path(work)/"mistral-random"
    if not (mdir/"config.json").exists(): random_model_dir(mistral_shape(tiny), tok_dir, mdir, torch.bfloat16)
    return mdir


def train_small(small, work, tiny):
    "`wronai.train.train` in bf16 and fp16 on a random SmolLM2-shaped model, then greedy answers from the adapter."
    import bitsandbytes as bnb
    from transformers import AutoConfig
    from wronai.config import load_config
    from wronai.infer import Sampling, answer, load_adapter
    from wronai.train import train
    config = AutoConfig.from_pretrained(small)
    if tiny: config.update(dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=16))
    mdir = Path(work)/"small-random"
    n = random_model_dir(config, small, mdir, torch.bfloat16)
    steps = 6 if tiny else 30
    out = {"parameters": n,
           "note": "random weights: the losses show that the path runs and stays finite, nothing about quality"}
    for prec in ["bf16", "fp16"]:
        half = {"bf16": "bfloat16", "fp16": "float16"}[prec]
        cfg = load_config(ROOT/"configs/quick_test.yaml", [
            f"model.name={mdir}", f"model.dtype={half}", f"quantization.bnb_4bit_compute_dtype={half}",
            f"training.precision={prec}",
            "training.optim=paged_adamw_32bit", "training.gradient_checkpointing=true", f"training.max_steps={steps}",
            "training.logging_steps=5", f"training.eval_steps={steps}", f"training.save_steps={steps}",
            "monitoring.report_to=[]",
            "data.max_examples=400", "data.max_eval_examples=32"])
        t = time.time()
        if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
        res = train(cfg, output_dir=Path(work)/f"small-{prec}")
        losses = [h["loss"] for h in res["log_history"] if "loss" in h]
        r = {k: res[k]
             for k in ("device", "steps", "notes", "train_loss_first", "train_loss_last", "tokens_per_second",
                       "peak_memory_mb")}
        r.update(eval_loss_before=res["eval_before"]["loss"], eval_loss_after=res["eval_after"]["loss"],
                 all_losses_finite=all(map(_finite, losses)),
                 wall_seconds=round(time.time() - t, 1))
        cfg2, tok, model = load_adapter(res["output_dir"])
        r["compute_dtype"] = str(next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)).compute_dtype)
        r["answer"] = answer(model, tok, "Jak się nazywa stolica Polski?", Sampling(max_new_tokens=16))
        # what was generated before the answer was cut out
        from wronai.infer import prompt_for
        ids = tok(prompt_for("Jak się nazywa stolica Polski?", tok), return_tensors="pt",
                  add_special_tokens=False).to(model.device)
        gen = model.generate(**ids, max_new_tokens=16, do_sample=False)[0, ids["input_ids"].shape[1]:]
        r["generated"] = tok.decode(gen, skip_special_tokens=False)
        r["answer_device"] = str(next(model.parameters()).device)
        out[prec] = r
        del model
        if torch.cuda.is_available(): torch.cuda.empty_cache()
    return out


def _finite(x): return x == x and abs(x) != float("inf")


def mistral7b(tok_dir, work, tiny, deadline, plans=PLANS):
    """Reference-recipe training steps on a random Mistral-7B-shaped model: load, then peak memory and speed for each
    plan."""
    from wronai.bench import StepTimes
    from wronai.config import load_config
    from wronai.data import pad_collator
    from wronai.lora import add_lora, trainable_report
    from wronai.new_rows import rows_layer
    from wronai.quant import load_quantized
    from wronai.runs import WronaiTrainer
    from wronai.tokens import prepare_tokenizer, resize_with_piece_mean, token_indices
    from wronai.train import training_arguments
    config = mistral_shape(tiny)
    mdir = Path(work)/"mistral-random"
    t = time.time()
    n = random_model_dir(config, tok_dir, mdir, torch.bfloat16)
    out = {"parameters": n,
           "config": {k: getattr(config, k)
                      for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                                     "num_attention_heads", "num_key_value_heads")},
           "build_seconds": round(time.time() - t, 1), "runs": []}
    cfg = load_config(ROOT/"configs/default.yaml", [f"model.name={mdir}", "monitoring.report_to=[]"])
    out["recipe"] = {"max_gpu_memory_mb": cfg.hardware.max_gpu_memory_mb, "cpu_offload": cfg.hardware.cpu_offload,
                     "optim": cfg.training.optim, "lora_r": cfg.lora.r, "targets": cfg.lora.target_modules}
    cuda = torch.cuda.is_available()
    if cuda: torch.cuda.reset_peak_memory_stats()
    t = time.time()
    tok = prepare_tokenizer(cfg)
    model = load_quantized(cfg)
    out["load_seconds"] = round(time.time() - t, 1)
    out["device_map"] = sorted({str(v) for v in getattr(model, "hf_device_map", {}).values()})
    if cuda:
        out["after_load_mib"] = _mib(torch.cuda.memory_allocated())
        out["load_peak_mib"] = _mib(torch.cuda.max_memory_allocated())
    new = resize_with_piece_mean(model, tok)
    model = add_lora(model, _no_ckpt(cfg), token_indices(model, new))
    out["trainable"] = trainable_report(model)
    if cuda: out["after_lora_mib"] = _mib(torch.cuda.memory_allocated())
    for seq, bs, ckpt in plans:
        if time.time() > deadline:
            out["runs"].append({"seq": seq, "batch": bs, "checkpointing": ckpt, "skipped": "out of time"})
            continue
        # new_rows: what trains the tags' rows (FastNewRows or peft's layer), which the memory plan asks
        r = {"seq": seq, "batch": bs, "checkpointing": ckpt, "new_rows": rows_layer(model)}
        try:
            if not ckpt and getattr(model, "is_gradient_checkpointing", False): model.gradient_checkpointing_disable()
            steps = 4
            args, _, _ = training_arguments(_plan(cfg, bs, ckpt), Path(work)/"m7-run", max_steps=steps)
            args = dataclasses.replace(args, eval_strategy="no", save_strategy="no", report_to=[], logging_steps=1)
            g = torch.Generator().manual_seed(seq * bs)
            data = [{"input_ids": ids, "attention_mask": [1] * seq, "labels": ids, "kind": "text"}
                    for ids in torch.randint(100, 32000 if not tiny else 1000, (bs * steps, seq), generator=g).tolist()]
            timer = StepTimes()
            trainer = WronaiTrainer(model=model, args=args, train_dataset=data, data_collator=pad_collator(tok),
                                    processing_class=tok,
                                    callbacks=[timer])
            if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
            trainer.train()
            r["checkpointing_active"] = bool(getattr(model, "is_gradient_checkpointing", False))
            r["step_seconds"] = [round(x, 3) for x in timer.times]
            r["tokens_per_second"] = round(seq * bs * (len(timer.times) - 1) / sum(timer.times[1:]), 1)
            r["losses"] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            if cuda:
                free, total = torch.cuda.mem_get_info()
                r.update(peak_allocated_mib=_mib(torch.cuda.max_memory_allocated()),
                         peak_reserved_mib=_mib(torch.cuda.max_memory_reserved()),
                         device_used_after_mib=_mib(total - free))
            del trainer
        except Exception as e:
            r["error"] = f"{type(e).__name__}: {e}"[:800]
            traceback.print_exc()
            if cuda: torch.cuda.empty_cache()
        out["runs"].append(r)
        print(json.dumps(r), flush=True)
    return out


def recipe_data(tok_dir, work, tiny, steps=8):
    """`wronai.train.train` itself with configs/default.yaml on the random Mistral-7B shape: its data, sequence length,
    batch and accumulation, as a user runs it."""
    from wronai.config import load_config
    from wronai.train import train
    mdir = mistral_dir(tok_dir, work, tiny)
    cfg = load_config(ROOT/"configs/default.yaml",
                      [f"model.name={mdir}", "monitoring.report_to=[]", "training.eval_steps=1000",
                                                    "training.save_steps=1000", "training.logging_steps=1",
                       "data.max_eval_examples=32"])
    if torch.cuda.is_available(): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    res = train(cfg, output_dir=Path(work)/"recipe", max_steps=steps)
    losses = [h["loss"] for h in res["log_history"] if "loss" in h]
    out = {k: res[k]
           for k in ("device", "steps", "notes", "tokens", "tokens_per_second", "train_seconds", "peak_memory_mb")}
    out.update(max_seq_length=cfg.data.max_seq_length, batch=cfg.training.per_device_train_batch_size,
               accumulation=cfg.training.gradient_accumulation_steps,
               all_losses_finite=all(map(_finite, losses)), recipe_limit_mb=cfg.hardware.max_gpu_memory_mb)
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        out.update(peak_reserved_mib=_mib(torch.cuda.max_memory_reserved()), device_used_after_mib=_mib(total - free))
    return out


def trainers(tok_dir, work, tiny, steps=30):
    """`wronai.bench.bench` on the quick_test work with the packaged SmolLM2 and with a random Mistral-7B-shaped
    model: every side that can run here (`pick_sides`), failures recorded."""
    from wronai.bench import bench
    mdir = mistral_dir(tok_dir, work, tiny)
    # --tiny: a few steps of small batches, to check the plumbing (on a CPU too)
    short = ["training.per_device_train_batch_size=2", "data.max_examples=64", "data.max_eval_examples=8"]
    steps, warmup, more = (4, 2, short) if tiny else (steps, 3, [])
    out = {}
    for name, model in (("smollm2-135m", []), ("mistral-7b-shape", [f"model.name={mdir}"])):
        t = time.time()
        out[name] = bench(ROOT/"configs/quick_test.yaml", steps=steps, warmup=warmup, overrides=model + more,
                          keep_going=True)
        out[name]["wall_seconds"] = round(time.time() - t, 1)
        speedups = {k: out[name].get(k) for k in ("speedup", "speedup_best", "speedup_unsloth")}
        print(f"== trainers on {name}: {json.dumps(speedups)}", flush=True)
    return out


def _no_ckpt(cfg):
    "`cfg` with gradient checkpointing off (each plan turns it on or off itself)."
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, gradient_checkpointing=False))


def _plan(cfg, bs, ckpt):
    return dataclasses.replace(cfg,
                               training=dataclasses.replace(cfg.training, per_device_train_batch_size=bs,
                                                            gradient_accumulation_steps=1,
                                                                 gradient_checkpointing=ckpt, group_by_length=False))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="write the results here (rewritten after each part)")
    ap.add_argument("--small",
                    help="folder with SmolLM2-135M's config.json and tokenizer files (default: the packaged model's)")
    ap.add_argument("--mistral-tokenizer",
                    help="folder with Mistral-7B-v0.1's tokenizer (default: the packaged one, saved to --work)")
    ap.add_argument("--work", default="/tmp/wronai-cuda",
                    help="scratch folder for random models and runs (emptied first)")
    ap.add_argument("--parts", default="nf4,matmul_peak,train_small,mistral7b")
    ap.add_argument("--seconds", type=float, default=420, help="start no mistral7b plan after this many seconds")
    ap.add_argument("--tiny", action="store_true", help="toy shapes, to check this script (runs on CPU too)")
    a = ap.parse_args(argv)
    parts = a.parts.split(",")
    if "trainers" in parts and not torch.cuda.is_available() and not a.tiny:
        print("the trainers part (make bench-cuda) measures trainers on a CUDA GPU, and this torch "
              f"({torch.__version__}) sees none (torch.cuda.is_available() is False). On a CPU, `make bench` is "
              "the same bench; `--tiny` checks this script on toy shapes.", file=sys.stderr)
        return 2
    started = time.time()
    shutil.rmtree(a.work, ignore_errors=True); Path(a.work).mkdir(parents=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.small is None and "train_small" in a.parts:
        from wronai.models import packaged_dir
        a.small = str(packaged_dir("smollm2-135m"))
    if a.mistral_tokenizer is None and any(p in parts for p in ("mistral7b", "recipe_data", "trainers")):
        from wronai.tokens import mistral_tokenizer
        a.mistral_tokenizer = str(Path(a.work)/"mistral-tok")
        mistral_tokenizer().save_pretrained(a.mistral_tokenizer)
    res = {"script": "scripts/bench_cuda.py", "tiny": a.tiny, "env": env()}
    path = Path(a.json); path.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(res["env"]), flush=True)
    for part in parts:
        t = time.time()
        try:
            if part == "nf4": res[part] = nf4(device)
            elif part == "matmul_peak": res[part] = matmul_peak(device)
            elif part == "train_small": res[part] = train_small(a.small, a.work, a.tiny)
            elif part == "mistral7b": res[part] = mistral7b(a.mistral_tokenizer, a.work, a.tiny, started + a.seconds)
            elif part == "recipe_data": res[part] = recipe_data(a.mistral_tokenizer, a.work, a.tiny)
            elif part == "trainers": res[part] = trainers(a.mistral_tokenizer, a.work, a.tiny)
            else: ap.error(f"unknown part {part!r}")
        except Exception as e:
            traceback.print_exc()
            res[part] = {"error": f"{type(e).__name__}: {e}"[:2000]}
        res.setdefault("seconds", {})[part] = round(time.time() - t, 1)
        path.write_text(json.dumps(res, indent=1, default=str))
        print(f"== {part} done in {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

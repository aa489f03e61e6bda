"""The same QLoRA steps as one process or as FSDP2 ranks on CPUs (gloo): the check that sharding changes nothing, and
the per-rank peaks that `wronai memory --ranks N --strategy fsdp` predicts (nbs/06f_fsdp.ipynb).

    python scripts/fsdp_cpu.py --json one.json                                  # one process, the whole batch
    torchrun --nproc_per_node 2 scripts/fsdp_cpu.py --json two.json             # two ranks, half the batch each

The config's model loads in NF4 with its 4-bit weights stored as float32 (FSDP shards floating-point tensors only),
with LoRA and the Polish tags' trainable rows, seeded alike in every process. Under torchrun each decoder layer and
the root are sharded with torch's `fully_shard` (`wronai.fsdp.shard`), as accelerate does on GPUs. Every process
then takes the same `--steps` AdamW steps on fixed-length batches of random tokens, every token scored (the longest
batch, what the planner plans for): rank r the r-th slice of each global batch, its loss summed over its tokens and
divided by the global batch's (`num_items_in_batch`), so that FSDP's mean over ranks of the gradients is the one
process's gradient. Dropout is off (its masks would differ by rank). Peak memory as in scripts/measure_memory.py:
the highest anonymous resident memory of each process less the same before the model loaded. Rank 0 writes the
JSON and, with --adapter, the trainable tensors gathered whole, before and after training; with --save, the trained
adapter as peft saves one (`save_pretrained` given the gathered tensors), which one process loads.
"""
import argparse, ctypes, json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT/"configs/quick_test.yaml"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step, over all ranks")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--json", required=True)
    ap.add_argument("--adapter", help="save the trainable tensors here, before and after training (torch.save)")
    ap.add_argument("--save", help="save the trained adapter here as peft does (save_pretrained), with the tokenizer")
    a = ap.parse_args(argv)
    import torch, torch.distributed as dist
    import bitsandbytes, peft, transformers                                        # noqa: F401 (the runtime)
    from wronai.config import load_config
    from wronai.fsdp import full_state, shard
    from wronai.lora import add_lora
    from wronai.quant import cpu_flags, load_quantized
    from wronai.runs import PeakMemory, anon_mb
    from wronai.tokens import prepare_tokenizer, resize_with_piece_mean, token_indices
    ws = int(os.environ.get("WORLD_SIZE", 1))
    if a.batch % ws: raise SystemExit(f"--batch {a.batch} does not split over {ws} ranks")
    if ws > 1: dist.init_process_group("gloo")
    rank = dist.get_rank() if ws > 1 else 0
    cfg = load_config(a.config, [*a.set, "quantization.bnb_4bit_quant_storage=float32", "lora.lora_dropout=0.0",
                                 "training.gradient_checkpointing=true", f"data.max_seq_length={a.seq}",
                                 f"training.per_device_train_batch_size={a.batch // ws}", "hardware.device=cpu"])
    tok = prepare_tokenizer(cfg)
    rss0 = anon_mb()
    torch.manual_seed(cfg.training.seed)                       # the same LoRA initialisation in every process
    model = load_quantized(cfg, device="cpu")
    model = add_lora(model, cfg, token_indices(model, resize_with_piece_mean(model, tok)))
    if ws > 1: shard(model)
    g = torch.Generator().manual_seed(a.seq * a.batch)
    data = torch.randint(100, len(tok) - 20, (a.steps, a.batch, a.seq), generator=g)
    start = {k: v.clone() for k, v in full_state(model).items()}   # a copy: the optimizer updates in place
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.training.learning_rate)
    model.train()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    losses, per = [], a.batch // ws
    n = a.batch * (a.seq - 1)                                  # every next token of the global batch is scored
    t = time.time()
    with PeakMemory("cpu") as peak:
        for step in range(a.steps):
            ids = data[step, rank * per:(rank + 1) * per]
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids, num_items_in_batch=n).loss
            (loss * ws).backward()                             # FSDP averages the ranks' gradients
            opt.step(); opt.zero_grad()
            total = loss.detach().clone()
            if ws > 1: dist.all_reduce(total)
            losses.append(total.item())
    seconds = time.time() - t
    mine = {"rank": rank, "runtime_anon_mib": round(rss0, 1), "peak_anon_mib": round(peak.peak, 1),
            "measured_mib": round(peak.peak - rss0, 1)}
    ranks = [None] * ws
    if ws > 1: dist.all_gather_object(ranks, mine)
    else: ranks = [mine]
    state = full_state(model)
    if rank == 0:
        if a.adapter: torch.save({"start": start, "end": state}, a.adapter)
        # the gathered tensors, as peft saves an adapter: what a single process loads
        if a.save: model.save_pretrained(a.save, state_dict=state); tok.save_pretrained(a.save)
        res = {"script": "scripts/fsdp_cpu.py", "config": a.config, "settings": a.set, "world_size": ws,
               "strategy": "fsdp" if ws > 1 else "one process", "steps": a.steps, "batch": a.batch, "seq": a.seq,
               "per_device_batch": per, "checkpointing": True, "losses": losses, "seconds": round(seconds, 1),
               "ranks": ranks, "threads": torch.get_num_threads(), "cpu": cpu_flags(),
               "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
               "versions": {m.__name__: m.__version__ for m in (torch, transformers, peft, bitsandbytes)}}
        Path(a.json).write_text(json.dumps(res, indent=1))
    if ws > 1: dist.destroy_process_group()

if __name__ == "__main__":
    sys.exit(main())

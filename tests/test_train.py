"""Training from the outside, as a user runs it: the command, resuming after a kill, Ctrl-C, a diverging run, two
processes.

Each run is a few steps of configs/quick_test.yaml on 64 examples, two at a time, so a test takes under a minute on 2
CPU cores. The README's main command in full is in test_main_job.py.
"""
import importlib.util, json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wronai.runs import checkpoint_ok, latest_checkpoint

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_SILENT": "true"}
ENV.pop("WANDB_API_KEY", None)
HAS_WANDB = importlib.util.find_spec("wandb") is not None
# 2, not 4: half the time of a step "--set", "training.logging_steps=1",
SMALL = ["--max-steps", "8", "--set", "training.per_device_train_batch_size=2",
         # the recipe's setting (quick_test turns it off)
         "--set", "training.gradient_checkpointing=true",
         "--set", "training.eval_steps=4", "--set", "training.save_steps=2", "--set", "training.save_total_limit=2",
         "--set", "data.max_examples=64", "--set", "data.max_eval_examples=8",
         # the first batches are the longest: 128 tokens at most, not 256, halves what those steps cost
         "--set", "data.max_seq_length=128",
         "--set", f"monitoring.report_to={'[tensorboard, wandb]' if HAS_WANDB else '[tensorboard]'}"]

def cmd(out, *extra, config="configs/quick_test.yaml"):
    "The reference guide's command, `python scripts/train.py --config ...`, small."
    return [sys.executable, "scripts/train.py", "--config", config, "--output-dir", str(out), *SMALL, *extra]

def run(args, timeout=900):
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)

def start(args, log):
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)

def wait_for(pred, proc, timeout=600):
    "Poll `pred` until true; fail if `proc` ends first."
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before the moment we waited for"
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.1)

def adapter(d):
    return load_file(str(Path(d)/"adapter_model.safetensors"))

@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    "One uninterrupted small run; several tests compare against it."
    out = tmp_path_factory.mktemp("clean")/"run"
    r = run(cmd(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r

@pytest.mark.xdist_group("clean")                        # the clean run is made once, in one xdist worker
def test_train_saves_adapter_tokenizer_config_card_and_logs(clean):
    out, r = clean
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "wronai.yaml", "README.md",
            "train_results.json", "logs"} <= files, files
    assert any((out/"logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    if HAS_WANDB: assert list((out/"wandb").glob("offline-run-*")), "W&B without a key should log offline"
    res = json.loads((out/"train_results.json").read_text())
    assert res["steps"] == 8 and not res["interrupted"]
    assert res["tokens_per_second"] > 0 and res["peak_memory_mb"] > 100
    assert "tokens/s" in r.stdout and "peak memory" in r.stdout            # the run prints them
    card = (out/"README.md").read_text()
    assert "packaged:smollm2-135m" in card and f"{res['eval_after']['perplexity']:.2f}" in card
    assert len([p for p in out.glob("checkpoint-*")]) == 2                 # save_total_limit
    assert all(checkpoint_ok(p) for p in out.glob("checkpoint-*"))

@pytest.mark.xdist_group("clean")                        # the clean run is made once, in one xdist worker
def test_existing_run_is_not_overwritten(clean):
    out, _ = clean
    before = (out/"adapter_model.safetensors").stat().st_mtime_ns
    r = run(cmd(out))
    assert r.returncode == 2 and "already holds a run" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert (out/"adapter_model.safetensors").stat().st_mtime_ns == before

@pytest.mark.xdist_group("clean")                        # the clean run is made once, in one xdist worker
def test_kill_and_resume_reaches_the_same_adapter(clean, tmp_path):
    out = tmp_path/"run"
    p = start(cmd(out), tmp_path/"log1")
    wait_for(lambda: (out/"checkpoint-4").is_dir() and checkpoint_ok(out/"checkpoint-4"), p)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/"adapter_model.safetensors").exists(), "killed too late: the run had finished"
    killed_at = latest_checkpoint(out)
    at_kill = adapter(killed_at)
    r = run(cmd(out, "--resume"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"resuming from {killed_at}" in r.stderr, r.stderr[-3000:]
    a, b = adapter(clean[0]), adapter(out)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((b[k] - at_kill[k]).abs().max().item() for k in b)
    print(f"resumed vs uninterrupted: max difference {diff:.2e}; the steps after "
          f"{killed_at.name} moved weights by {moved:.2e}")
    assert diff < 1e-6 and moved > 1e-5                                  # the resumed steps did train, and the same way

# The same command as `cmd`, with bitsandbytes as on a CPU with AVX512-BF16 (wronai.quant.as_on_avx512bf16: its real
# fused
# kernel where this CPU has one, a stand-in elsewhere), and a probe that records, at every training step, how many 4-bit
# layers have bitsandbytes' packing switch on and how many are in its packed inference layout.
AS_ON_AVX512BF16 = """
import json, sys
from wronai import train as T
from wronai.cli import main
from wronai.quant import has_fused_cpu_kernel, as_on_avx512bf16, linear4bit_layers, packed_layers
seen, step = [], T.WronaiTrainer.training_step
def probe(self, model, *a, **k):
    layers = linear4bit_layers(model)
    seen.append([len(layers), sum(m.support_avx512bf16_for_cpu for _, m in layers), len(packed_layers(model))])
    return step(self, model, *a, **k)
T.WronaiTrainer.training_step = probe
with as_on_avx512bf16(): code = main(["train", *sys.argv[2:]])
json.dump({"steps": seen, "real_kernel": has_fused_cpu_kernel()}, open(sys.argv[1], "w"))
sys.exit(code)
"""

@pytest.mark.xdist_group("clean")                        # the clean run is made once, in one xdist worker
def test_packing_cpus_train_the_same_adapter(clean, tmp_path):
    """On a CPU with AVX512-BF16 bitsandbytes packs 4-bit weights at the first eval pass, and training through them
    loses gradients."""
    out, probe = tmp_path/"run", tmp_path/"probe.json"
    r = run([sys.executable, "-c", AS_ON_AVX512BF16, str(probe), *cmd(out)[2:]])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    seen = json.loads(probe.read_text())
    print("bitsandbytes' fused CPU kernel:", "the real one (this CPU has AVX512-BF16)" if seen["real_kernel"] else
          "not available on this CPU (no AVX512-BF16); the packed path ran on wronai.quant.fused_cpu_gemm")
    assert len(seen["steps"]) == 8 and all(n == 210 and on == 0 and packed == 0 for n, on,
                                           packed in seen["steps"]), seen
    a, b = adapter(clean[0]), adapter(out)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"packing as shipped vs packing unavailable: max adapter difference {diff:.2e}")
    assert a.keys() == b.keys() and diff < 1e-6

def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path/"run"
    p = start(cmd(out), tmp_path/"log")
    wait_for(lambda: (out/"checkpoint-2").is_dir() and checkpoint_ok(out/"checkpoint-2"), p)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=300) == 130, (tmp_path/"log").read_text()[-3000:]
    log = (tmp_path/"log").read_text()
    assert "Ctrl-C: stopping after this step" in log and "Traceback" not in log
    last = latest_checkpoint(out)
    # a checkpoint at the step it stopped, not only the scheduled one
    assert last is not None and int(last.name.split("-")[1]) >= 3, last
    assert not (out/"adapter_model.safetensors").exists()                 # an interrupted run is not a final adapter
    assert json.loads((out/"train_results.json").read_text())["interrupted"] is True

def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    out = tmp_path/"run"
    r = run(cmd(out, "--set", "training.learning_rate=1e30", "--set", "training.warmup_ratio=0", "--set",
                "training.save_steps=1",
                "--set", "training.eval_steps=1"))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    m = re.search(r"wronai: the training loss became (nan|inf) at step (\d+).*Last good checkpoint: (\S+?)\.", r.stderr)
    assert m, r.stderr[-2000:]
    good = Path(m.group(3))
    assert checkpoint_ok(good) and int(good.name.split("-")[1]) == int(m.group(2)) - 1
    assert all(torch.isfinite(t).all() for t in adapter(good).values())
    assert "Traceback" not in r.stderr

def test_two_processes_agree_and_save_one_adapter(tmp_path):
    if shutil.which("accelerate") is None: pytest.fail("accelerate launch is not installed")
    out = tmp_path/"run"
    # accelerate's data-parallel launcher (torchrun underneath); without a GPU the processes talk over gloo on the CPU.
    # (`--cpu` with several processes would need mpirun.)
    r = run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
             "no",
             # 2 steps (one checkpoint) prove the sync as well as 8
             "--dynamo_backend", "no", *cmd(out)[1:], "--max-steps", "2"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sums = dict(re.findall(r"rank (\d)/2: adapter sha256 (\w+)", r.stdout))
    assert sorted(sums) == ["0", "1"], r.stdout[-3000:]
    # each rank saw different batches; synced gradients keep every weight equal
    assert sums["0"] == sums["1"], sums
    res = json.loads((out/"train_results.json").read_text())
    assert res["world_size"] == 2 and res["adapter_sha256"] == sums["0"]
    final = adapter(out)
    # one adapter, readable: not two writers' mix
    assert final.keys() == adapter(out/"checkpoint-2").keys()
    # it trained (B starts at zero), so equal sums mean synced
    assert any(v.abs().max() > 0 for k, v in final.items() if "lora_B" in k)

BOOM = """
import logging, signal, sys
import wronai.models as M
picks, real = [], M.pick_device
M.pick_device = lambda *a, **k: (picks.append(a), real(*a, **k))[1]          # before the modules that import it by name
from transformers import TrainerCallback
from wronai.config import load_config
from wronai.train import train

class Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kw): raise RuntimeError("boom inside training")

mine = lambda signum, frame: None
signal.signal(signal.SIGINT, mine)
level = logging.getLogger("wronai.train").level
cfg = load_config("configs/quick_test.yaml", ["data.max_examples=8", "data.max_eval_examples=2", "training.per_device_train_batch_size=2",
                                              "training.gradient_accumulation_steps=1", "monitoring.report_to=[none]"])
try: train(cfg, output_dir=sys.argv[1], max_steps=2, callbacks=[Boom()])
except RuntimeError as e: assert "boom" in str(e), e
else: raise SystemExit("training did not raise")
assert signal.getsignal(signal.SIGINT) is mine, signal.getsignal(signal.SIGINT)   # Ctrl-C is the caller's again
assert logging.getLogger("wronai.train").level == level
assert len(picks) == 1, picks                                                  # the device is decided once, then passed down
print("handler restored")
"""  # noqa: E501 (Markdown: a table row or a paragraph is one line)

def test_a_run_that_raises_gives_ctrl_c_back(tmp_path):
    # the Trainer skips on_train_end when training raises; a notebook kernel must not be left with training's
    # Ctrl-C handler.
    # On the way, up to the first step: the device was picked once (setup, the model, the Trainer's arguments
    # receive it)
    r = run([sys.executable, "-c", BOOM, str(tmp_path/"run")])
    assert r.returncode == 0 and "handler restored" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]

"""The installed `wronai` console script, run as a user would run it."""
import shutil, subprocess
from pathlib import Path

import pytest
import yaml

from wronai.config import load_config

ROOT = Path(__file__).resolve().parent.parent

def wronai(*args):
    exe = shutil.which("wronai")
    assert exe, "the wronai console script is not installed (pip install -e .)"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)

@pytest.mark.parametrize("cfg",
                         ["configs/quick_test.yaml", "configs/default.yaml", "configs/cpu_full.yaml",
                          "configs/cpu_gemma.yaml", "configs/fsdp_qlora.yaml"])
def test_shipped_configs_check(cfg):
    r = wronai("config", "check", cfg)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout

def test_show_prints_the_resolved_config():
    r = wronai("config", "show", "configs/default.yaml")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == load_config(ROOT/"configs/default.yaml").to_dict()

@pytest.mark.parametrize("text,named", [
    ("lora: {r: 0}\n", "lora.r"),
    ("lora:\n  lora_alpah: 16\n", "lora.lora_alpah"),
    ("trainig:\n  max_steps: 3\n", "trainig"),
    ("quantization: {bnb_4bit_quant_type: int4}\n", "quantization.bnb_4bit_quant_type"),
    ("lora: {r: 16\n", "not valid YAML"),
])
def test_bad_config_exits_2_and_names_the_key(tmp_path, text, named):
    f = tmp_path/"bad.yaml"; f.write_text(text)
    r = wronai("config", "check", f)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

def test_missing_file_exits_2(tmp_path):
    r = wronai("config", "check", tmp_path/"nope.yaml")
    assert r.returncode == 2 and "cannot read" in r.stderr

def test_overrides_apply_and_are_validated():
    r = wronai("config", "show", "configs/quick_test.yaml", "--set", "training.max_steps=7")
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["training"]["max_steps"] == 7
    r = wronai("config", "check", "configs/quick_test.yaml", "--set", "lora.lora_dropout=1")
    assert r.returncode == 2 and "lora.lora_dropout" in r.stderr

def test_data_build_is_deterministic(tmp_path):
    for d in ("a", "b"):
        r = wronai("data", "build", "--out", tmp_path/d, "--prose-out", tmp_path/d/"prose")
        assert r.returncode == 0, r.stderr
        assert "total" in r.stdout and "polish-prose manpages-pl" in r.stdout and "diakrytyki" in r.stdout, r.stdout
    for f in ("train.jsonl", "test.jsonl", "README.md", "stats.json", "prose/train.jsonl", "prose/heldout.jsonl",
              "prose/README.md"):
        assert (tmp_path/"a"/f).read_bytes() == (tmp_path/"b"/f).read_bytes(), f

def test_prepare_data_script(tmp_path):
    import sys
    r = subprocess.run([sys.executable, "scripts/prepare_data.py", "--out", str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/"train.jsonl").stat().st_size > 0

def test_memory_says_whether_the_recipe_fits_and_what_to_change():
    """The planner from the config alone (nbs/06c_memory.ipynb): the recipe's longest batch on an 8 GB card, and on a 16
    GB one."""
    r = wronai("memory", "--config", "configs/default.yaml", "--gpu-mb", "8192")
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "does NOT fit" in r.stdout and "data.max_seq_length: 1024" in r.stdout, r.stdout
    r = wronai("memory", "--config", "configs/default.yaml", "--gpu-mb", "16000")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "and fits" in r.stdout and "42,033,152 trainable parameters" in r.stdout, r.stdout

def test_train_under_accelerate_fsdp_on_a_cpu_stops_before_loading(tmp_path):
    """accelerate would run "FSDP" on CPU processes as plain data parallelism, silently; a 4-bit base stored as uint8
    cannot be sharded. Both are said, as bad input, before anything loads (nbs/06f_fsdp.ipynb)."""
    import os
    r = subprocess.run([shutil.which("wronai"), "train", "--config", "configs/quick_test.yaml", "--output-dir",
                        str(tmp_path/"run"), "--max-steps", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "ACCELERATE_USE_FSDP": "true"})
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    for said in ("hardware.device", "GPUs only", "quantization.bnb_4bit_quant_storage", "set it to float32"):
        assert said in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path/"run").exists()

def test_memory_per_rank_and_python_dash_m():
    """One of several ranks (nbs/06f_fsdp.ipynb), through `python -m wronai.cli` as `accelerate launch -m wronai.cli`
    runs it: sharded over 2 ranks the recipe fits an 8 GB card that one process does not, with ddp it never fits."""
    import sys
    for strategy, code, said in (("fsdp", 0, "and fits"), ("ddp", 3, "none is enough")):
        r = subprocess.run([sys.executable, "-m", "wronai.cli", "memory", "--config", "configs/default.yaml",
                            "--ranks", "2", "--strategy", strategy, "--gpu-mb", "8000"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == code, (strategy, r.returncode, r.stdout, r.stderr)
        assert "per rank" in r.stdout and said in r.stdout, r.stdout
    r = wronai("memory", "--config", "configs/default.yaml", "--ranks", "0")
    assert r.returncode == 2 and "--ranks" in r.stderr and "Traceback" not in r.stderr, r.stderr

@pytest.mark.parametrize("args,named",
                         [(["--gpu-mb", "0"], "--gpu-mb"),
                          (["--set", "training.gradient_checkpointing=sometimes"], "training.gradient_checkpointing")])
def test_memory_refuses_bad_input(args, named):
    r = wronai("memory", "--config", "configs/default.yaml", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr and "Traceback" not in r.stderr, r.stderr

@pytest.mark.parametrize("args,named",
                         [(["--steps", "0"], "--steps"), (["--steps", "3", "--warmup", "3"], "warm-up steps"),
                                        (["--set", "training.gradient_accumulation_steps=4"],
                                         "gradient_accumulation_steps"),
                          (["--sides", "wronai,unsloth"], "needs a CUDA GPU"),
                          (["--sides", "trl_grouped"], "must include wronai")])
def test_bench_refuses_bad_input_before_any_run(args, named):
    r = wronai("bench", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr and "Traceback" not in r.stderr, r.stderr

def test_profile_script_runs_compare_only_in_their_dropout():
    """scripts/profile_cpu.py's runs (nbs/06d_bench.ipynb, `make profile`), a few steps each: the same batches, and only
    peft's dropout draws bernoulli_ masks."""
    import json, sys
    small = ["--steps", "3", "--warmup", "1", "--profile", "1", "--set", "training.per_device_train_batch_size=2",
             "--set", "data.max_examples=64", "--set", "data.max_eval_examples=8", "--set", "data.max_seq_length=128"]
    runs = {}
    for name in ("torch", "cpu"):
        r = subprocess.run([sys.executable, "scripts/profile_cpu.py", "--one", name, *small], capture_output=True,
                           text=True, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT "))[7:])
    t, c = runs["torch"], runs["cpu"]
    assert t["lengths"] == c["lengths"] and len(t["lengths"]) == 3 and t["timed_steps"] == c["timed_steps"] == 1
    assert (
        "aten::bernoulli_" in t["profile"]
        and "aten::bernoulli_" not in c["profile"]
        and "aten::random_" in c["profile"]
    ), (t["profile"], c["profile"])
    # the adapters' B starts at 0 and the first step's rate is 0: the masks change nothing yet
    assert t["losses"][:2] == c["losses"][:2]

def test_profile_script_refuses_steps_that_leave_nothing_to_time():
    import sys
    r = subprocess.run([sys.executable, "scripts/profile_cpu.py", "--steps", "4", "--warmup", "3", "--profile", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (
        r.returncode == 2
        and "--steps (4) must be more than --warmup (3) plus --profile (1)" in r.stderr
        and "Traceback" not in r.stderr
    ), r.stderr

"""Device mistakes a CPU cannot see: tests/_device_check.py makes them fail here as they fail on CUDA, and `make
test-gpu`.

Each case is a pair of snippets, the mistake and its fix, as the notebooks had them (04_lora before the fix). On a
CPU the mistake must raise under `DeviceCheck` and the fix must not; on CUDA (`pytest -m gpu`, run by `make
test-gpu`) the same mistake must raise torch's own error and the fix must not, which is what makes the stand-in
honest.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _device_check import DeviceCheck, DeviceError

ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()


def model_on(device):
    "A small model placed on `device`, as `load_model` places one (`.to(device)`)."
    return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16)).to(device)


class LoRAOnCpu(nn.Module):
    "04's LoRALinear before the fix: its matrices made without a device, so on the CPU whatever its base is on."
    def __init__(self, base, r=2):
        super().__init__()
        self.base, self.A, self.B = (
            base,
            nn.Parameter(torch.randn(r, base.in_features)),
            nn.Parameter(torch.zeros(base.out_features, r)),
        )
    def forward(self, x): return self.base(x) + x @ self.A.T @ self.B.T


def _levels_on_cpu(w):          # 03's quantize_nf4 before the fix: the 16 levels made on the CPU
    levels = torch.linspace(-1, 1, 16)
    return (w.flatten()[:, None] - levels).abs().argmin(-1)


CASES = {   # name: (mistake, fix), each a function of the device the model is on
    "ids without .to(model.device)": (
        lambda d: model_on(d)(torch.randint(0, 50, (2, 5))),
        lambda d: (m := model_on(d))(torch.randint(0, 50, (2, 5)).to(next(m.parameters()).device))),
    "adapter made without the base's device": (
        lambda d: LoRAOnCpu(nn.Linear(16, 16).to(d))(torch.randn(2, 16).to(d)),
        lambda d: nn.Linear(16, 16).to(d)(torch.randn(2, 16).to(d))),
    "a weight's reference levels left on the CPU": (
        lambda d: _levels_on_cpu(model_on(d)[1].weight.detach()),
        lambda d: _levels_on_cpu(model_on(d)[1].weight.detach().cpu())),
    "numpy of a model tensor": (
        lambda d: model_on(d)[1].weight.detach().numpy(),
        lambda d: model_on(d)[1].weight.detach().cpu().numpy()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_check_fails_the_mistake_and_passes_the_fix_on_a_cpu(name):
    mistake, fix = CASES[name]
    with DeviceCheck():
        with pytest.raises(DeviceError): mistake("cpu")
        fix("cpu")
    mistake("cpu")                                              # without the check a CPU sees nothing wrong


def test_a_model_built_in_a_cell_and_its_inputs_agree():
    "Nothing placed, nothing mixed: a module made without a device takes tensors made without one, as on Colab."
    with DeviceCheck():
        lin = nn.Linear(8, 4)
        lin(torch.randn(3, 8))
        lin2 = nn.Linear(8, 4, device=lin.weight.device)        # made where another host module is: host too
        lin2(torch.randn(3, 8))
        lin3 = nn.Linear(8, 4).to("cpu").to(lin.weight.device)  # moved to a host module's device: host again
        lin3(torch.randn(3, 8))


def test_the_check_restores_parameters_and_leaves_no_mode():
    before = (nn.Parameter.__dict__.get("data"), nn.Parameter.__new__, nn.Module.to)
    with DeviceCheck(): pass
    assert (nn.Parameter.__dict__.get("data"), nn.Parameter.__new__, nn.Module.to) == before
    model_on("cpu")(torch.randint(0, 50, (2, 5)))               # no mode left behind


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_fails_the_same_mistakes_and_passes_the_fixes(name):
    mistake, fix = CASES[name]
    with pytest.raises((RuntimeError, TypeError)): mistake("cuda")
    fix("cuda")


def _notebook(path, source):
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {},
                                            "outputs": [], "source": source}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_make_test_gpu_says_it_needs_cuda_without_a_traceback():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "scripts/test_gpu.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "needs a CUDA GPU" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_make_bench_cuda_says_it_needs_cuda_and_writes_nothing():
    "#37's GPU bench (wronai, TRL and Unsloth), run through make as a user would, on a machine without CUDA."
    out = ROOT/"benchmarks"/"bench_cuda.json"
    before = out.stat().st_mtime_ns if out.exists() else None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(["make", "--no-print-directory", "bench-cuda", f"PY={sys.executable}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "measures trainers on a CUDA GPU" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and (out.stat().st_mtime_ns if out.exists() else None) == before


def test_the_gpu_script_writes_a_row_per_notebook_and_precision(tmp_path):
    "scripts/test_gpu.py's plumbing on the CPU (--cpu): a passing and a failing notebook, each row in the JSON."
    good = _notebook(tmp_path/"good.ipynb", "import torch\nassert torch.ones(2).sum() == 2")
    bad = _notebook(tmp_path/"bad.ipynb", "assert 1 == 2, 'planted failure'")
    out = tmp_path/"r.json"
    r = subprocess.run([sys.executable, "scripts/test_gpu.py", "--cpu", "--only", f"{good},{bad}", "--precisions",
                        "bf16",
                        "--json", str(out), "--jobs", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr                # one notebook failed
    rows = {x["notebook"]: x for x in json.loads(out.read_text())["notebooks"]}
    assert rows["good"]["passed"] and rows["good"]["dtype"] == "float32" and rows["good"]["device"] == "cpu", rows
    assert not rows["bad"]["passed"] and "planted failure" in rows["bad"]["error"], rows
    assert "1 passed, 1 failed" in r.stdout, r.stdout
    bad_arg = subprocess.run([sys.executable, "scripts/test_gpu.py", "--cpu", "--precisions", "fp8"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert bad_arg.returncode == 2 and "--precisions" in bad_arg.stderr, bad_arg.stderr


def test_generate_checks_its_inputs():
    """`model.generate` runs transformers' own loop unwatched (it is CUDA-tested and the watch costs a third of its
    time), but its inputs are checked."""
    from wronai.models import tiny_mistral
    m = tiny_mistral(vocab_size=100).to("cpu")                   # placed, as load_model places a model
    with DeviceCheck():
        with pytest.raises(DeviceError, match="generate"): m.generate(torch.randint(0, 100, (1, 4)), max_new_tokens=2,
                                                                      do_sample=False)
        out = m.generate(torch.randint(0, 100, (1, 4)).to(m.device), max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 6)


def test_from_pretrained_without_a_device_map_loads_a_host_model(tmp_path):
    "transformers loads onto the CPU unless told otherwise, on a GPU runtime too: host tensors agree with such a model."
    from transformers import AutoModelForCausalLM
    from wronai.models import tiny_mistral
    tiny_mistral(vocab_size=100).save_pretrained(tmp_path)
    with DeviceCheck():
        AutoModelForCausalLM.from_pretrained(tmp_path)(torch.randint(0, 100, (1, 4)))
        placed = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="cpu")
        with pytest.raises(DeviceError): placed(torch.randint(0, 100, (1, 4)))


def test_teaching_code_follows_its_input_onto_the_meta_device():
    "torch's meta device: no memory, no values, and elementwise ops refuse a CPU partner, as CUDA does."
    from wronai.lora import LoRALinear
    from wronai.quant import dequantize_nf4, double_dequantize, double_quantize, quantize_nf4
    lora = LoRALinear(nn.Linear(64, 32, device="meta"), r=4)
    assert {p.device.type for p in lora.parameters()} == {"meta"}
    assert lora(torch.randn(2, 64, device="meta")).device.type == "meta"
    w = torch.randn(32, 64, device="meta")
    packed, absmax = quantize_nf4(w)
    assert dequantize_nf4(packed, absmax, w.shape).device.type == "meta"
    code = torch.linspace(-1, 1, 256)                             # bitsandbytes' code lives on the CPU
    assert double_dequantize(*double_quantize(absmax, code), code).device.type == "meta"
    # what makes this test able to fail
    with pytest.raises(RuntimeError, match="device"): torch.randn(3, device="meta") - torch.randn(3)

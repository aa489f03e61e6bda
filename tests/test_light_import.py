"""`import wronai` (and the config and CLI modules) must not pull in heavy or hardware-probing libraries."""
import subprocess, sys

import pytest

HEAVY = ["torch", "transformers", "peft", "bitsandbytes", "matplotlib", "datasets", "accelerate"]

def loaded_after(stmt):
    code = f"import sys; {stmt}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()

@pytest.mark.parametrize("stmt", ["import wronai", "import wronai.config", "import wronai.cli"])
def test_light(stmt):
    assert loaded_after(stmt) == []

def test_models_imports_torch_only():
    # wronai.models needs torch for devices and dtypes, but loads transformers only when a model is loaded
    assert loaded_after("import wronai.models") == ["torch"]

def test_the_check_is_able_to_fail():
    assert "torch" in loaded_after("import torch")

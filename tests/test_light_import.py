"""`import wronai` (and the config and CLI modules) must not pull in heavy or hardware-probing libraries."""
import subprocess, sys

import pytest

HEAVY = ["torch", "transformers", "peft", "bitsandbytes", "matplotlib", "datasets", "accelerate"]

def loaded_after(stmt):
    code = f"import sys; {stmt}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()

@pytest.mark.parametrize("stmt", ["import wronai", "import wronai.config", "import wronai.cli",
                                  # checking a config, and the model, tokenizer and
                                  # data it names (the preflight), still without
                                  # torch
                                  "from wronai.config import load_config, repo_path; "
                                  "load_config(repo_path('configs/quick_test.yaml'))",
                                  "from wronai.preflight import load_checked; from wronai.config import "
                                  "repo_path; load_checked(repo_path('configs/quick_test.yaml'))",
                                  # wronai.models imports torch only inside the functions that load or place a model
                                  "import wronai.models"])
def test_light(stmt):
    assert loaded_after(stmt) == []

def test_the_check_is_able_to_fail():
    assert "torch" in loaded_after("import torch")

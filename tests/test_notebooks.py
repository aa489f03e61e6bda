"""Every notebook in nbs/ runs as a test, each in its own interpreter so that state and memory do not leak. Notebooks
that call `quick_run()` get the session's shared quick_test run (conftest.py) instead of training their own."""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if not p.name.startswith("_"))

def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS

def needs_run(nb):
    "Notebooks that call `quick_run()` need a trained adapter: they get the session's shared run."
    return "quick_run(" in nb.read_text(encoding="utf-8")

@pytest.mark.parametrize("nb",
                         [pytest.param(p, marks=[pytest.mark.quick_run] if needs_run(p) else []) for p in NOTEBOOKS],
                         ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, request, tmp_path):
    # the notebook's temporary folders (and its processes') go in tmp_path, removed when it passes: 06e alone leaves
    # 2.5 GB of checkpoints each run, which filled a machine's /tmp after a few sessions
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(tmp_path)}
    if needs_run(nb): env["WRONAI_QUICK_RUN"] = str(request.getfixturevalue("quick_run"))
    r = subprocess.run([sys.executable, str(ROOT/"tests"/"_run_nb.py"), str(nb)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stdout[-5000:]}\n{r.stderr[-20000:]}"
    shutil.rmtree(tmp_path, ignore_errors=True)                     # a failure's folder stays, for reading

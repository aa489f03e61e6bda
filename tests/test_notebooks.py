"""Every notebook in nbs/ runs as a test, each in a process of its own so that state and memory do not leak. Notebooks
that call `quick_run()` get the session's shared quick_test run (conftest.py) instead of training their own.

The processes are forks of one server per test process that has imported torch, transformers, peft, bitsandbytes,
datasets and the notebook runner already (multiprocessing's forkserver): a fresh interpreter would spend about 4 CPU
seconds on those imports for each of the 30 notebooks. Nothing of wronai is imported there, so each notebook imports
it afresh."""
import multiprocessing, os, shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if not p.name.startswith("_"))
# what every notebook imports; each module here is imported once per test process, by the server
PRELOAD = ["torch", "transformers", "transformers.trainer", "peft", "bitsandbytes", "datasets", "IPython",
           "execnb.shell", "nbdev.test", "_run_nb"]
# the libraries read these once, at import: the server must see what every notebook gets
OFFLINE = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE", "1")}
TIMEOUT = 3600

def start(target, *args):
    """A process running `target(*args)`, forked from the forkserver; the first call starts the server (once per test
    process), which imports `PRELOAD` with the offline settings in its environment."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    p, old = ctx.Process(target=target, args=args), {k: os.environ.get(k) for k in OFFLINE}
    os.environ.update(OFFLINE)
    try: p.start()
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k)
            else: os.environ[k] = v
    return p

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
    work = tmp_path/"tmp"; work.mkdir()
    env = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", "TMPDIR": str(work)}
    if needs_run(nb): env["WRONAI_QUICK_RUN"] = str(request.getfixturevalue("quick_run"))
    from _run_nb import forked
    out, err = tmp_path/"stdout.txt", tmp_path/"stderr.txt"
    p = start(forked, str(nb), env, str(ROOT), str(out), str(err))
    p.join(TIMEOUT)
    timed_out = p.is_alive()
    if timed_out: p.kill(); p.join()
    read = lambda f, n: f.read_text(errors="replace")[-n:] if f.exists() else ""
    why = f"exit {p.exitcode}" + (f", stopped after {TIMEOUT} s" if timed_out else "")
    assert p.exitcode == 0, f"{nb.name} failed ({why}):\n{read(out, 5000)}\n{read(err, 20000)}"
    shutil.rmtree(tmp_path, ignore_errors=True)                     # a failure's folder stays, for reading

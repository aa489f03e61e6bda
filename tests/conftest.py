"""One shared quick_test run for the whole test session, trained while the other tests run.

The README's main job, `python scripts/train.py --config configs/quick_test.yaml`, and `wronai eval` on its adapter are
run once per session, in a background thread that starts as soon as the tests are collected (when any collected test
needs them). Tests that need them ask for the `quick_run` or `quick_eval` fixture (notebooks: the `quick_run` mark)
and are moved to the end of the session, so everything else runs meanwhile and the two cores are kept busy. Notebooks
find the run through `$WRONAI_QUICK_RUN` (`wronai.train.quick_run`).

Set WRONAI_QUICK_RUN yourself to reuse a finished run of that config (it must be a run of the current code to test
anything); its evaluation is then made in the background as usual.
"""
import json, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The shared run trains beside the other tests. Two processes that each start one OpenMP thread per core fight over
# the cores: a thread that loses its core holds its siblings at every barrier, and both run several times slower
# (a 1-minute notebook took 7 beside the training). So while the shared run works, each process gets half the cores;
# once it is done, processes started after it get them all. Set OMP_NUM_THREADS yourself to fix the number.
CORES, FIXED = os.cpu_count() or 2, "OMP_NUM_THREADS" in os.environ
if not FIXED: os.environ["OMP_NUM_THREADS"] = str(max(1, CORES // 2))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}          # the shared run's: half the cores
WRONAI = ("-c", "from wronai.cli import main; raise SystemExit(main())")

def pytest_configure(config):
    config.addinivalue_line("markers", "quick_run: needs the session's shared quick_test run (tests/conftest.py)")
    config.addinivalue_line("markers", "gpu: needs CUDA; `make test-gpu` runs these (pytest -m gpu)")

class Shared:
    "The main job and its evaluation, run one after the other in a background thread."
    def __init__(self):
        given = os.environ.get("WRONAI_QUICK_RUN")
        self.tmp = Path(tempfile.mkdtemp(prefix="wronai-shared-"))
        self.out = Path(given) if given else self.tmp/"quick_test"
        self.report = self.tmp/"eval.json"
        self.steps = {}                                        # name -> (seconds, CompletedProcess)
        self.trained, self.evaluated = threading.Event(), threading.Event()
        self.thread, self.proc, self.cancelled = threading.Thread(target=self._work, daemon=True), None, False

    def _run(self, name, *args):
        t = time.time()
        self.proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        out, err = self.proc.communicate()
        self.steps[name] = (time.time() - t, subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err))

    def _work(self):
        try:
            if not (self.out/"train_results.json").exists():
                self._run("train", "scripts/train.py", "--config", "configs/quick_test.yaml", "--output-dir", self.out)
        finally: self.trained.set()
        try:
            if (self.out/"train_results.json").exists() and not self.cancelled:
                self._run("eval", *WRONAI, "eval", "--config", "configs/quick_test.yaml", "--adapter", self.out, "--json", self.report)
        finally:
            if not FIXED: os.environ["OMP_NUM_THREADS"] = str(CORES)   # the cores are free again: tests' processes read os.environ
            self.evaluated.set()

    def wait(self, name, event):
        event.wait()
        if name in self.steps:
            secs, r = self.steps[name]
            assert r.returncode == 0, f"shared {name} failed after {secs:.0f} s:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            print(f"shared {name}: {secs:.0f} s\n{r.stdout[-700:]}")

SHARED = None

def _needs(item):
    return bool({"quick_run", "quick_eval", "chat_answers"} & set(getattr(item, "fixturenames", ()))) or item.get_closest_marker("quick_run") is not None

@pytest.hookimpl(trylast=True)                                 # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    "Tests that need the shared run go last; the run starts now, in the background, if any of them was collected."
    global SHARED
    need = sorted((i for i in items if _needs(i)), key=lambda i: "quick_eval" in getattr(i, "fixturenames", ()))   # the evaluation comes last
    items[:] = [i for i in items if not _needs(i)] + need
    if need and SHARED is None and not config.option.collectonly:
        SHARED = Shared()
        SHARED.thread.start()

def pytest_sessionfinish(session, exitstatus):
    if SHARED is not None:
        SHARED.cancelled = True                                # a session cut short (-x, Ctrl-C) leaves nothing running
        if SHARED.proc is not None and SHARED.proc.poll() is None: SHARED.proc.terminate()
        SHARED.thread.join()
        shutil.rmtree(SHARED.tmp, ignore_errors=True)

@pytest.fixture(scope="session")
def quick_run():
    "The output folder of the main job (`scripts/train.py --config configs/quick_test.yaml`), trained once per session."
    if SHARED is None: pytest.fail("quick_run: the shared run was not started (conftest.py)")
    SHARED.wait("train", SHARED.trained)
    assert (SHARED.out/"train_results.json").exists(), f"{SHARED.out}: no train_results.json"
    return SHARED.out

Q1, Q2 = "Podaj liczbę mnogą słowa „kot”.", "Jak się mówi „dziękuję” nieformalnie?"   # the questions tests ask the tuned model
CHAT_TOKENS = 32

@pytest.fixture(scope="session")
def chat_answers(quick_run):
    "`wronai chat --prompt` on the shared run: Q1 in the formal register and Q2 in the informal one (test_main_job and test_serve compare with them)."
    out = {}
    for reg, q in [("formal", Q1), ("informal", Q2)]:
        r = subprocess.run([sys.executable, *WRONAI, "chat", "--adapter", str(quick_run), "--prompt", q, "--register", reg,
                            "--max-new-tokens", str(CHAT_TOKENS)], cwd=ROOT,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out[reg] = r.stdout
    return out

@pytest.fixture(scope="session")
def quick_eval(quick_run):
    "The `wronai eval --json` report of the shared run (its plot is the run's eval.png)."
    SHARED.wait("eval", SHARED.evaluated)
    return json.loads(SHARED.report.read_text())

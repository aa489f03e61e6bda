"""One shared quick_test run for the whole test session, trained while the other tests run.

The README's main job, `python scripts/train.py --config configs/quick_test.yaml`, and `wronai eval` on its adapter are
run once per session by tests/_shared_run.py, a process of its own that starts as soon as the tests are collected (when
any collected test needs them). Tests that need them ask for the `quick_run` or `quick_eval` fixture (notebooks: the
`quick_run` mark) and are moved to the end of the session, so everything else runs meanwhile. Notebooks find the run
through `$WRONAI_QUICK_RUN` (`wronai.train.quick_run`).

`make test` runs the tests in two pytest-xdist workers (`-n 2`): the shared run's folder is made by the process that
starts the session and handed to the workers in `$WRONAI_SHARED_DIR`; the first worker that collects a test needing
it starts the run, and every worker waits for the files the run writes. Plain `pytest` (one process) works the same way.

Set WRONAI_QUICK_RUN yourself to reuse a finished run of that config (it must be a run of the current code to test
anything); its evaluation is then made in the background as usual.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Two processes that each start one OpenMP thread per core fight over the cores: a thread that loses its core holds its
# siblings at every barrier, and both run several times slower (a 1-minute notebook took 7 beside the training). So
# every process gets its share of the cores: with pytest-xdist's N workers, cores/N each (the shared run too); in one
# pytest process, half while the shared run works and all of them after. Set OMP_NUM_THREADS yourself to fix the number.
CORES = os.cpu_count() or 2
# not ours: the user's
FIXED = "OMP_NUM_THREADS" in os.environ and os.environ["OMP_NUM_THREADS"] != os.environ.get("WRONAI_TEST_OMP")
WRONAI = ("-c", "from wronai.cli import main; raise SystemExit(main())")
# seconds a test waits for the shared run before it fails
WAIT_LIMIT = 3 * 3600
WORKERS, STARTER, SHARED = 1, True, None                               # set in pytest_configure

def threads(n):
    "Give the processes started from now on `n` OpenMP threads each (marked as ours, so that workers may change it)."
    os.environ["OMP_NUM_THREADS"] = os.environ["WRONAI_TEST_OMP"] = str(n)

def pytest_configure(config):
    global WORKERS, STARTER, SHARED
    config.addinivalue_line("markers", "quick_run: needs the session's shared quick_test run (tests/conftest.py)")
    config.addinivalue_line("markers", "gpu: needs CUDA; `make test-gpu` runs these (pytest -m gpu)")
    config.addinivalue_line("markers",
                            "xdist_group(name): tests that share an expensive fixture run in one pytest-xdist worker")
    # pytest-xdist's worker; None in its controller or plain pytest
    worker = getattr(config, "workerinput", None)
    WORKERS, STARTER = (worker["workercount"] if worker else 1), worker is None
    if not FIXED: threads(max(1, CORES // 2 if WORKERS == 1 else CORES // WORKERS))
    if STARTER and not config.option.collectonly:
        # before xdist starts its workers, which inherit it
        os.environ["WRONAI_SHARED_DIR"] = tempfile.mkdtemp(prefix="wronai-shared-")
    if "WRONAI_SHARED_DIR" in os.environ: SHARED = Shared(os.environ["WRONAI_SHARED_DIR"])

class Shared:
    """The shared run's folder: started at most once per session (by whoever collects a test that needs it), waited for
    by all."""
    def __init__(self, folder):
        self.tmp = Path(folder)
        given = os.environ.get("WRONAI_QUICK_RUN")
        self.out = Path(given) if given else self.tmp/"quick_test"
        self.report = self.tmp/"eval.json"

    def start(self):
        "Start tests/_shared_run.py unless a process of this session already did."
        try: os.close(os.open(self.tmp/"started", os.O_CREAT | os.O_EXCL))
        except FileExistsError: return
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        p = subprocess.Popen([sys.executable, str(ROOT/"tests"/"_shared_run.py"), str(self.tmp), str(self.out)],
                             cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=(self.tmp/"runner.log").open("w"),
                             start_new_session=True)
        (self.tmp/"pid").write_text(str(p.pid))

    def alive(self):
        try: os.kill(int((self.tmp/"pid").read_text()), 0)
        except (FileNotFoundError, ValueError, ProcessLookupError): return False
        return True

    def wait(self, step):
        "Block until the shared run's `step` ('train' or 'eval') is done; fail with its output if it failed."
        marker, t0 = self.tmp/f"{step}.done", time.time()
        while not marker.exists():
            if not (self.tmp/"started").exists(): pytest.fail("the shared run was not started (conftest.py)")
            if (self.tmp/"pid").exists() and not self.alive() and not marker.exists():
                log = self.tmp/"runner.log"
                pytest.fail(f"the shared run ended before its {step} step was "
                            f"done:\n{log.read_text()[-3000:] if log.exists() else ''}")
            if time.time() - t0 > WAIT_LIMIT: pytest.fail(f"the shared run's {step} step took over {WAIT_LIMIT} s")
            time.sleep(1)
        info = json.loads(marker.read_text())
        assert info["returncode"] == 0, (f"shared {step} failed after {info['seconds']} "
                                         f"s:\n{info['stdout']}\n{info['stderr']}")
        print(f"shared {step}: {info['seconds']} s\n{info['stdout'][-700:]}")
        if WORKERS == 1 and not FIXED and step == "eval": threads(CORES)    # the cores are free again

def _needs(item):
    return bool({"quick_run", "quick_eval",
                 "chat_answers"} & set(getattr(item, "fixturenames",
                                               ()))) or item.get_closest_marker("quick_run") is not None

@pytest.hookimpl(trylast=True)                                 # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    """Tests that need the shared run go last, the notebooks among them first; the run starts now, in the background,
    if any of them was collected."""
    # pytest-xdist hands each worker its next tests ahead of time, so the last few sit in one worker's queue while the
    # other may have none left: the long ones go first (the notebooks: 07_eval alone takes over 3 minutes on 2 cores
    # where the kernels are AVX2's), the short ones after, and the evaluation's own checks, which wait for it, last
    need = sorted((i for i in items if _needs(i)), key=lambda i: ("quick_eval" in getattr(i, "fixturenames", ()),
                                                                  i.path.name != "test_notebooks.py"))
    items[:] = [i for i in items if not _needs(i)] + need
    if need and SHARED is not None and not config.option.collectonly: SHARED.start()

def pytest_runtest_setup(item):
    "In one pytest process, the tests after the shared run get all the cores back (its processes read os.environ)."
    if WORKERS == 1 and not FIXED and SHARED is not None and (SHARED.tmp/"eval.done").exists(): threads(CORES)

SHARED_TIMES = {}                                              # step: seconds, read before the folder goes

def pytest_sessionfinish(session, exitstatus):
    """The process that made the shared folder stops what still runs there (a session cut short by -x or Ctrl-C) and
    removes it."""
    if not (STARTER and SHARED is not None): return
    for step in ("train", "eval"):
        try: SHARED_TIMES[step] = json.loads((SHARED.tmp/f"{step}.done").read_text())["seconds"]
        except (FileNotFoundError, ValueError, KeyError): pass
    try: os.killpg(int((SHARED.tmp/"pid").read_text()), signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError): pass
    shutil.rmtree(SHARED.tmp, ignore_errors=True)

def pytest_terminal_summary(terminalreporter):
    "The shared run's own seconds, beside pytest's slowest tests: the tests that need it wait for it."
    if SHARED_TIMES: terminalreporter.write_line("shared quick_test run: " + ", ".join(
        f"{step} {secs} s" for step, secs in SHARED_TIMES.items()))

@pytest.fixture(scope="session")
def quick_run():
    "The output folder of the main job (`scripts/train.py --config configs/quick_test.yaml`), trained once per session."
    if SHARED is None: pytest.fail("quick_run: no shared folder (conftest.py)")
    SHARED.wait("train")
    assert (SHARED.out/"train_results.json").exists(), f"{SHARED.out}: no train_results.json"
    return SHARED.out

# the questions tests ask the tuned model
Q1, Q2 = "Podaj liczbę mnogą słowa „kot”.", "Jak się mówi „dziękuję” nieformalnie?"
CHAT_TOKENS = 32

@pytest.fixture(scope="session")
def chat_answers(quick_run):
    """`wronai chat --prompt` on the shared run: Q1 in the formal register and Q2 in the informal one (test_main_job and
    test_serve compare with them)."""
    out = {}
    for reg, q in [("formal", Q1), ("informal", Q2)]:
        r = subprocess.run([sys.executable, *WRONAI, "chat", "--adapter", str(quick_run), "--prompt", q, "--register",
                            reg,
                            "--max-new-tokens", str(CHAT_TOKENS)], cwd=ROOT,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out[reg] = r.stdout
    return out

@pytest.fixture(scope="session")
def quick_eval(quick_run):
    "The `wronai eval --json` report of the shared run (its plot is the run's eval.png)."
    SHARED.wait("eval")
    return json.loads(SHARED.report.read_text())

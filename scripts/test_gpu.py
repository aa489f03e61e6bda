"""`make test-gpu`: every notebook on a CUDA GPU, in bf16 and in a T4's fp16, and the GPU tests; one JSON of results.

    python scripts/test_gpu.py --json benchmarks/notebooks_cuda.json      # what `make test-gpu` runs

1. The shared quick_test run (the README's main job) is trained once, on the GPU, for the notebooks that need one.
2. Every notebook in nbs/ runs through tests/_run_nb.py with its `#| gpu` cells, twice:
   - `bf16`: as the GPU is (an H100/H200/A100/L4 computes in bfloat16);
   - `fp16`: with `torch.cuda.get_device_capability()` answering (7, 5), a T4's, so that wronai picks float16 as it
     does on Colab's free GPU; the kernels are still the real card's.
   Notebooks run `--jobs` at a time (each its own process; the GPU has room for several).
3. `pytest -m gpu`: the tests that need CUDA (tests/test_devices.py: CUDA fails what the CPU check fails).

The JSON has one row per notebook and run (`bf16`, `fp16`): passed, seconds, the GPU, the compute dtype wronai chose
there (`dtype`) and the process's peak allocated GPU memory. Whatever did not start within `--budget` seconds is
recorded as not run, so the command fits one short run on a borrowed GPU machine. On a machine without CUDA it says
so and exits 2, unless `--cpu` is given, which runs the same plumbing on the CPU (precision float32) to test this
script.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = {"bf16": None, "fp16": "7.5"}            # name -> simulated compute capability (None: the card's own)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="benchmarks/notebooks_cuda.json", help="where the results go")
    p.add_argument("--only", default="",
                   help="comma-separated notebook names (stems, e.g. 03_quantization,04_lora) or .ipynb paths")
    p.add_argument("--precisions", default="bf16,fp16", help=f"comma-separated, from {sorted(PRECISIONS)}")
    p.add_argument("--jobs", type=int, default=None, help="notebooks at a time (default: half the cores, 1 to 8)")
    p.add_argument("--budget", type=float, default=450, help="seconds; what has not started by then is not run")
    p.add_argument("--quick-run", default=None, help="a finished quick_test run to use instead of training one")
    p.add_argument("--no-pytest", action="store_true", help="skip `pytest -m gpu`")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (checks this script; no GPU figures)")
    a = p.parse_args(argv)
    a.precisions = [x.strip() for x in a.precisions.split(",") if x.strip()]
    bad = [x for x in a.precisions if x not in PRECISIONS]
    if bad or not a.precisions: p.error(f"--precisions: unknown {bad or 'empty list'}; choose from "
                                        f"{sorted(PRECISIONS)}")
    nbs = sorted(q for q in (ROOT/"nbs").glob("*.ipynb") if not q.name.startswith("_"))
    if a.only:
        want = [x.strip() for x in a.only.split(",") if x.strip()]
        nbs = [Path(w).resolve() if w.endswith(".ipynb") else ROOT/"nbs"/f"{w}.ipynb" for w in want]
        missing = [w for w, q in zip(want, nbs) if not q.exists()]
        if missing: p.error(f"--only: no notebook for {missing} (give nbs/<name>.ipynb stems or .ipynb paths)")
    a.notebooks = nbs
    if a.jobs is not None and a.jobs < 1: p.error(f"--jobs must be at least 1; got {a.jobs}")
    return a


def gpu_info():
    import torch
    if not torch.cuda.is_available(): return {"gpu": None}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": p.name, "capability": list(torch.cuda.get_device_capability()),
            "gpu_memory_mib": round(p.total_memory / 2**20)}


def run_notebook(nb, precision, env, out_dir, timeout):
    "One notebook in its own process; its row for the JSON."
    result = out_dir/f"{nb.stem}.{precision}.json"
    e = {**env, "WRONAI_RESULT_JSON": str(result)}
    if PRECISIONS[precision]: e["WRONAI_GPU_CAPABILITY"] = PRECISIONS[precision]
    t = time.time()
    try:
        r = subprocess.run([sys.executable, str(ROOT/"tests"/"_run_nb.py"), str(nb)], cwd=ROOT, env=e,
                           capture_output=True, text=True, timeout=timeout)
        code, log = r.returncode, (r.stdout + r.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        code, log = None, f"timed out after {timeout} s"
    row = {"notebook": nb.stem, "run": precision, "passed": code == 0, "seconds": round(time.time() - t, 1)}
    if result.exists(): row.update({k: v for k, v in json.loads(result.read_text()).items() if k not in row})
    if code != 0: row["error"] = log
    return row


def main(argv=None):
    a = parse(argv)
    import torch
    if not a.cpu and not torch.cuda.is_available():
        print(f"make test-gpu needs a CUDA GPU, and this torch ({torch.__version__}) sees none "
              "(torch.cuda.is_available() is False). Run it on a GPU runtime (on "
              "Colab: Runtime > Change runtime type > "
              "T4 GPU), or `python scripts/test_gpu.py --cpu` to check the script itself on the CPU.", file=sys.stderr)
        return 2
    t0, tmp = time.time(), Path(tempfile.mkdtemp(prefix="wronai-gpu-"))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           # the real device, not the CPU stand-in
           "WRONAI_TEST_FLAGS": "" if a.cpu else "gpu", "WRONAI_DEVICE_CHECK": "0"}
    if a.cpu: env["CUDA_VISIBLE_DEVICES"] = ""
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                          **({"gpu": None} if a.cpu else gpu_info())},
              "precisions": {p: (f"compute capability {c} simulated (a T4)" if c else "the card's own") for p,
                             c in PRECISIONS.items()
                             if p in a.precisions},
              "notebooks": [], "pytest": None}
    quick = a.quick_run
    needs = [nb for nb in a.notebooks if "quick_run(" in nb.read_text(encoding="utf-8")]
    if needs and not quick:
        quick, t = str(tmp/"quick_test"), time.time()
        r = subprocess.run([sys.executable, "scripts/train.py", "--config", "configs/quick_test.yaml", "--output-dir",
                            quick],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        report["quick_run"] = {"passed": r.returncode == 0, "seconds": round(time.time() - t, 1)}
        print(f"shared quick_test run: {'ok' if r.returncode == 0 else 'FAILED'} in {time.time() - t:.0f} s",
              flush=True)
        if r.returncode != 0: report["quick_run"]["error"] = (r.stdout + r.stderr)[-3000:]
    if quick: env["WRONAI_QUICK_RUN"] = quick
    jobs = a.jobs or max(1, min(8, (os.cpu_count() or 2) // 2))
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // jobs))
    work = [(nb, p) for p in a.precisions for nb in a.notebooks]

    def one(item):
        nb, p = item
        left = a.budget - (time.time() - t0)
        if left <= 0: return {"notebook": nb.stem, "run": p, "passed": False, "seconds": 0,
                              "error": "not run: --budget spent"}
        row = run_notebook(nb, p, env, tmp, timeout=max(60, left + 120))
        print(f"{nb.stem} [{p}]: {'ok' if row['passed'] else 'FAILED'} in {row['seconds']:.0f} s", flush=True)
        return row

    with ThreadPoolExecutor(jobs) as pool: report["notebooks"] = list(pool.map(one, work))
    if not a.no_pytest and not a.cpu:
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        lines = r.stdout.strip().splitlines()
        report["pytest"] = {"passed": r.returncode == 0, "seconds": round(time.time() - t, 1), "summary": lines[-1]
                            if lines else ""}
        print(f"pytest -m gpu: {report['pytest']['summary']}", flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    out = ROOT/a.json if not Path(a.json).is_absolute() else Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    rows = report["notebooks"]
    failed = [f"{r['notebook']} [{r['run']}]" for r in rows if not r["passed"]]
    ok = not failed and all(report.get(k) is None or report[k]["passed"] for k in ("quick_run", "pytest"))
    print(f"{sum(r['passed'] for r in rows)} passed, {len(failed)} failed notebook runs in {report['seconds']:.0f} s; "
          f"wrote {out}" + (f"\nfailed: {', '.join(failed)}" if failed else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run one notebook's tests in a process of its own: a fork of test_notebooks.py's preloaded server (`forked`), or a
fresh interpreter (`python tests/_run_nb.py NB`, as scripts/test_gpu.py runs it).

Cells flagged with a settings.ini `tst_flags` flag (`#| slow`, `#| gpu`) are skipped unless the flag
is listed in $WRONAI_TEST_FLAGS (comma-separated); `gpu` cells run by themselves where CUDA is available.
On a CPU the notebook runs under `_device_check.DeviceCheck` (set WRONAI_DEVICE_CHECK=0 to run it without): a tensor
made on the default device that meets a model's tensors fails as it would on a CUDA runtime.

For scripts/test_gpu.py: $WRONAI_GPU_CAPABILITY ("7.5") makes torch report that compute capability, so wronai picks
what it picks on such a card (a T4: float16) while the real card's kernels run; $WRONAI_RESULT_JSON gets the outcome,
the seconds, the GPU, the precision wronai chose and the peak allocated GPU memory.
"""
import json, os, sys, tempfile
from pathlib import Path

import torch
from nbdev.config import get_config
from nbdev.test import test_nb

def main(nb):
    "Run notebook `nb`'s tests in this process; its exit code."
    nb = Path(nb)
    flags = set(get_config().tst_flags.split())             # split as nbdev_test splits them
    forced = {f.strip() for f in os.environ.get("WRONAI_TEST_FLAGS", "").split(",") if f.strip()}
    cuda = torch.cuda.is_available()
    if "gpu" in flags and cuda: forced.add("gpu")
    if os.environ.get("WRONAI_GPU_CAPABILITY") and cuda:
        cap = tuple(int(x) for x in os.environ["WRONAI_GPU_CAPABILITY"].split("."))
        torch.cuda.get_device_capability = lambda device=None: cap
    if os.environ.get("WRONAI_DEVICE_CHECK", "1") != "0" and not cuda:
        from _device_check import DeviceCheck
        # for the whole run: the notebook's cells execute in this thread
        DeviceCheck().__enter__()
    ok, secs = test_nb(nb, skip_flags=sorted(flags - forced), showerr=True)
    print(f"{nb.name}: {'ok' if ok else 'FAILED'} in {secs:.1f} s (skipped flags: {sorted(flags - forced)})")
    if os.environ.get("WRONAI_RESULT_JSON"):
        from wronai.models import pick_dtype
        dev = "cuda" if cuda else "cpu"
        res = {"passed": bool(ok), "notebook_seconds": round(secs, 1), "device": dev,
               "dtype": str(pick_dtype("auto", dev)[0]).removeprefix("torch.")}
        if cuda: res.update(gpu=torch.cuda.get_device_name(), capability_seen=list(torch.cuda.get_device_capability()),
                            peak_allocated_mib=round(torch.cuda.max_memory_allocated() / 2**20))
        Path(os.environ["WRONAI_RESULT_JSON"]).write_text(json.dumps(res))
    return 0 if ok else 1

def forked(nb, env, cwd, out, err):
    """`main(nb)` in a process forked from a server that has imported torch and the libraries already (multiprocessing's
    forkserver, test_notebooks.py): the process takes `env` as its whole environment and `cwd`, writes its output to
    the files `out` and `err`, and exits with the notebook's code. What the libraries read once (torch's thread count,
    the temporary folder) is set again from `env`."""
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd); os.close(f)
    os.environ.clear(); os.environ.update(env); os.chdir(cwd)
    tempfile.tempdir = None                                            # read again from $TMPDIR
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    try: code = main(nb)
    finally: sys.stdout.flush(); sys.stderr.flush()
    sys.exit(code)

if __name__ == "__main__": sys.exit(main(sys.argv[1]))

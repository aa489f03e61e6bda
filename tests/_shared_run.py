"""The test session's shared run (conftest.py), as a process of its own: the README's main job, then `wronai eval` on
it.

    python tests/_shared_run.py FOLDER OUT

Trains `configs/quick_test.yaml` into OUT (unless OUT already holds a finished run), evaluates it into
FOLDER/eval.json, and after each step writes FOLDER/<step>.done: a JSON object with the step's seconds, exit code and
the tails of its output. Test processes (one, or pytest-xdist's workers) wait for those files; none of them owns this
process, so a worker that finishes its own tests early does not take the run down with it. The pytest process that
made FOLDER stops this process's group at the end of the session, if it is still running.
"""
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRONAI = ("-c", "from wronai.cli import main; raise SystemExit(main())")

def done(folder, step, **info):
    tmp = folder/f".{step}.done.tmp"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, folder/f"{step}.done")                     # whole or not at all: a waiter never reads half of it

def run(folder, step, *args):
    t = time.time()
    r = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    done(folder, step, seconds=round(time.time() - t), returncode=r.returncode, stdout=r.stdout[-3000:],
         stderr=r.stderr[-3000:])

def main(folder, out):
    folder, out = Path(folder), Path(out)
    if (out/"train_results.json").exists(): done(folder, "train", seconds=0, returncode=0, stdout=f"reused {out}",
                                                 stderr="")
    else: run(folder, "train", "scripts/train.py", "--config", "configs/quick_test.yaml", "--output-dir", out)
    if (out/"train_results.json").exists():
        run(folder, "eval", *WRONAI, "eval", "--config", "configs/quick_test.yaml", "--adapter", out, "--json",
            folder/"eval.json")
    else: done(folder, "eval", seconds=0, returncode=None, stdout="",
               stderr="not evaluated: the shared training left no train_results.json")

if __name__ == "__main__":
    main(*sys.argv[1:3])

"""The repository is consistent: one notebook per module, README generated from nbs/index.ipynb."""
import json, os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def default_exps():
    out = {}
    for nb in sorted((ROOT/"nbs").glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(cell["source"]), re.M)
            if m: out.setdefault(m.group(1), []).append(nb.name)
    return out

def test_one_notebook_per_module():
    exps = default_exps()
    assert {"config", "models", "tokens", "quant", "lora", "polish_instruct", "data", "train", "evaluate", "infer",
            "cli"} <= set(exps)
    assert all(len(v) == 1 for v in exps.values()), exps
    for mod in exps: assert (ROOT/"wronai"/f"{mod.replace('.', '/')}.py").exists(), mod

def test_every_module_comes_from_a_notebook():
    mods = {p.stem for p in (ROOT/"wronai").glob("*.py")} - {"__init__", "_modidx"}
    assert mods <= set(default_exps()), mods - set(default_exps())

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/"scripts"/"make_readme.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr

def test_readme_names_the_commands():
    text = (ROOT/"README.md").read_text(encoding="utf-8")
    assert "make test" in text and "make train" in text and "wronai config check" in text and "wronai train" in text
    assert "wronai eval" in text and "wronai chat" in text and "## Benchmarks" in text

def probed_make(tmp_path, probe, *args, drop=()):
    """stdout of `make ARGS` with `probe` (Python source) standing in for python in every recipe line, so that a
    target's lines show what their processes are given instead of doing their work; `drop`: variables taken out of the
    environment first (make's own always are)."""
    path = tmp_path/"probe.py"
    path.write_text(probe)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", *drop)}
    r = subprocess.run(["make", "-s", "-C", str(ROOT), *args, f"PY={sys.executable} {path}"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout

def test_make_train_may_reach_the_hub_while_make_test_stays_offline(tmp_path):
    """`make train CONFIG=configs/default.yaml` downloads Mistral-7B on Colab, so make must not switch the hub off for
    it."""
    # prints what each recipe line was given
    probe = "import os; print('OFFLINE', os.environ.get('HF_HUB_OFFLINE'), os.environ.get('HF_DATASETS_OFFLINE'))\n"
    def seen(*args):
        out = probed_make(tmp_path, probe, *args, drop=("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        return {l for l in out.splitlines() if l.startswith("OFFLINE")}
    assert seen("train", "CONFIG=configs/default.yaml") == {"OFFLINE None None"}
    assert seen("test") == {"OFFLINE 1 1"}

def test_make_test_avx2_and_bench_avx2_give_the_kernels_of_a_cpu_without_avx512(tmp_path):
    """`make test-avx2` is `make test`, and `make bench-avx2` `make bench`, with torch's kernels at AVX2 and
    bitsandbytes told that the CPU has no AVX512-BF16 (scripts/avx2/sitecustomize.py), whatever this CPU has; the
    bench's JSON records it (`cpu_flags()["kernels"]`)."""
    # in the pytest line and the bench line: what their processes see
    probe = ("import sys\n"
             "if 'pytest' in sys.argv or 'bench' in sys.argv:\n"
             "    import torch, bitsandbytes.functional as bf, bitsandbytes.nn.modules as bm\n"
             "    from wronai.quant import cpu_flags\n"
             "    k = cpu_flags()['kernels']\n"
             "    print('KERNELS', torch.backends.cpu.get_cpu_capability(), bf.has_avx512bf16(), "
             "bm.has_avx512bf16(), k['torch'], k['bitsandbytes_avx512bf16'])\n")
    # bench-avx2 with MAKE=true: its closing `$(MAKE) clean-nbs` (nbdev_export rewriting the package under running
    # tests) is left out; test-avx2 is `$(MAKE) test` itself
    for target, more in (("test-avx2", ()), ("bench-avx2", ("MAKE=true",))):
        out = probed_make(tmp_path, probe, target, *more)
        assert [l for l in out.splitlines() if l.startswith("KERNELS")] == ["KERNELS AVX2 False False AVX2 False"], (
            target, out)

def test_upstream_reproduction_of_the_cpu_packing_gradient_loss():
    """scripts/repro_bnb_cpu_packing.py, bitsandbytes and torch alone: exit 1 shows the bug (AVX512-BF16 CPUs), 2 says
    it cannot show here."""
    from bitsandbytes.functional import has_avx512bf16
    r = subprocess.run([sys.executable, "scripts/repro_bnb_cpu_packing.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert "bitsandbytes 0." in r.stdout and "has_avx512bf16():" in r.stdout, r.stdout + r.stderr
    # 0 once bitsandbytes keeps the gradient
    assert r.returncode == (1 if has_avx512bf16() else 2), r.stdout + r.stderr
    print(r.stdout)

def test_test_flags_are_written_the_way_nbdev_reads_them():
    """nbdev_test splits settings.ini `tst_flags` on whitespace: `slow|gpu` would be one flag, and `#| gpu` cells would
    run on a CPU."""
    from nbdev.config import get_config
    flags = get_config().tst_flags.split()                                     # nbdev/test.py does exactly this
    assert {"slow", "gpu"} <= set(flags), flags
    used = {m for nb in (ROOT/"nbs").glob("*.ipynb") for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
            for m in re.findall(r"^#\|\s*(slow|gpu|notest)\s*$", "".join(c["source"]), re.M)}
    assert used <= set(flags), used - set(flags)

def test_every_lesson_has_its_colab_badge_and_setup_cell():
    r = subprocess.run([sys.executable, "scripts/colab_cells.py", "--check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr

RUN_ALL = """import sys
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
CaptureShell(sys.argv[1]).run_all(read_nb(sys.argv[1]), exc_stop=True)
"""

def test_a_notebook_opened_on_colab_clones_installs_and_finds_the_course(tmp_path):
    """A notebook alone in a fresh folder, on 'Colab' (a google.colab module), clones this checkout, installs once, then
    runs."""
    fake = tmp_path/"fake"
    (fake/"google"/"colab").mkdir(parents=True)
    for d in (fake/"google", fake/"google"/"colab"): (d/"__init__.py").write_text("")
    alone, clone = tmp_path/"downloads", tmp_path/"content"/"wronai"
    alone.mkdir()
    nb = json.loads((ROOT/"nbs"/"00_config.ipynb").read_text(encoding="utf-8"))
    # where the notebook ended up
    probe = "import os\nopen(os.environ['PROBE'], 'w').write(f'{os.getcwd()}\\n{repo_root()}')"
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {}, "outputs": [],
                        "source": [probe]})
    (alone/"00_config.ipynb").write_text(json.dumps(nb))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "WRONAI_REPO": str(ROOT), "WRONAI_COLAB_DIR": str(clone), "PROBE": str(tmp_path/"probe"),
           "WRONAI_INSTALL": f"{sys.executable} -c \"open('installed-by-test', 'w').close()\""}
    env.pop("WRONAI_ROOT", None)
    # the second run finds the clone and the install done
    for attempt in (1, 2):
        r = subprocess.run([sys.executable, "-c", RUN_ALL, str(alone/"00_config.ipynb")], cwd=alone, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert (
            (clone / "settings.ini").is_file()
            and (clone / ".colab-installed").is_file()
            and (clone / "installed-by-test").is_file()
        )
        if attempt == 1: stamp = (clone/"installed-by-test").stat().st_mtime_ns
    assert (clone/"installed-by-test").stat().st_mtime_ns == stamp             # installed once, not at every run
    cwd, root = (tmp_path/"probe").read_text().splitlines()
    # it works in the clone, not beside the download
    assert (Path(cwd), Path(root)) == (clone/"nbs", clone), (cwd, root)

# Why one Colab test suffices for every lesson (#33): the setup cell above is the same text in every lesson notebook
# (scripts/colab_cells.py --check, test_every_lesson_has_its_colab_badge_and_setup_cell), and after it every notebook
# works in the clone's nbs/ folder, where test_notebooks.py runs them all. The one setup that differs by notebook is
# `quick_run()`: in the tests $WRONAI_QUICK_RUN hands it the shared run, while a student on Colab has none, so it trains
# the main job into the clone's runs/quick_test first. That branch is checked here, with `train` recorded, not run.
def test_quick_run_trains_the_main_job_where_a_student_has_no_run(tmp_path, monkeypatch):
    import wronai.train as wt
    calls = []
    def fake_train(cfg, output_dir):
        calls.append((cfg.model.name, cfg.training.max_steps, Path(output_dir)))
        for f in ("adapter_config.json", "train_results.json"): (Path(output_dir)/f).write_text("{}")
    monkeypatch.delenv("WRONAI_QUICK_RUN", raising=False)
    monkeypatch.setattr(wt, "train", fake_train)
    monkeypatch.setattr(wt, "repo_path", lambda p: tmp_path/p)              # the clone's runs/quick_test
    (tmp_path/"runs"/"quick_test").mkdir(parents=True)
    from wronai.config import load_config
    quick = load_config(ROOT/"configs"/"quick_test.yaml")
    monkeypatch.setattr(wt, "load_config", lambda p: (calls.append(Path(p)), quick)[1])
    assert wt.quick_run() == tmp_path/"runs"/"quick_test"
    assert calls == [tmp_path/"configs"/"quick_test.yaml",
                     (quick.model.name, quick.training.max_steps, tmp_path/"runs"/"quick_test")]
    # a finished run is reused, not trained again
    assert wt.quick_run() == tmp_path/"runs"/"quick_test" and len(calls) == 2
    monkeypatch.setenv("WRONAI_QUICK_RUN", str(tmp_path/"runs"/"quick_test"))
    assert wt.quick_run() == tmp_path/"runs"/"quick_test" and len(calls) == 2

def test_the_output_cleaner_can_find_what_it_removes():
    sys.path.insert(0, str(ROOT/"scripts"))
    from execute_nbs import clean_text
    import tempfile, sysconfig
    dirty = (f"\x1b[2K{tempfile.gettempdir()}/tmpab12/x.yaml "
             f"{sysconfig.get_paths()['purelib']}/peft/x.py {ROOT}/runs {Path.home()}/y")
    assert "".join(clean_text(dirty)) == "<tmp>/x.yaml <site-packages>/peft/x.py <repo>/runs ~/y"

# What a reader of the saved notebooks on GitHub must not see, and why each is there to catch.
SAVED_FLAWS = {"FutureWarning": "a deprecation warning", "\x1b[": "a terminal control code", "/root/": "a home folder",
               "/home/": "a home folder", "/Users/": "a home folder", "/tmp/": "a temporary folder",
               "/site-packages/": "an install path", "it/s]": "a progress bar", "s/it]": "a progress bar",
               "application/vnd.jupyter.widget-view+json": "a widget saved without its state (GitHub shows nothing)"}

def saved_flaws(nb_path):
    "What is wrong with the saved outputs of one notebook: flaws from SAVED_FLAWS, and outputs over 100 KB in all."
    outs = [o for c in json.loads(Path(nb_path).read_text(encoding="utf-8"))["cells"] for o in c.get("outputs", [])]
    text = json.dumps(outs, ensure_ascii=False)
    found = [f"{Path(nb_path).name}: {what} ({flaw!r})" for flaw, what in SAVED_FLAWS.items() if flaw in text]
    if len(text.encode()) > 100 * 1024:
        found.append(f"{Path(nb_path).name}: outputs of {len(text.encode()) / 1024:.0f} KB (at most 100)")
    return found

def test_saved_outputs_are_small_and_say_nothing_about_the_machine_that_ran_them():
    """What readers see on GitHub: each notebook's outputs under 100 KB, with no warnings, bars, stateless widgets or
    paths of this machine."""
    found = [f for nb in sorted((ROOT/"nbs").glob("*.ipynb")) for f in saved_flaws(nb)]
    assert not found, "run the notebooks again with `make outputs` (scripts/execute_nbs.py):\n" + "\n".join(found)

def test_the_saved_outputs_check_can_fail(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": [], "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stderr",
         "text": ["/tmp/x.py:3: FutureWarning: old\n", "50%|##   | 1/2 [00:01<00:01, 1.00it/s]"]},
        {"output_type": "display_data", "metadata": {},
         "data": {"application/vnd.jupyter.widget-view+json": {}, "text/plain": ["x" * 110_000]}}]}]}
    (tmp_path/"x.ipynb").write_text(json.dumps(nb))
    found = " ".join(saved_flaws(tmp_path/"x.ipynb"))
    for what in ("deprecation warning", "temporary folder", "progress bar", "widget saved",
                 "KB (at most 100)"): assert what in found, (what, found)

def readme_rendering_problems(text):
    """Lines of README text that render wrong: a heading right after a sentence that ends with a colon (the table or
    list it promised is missing), or a table row with text after its last cell."""
    lines, out, fenced = text.splitlines(), [], False
    for i, line in enumerate(lines):
        if line.startswith("```"): fenced = not fenced
        if fenced: continue
        if line.startswith("|") and not line.rstrip().endswith("|"):
            out.append(f"line {i + 1}: table row with trailing text: {line[-60:]!r}")
        if line.startswith("#"):
            prev = next((l for l in reversed(lines[:i]) if l.strip()), "")
            if prev.rstrip().endswith(":"): out.append(f"line {i + 1}: heading {line!r} right after {prev[-60:]!r}")
    return out

def test_readme_renders_its_tables_and_sections():
    assert readme_rendering_problems((ROOT/"README.md").read_text(encoding="utf-8")) == []
    broken = "Its run on a GPU (`x.json`):\n\n## Troubleshooting\n\n| a | b |\n|---|---|\n| 1 | 2 | CPU: glued on.\n"
    assert len(readme_rendering_problems(broken)) == 2                 # the check is able to fail, on both mistakes

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
    assert {"config", "models", "tokens", "quant", "lora", "polish_instruct", "data", "train", "evaluate", "infer", "cli"} <= set(exps)
    assert all(len(v) == 1 for v in exps.values()), exps
    for mod in exps: assert (ROOT/"wronai"/f"{mod.replace('.', '/')}.py").exists(), mod

def test_every_module_comes_from_a_notebook():
    mods = {p.stem for p in (ROOT/"wronai").glob("*.py")} - {"__init__", "_modidx"}
    assert mods <= set(default_exps()), mods - set(default_exps())

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/"scripts"/"make_readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_readme_names_the_commands():
    text = (ROOT/"README.md").read_text(encoding="utf-8")
    assert "make test" in text and "make train" in text and "wronai config check" in text and "wronai train" in text
    assert "wronai eval" in text and "wronai chat" in text and "## Benchmarks" in text

def test_make_train_may_reach_the_hub_while_make_test_stays_offline(tmp_path):
    "`make train CONFIG=configs/default.yaml` downloads Mistral-7B on Colab, so make must not switch the hub off for it."
    probe = tmp_path/"probe.py"     # stands in for python in every recipe line and prints what it was given
    probe.write_text("import os; print('OFFLINE', os.environ.get('HF_HUB_OFFLINE'), os.environ.get('HF_DATASETS_OFFLINE'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MAKEFLAGS", "MAKELEVEL")}
    def seen(*args):
        r = subprocess.run(["make", "-s", "-C", str(ROOT), *args, f"PY={sys.executable} {probe}"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return {l for l in r.stdout.splitlines() if l.startswith("OFFLINE")}
    assert seen("train", "CONFIG=configs/default.yaml") == {"OFFLINE None None"}
    assert seen("test") == {"OFFLINE 1 1"}

def test_upstream_reproduction_of_the_cpu_packing_gradient_loss():
    "scripts/repro_bnb_cpu_packing.py, bitsandbytes and torch alone: exit 1 shows the bug (AVX512-BF16 CPUs), 2 says it cannot show here."
    from bitsandbytes.functional import has_avx512bf16
    r = subprocess.run([sys.executable, "scripts/repro_bnb_cpu_packing.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "bitsandbytes 0." in r.stdout and "has_avx512bf16():" in r.stdout, r.stdout + r.stderr
    assert r.returncode == (1 if has_avx512bf16() else 2), r.stdout + r.stderr   # 0 once bitsandbytes keeps the gradient
    print(r.stdout)

def test_test_flags_are_written_the_way_nbdev_reads_them():
    "nbdev_test splits settings.ini `tst_flags` on whitespace: `slow|gpu` would be one flag, and `#| gpu` cells would run on a CPU."
    from nbdev.config import get_config
    flags = get_config().tst_flags.split()                                     # nbdev/test.py does exactly this
    assert {"slow", "gpu"} <= set(flags), flags
    used = {m for nb in (ROOT/"nbs").glob("*.ipynb") for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
            for m in re.findall(r"^#\|\s*(slow|gpu|notest)\s*$", "".join(c["source"]), re.M)}
    assert used <= set(flags), used - set(flags)

def test_every_lesson_has_its_colab_badge_and_setup_cell():
    r = subprocess.run([sys.executable, "scripts/colab_cells.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

RUN_ALL = """import sys
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
CaptureShell(sys.argv[1]).run_all(read_nb(sys.argv[1]), exc_stop=True)
"""

def test_a_notebook_opened_on_colab_clones_installs_and_finds_the_course(tmp_path):
    "A notebook alone in a fresh folder, on 'Colab' (a google.colab module), clones this checkout, installs once, then runs."
    fake = tmp_path/"fake"
    (fake/"google"/"colab").mkdir(parents=True)
    for d in (fake/"google", fake/"google"/"colab"): (d/"__init__.py").write_text("")
    alone, clone = tmp_path/"downloads", tmp_path/"content"/"wronai"
    alone.mkdir()
    nb = json.loads((ROOT/"nbs"/"00_config.ipynb").read_text(encoding="utf-8"))
    probe = "import os\nopen(os.environ['PROBE'], 'w').write(f'{os.getcwd()}\\n{repo_root()}')"   # where the notebook ended up
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {}, "outputs": [], "source": [probe]})
    (alone/"00_config.ipynb").write_text(json.dumps(nb))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "WRONAI_REPO": str(ROOT), "WRONAI_COLAB_DIR": str(clone), "PROBE": str(tmp_path/"probe"),
           "WRONAI_INSTALL": f"{sys.executable} -c \"open('installed-by-test', 'w').close()\""}
    env.pop("WRONAI_ROOT", None)
    for attempt in (1, 2):                                                    # the second run finds the clone and the install done
        r = subprocess.run([sys.executable, "-c", RUN_ALL, str(alone/"00_config.ipynb")], cwd=alone, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert (clone/"settings.ini").is_file() and (clone/".colab-installed").is_file() and (clone/"installed-by-test").is_file()
        if attempt == 1: stamp = (clone/"installed-by-test").stat().st_mtime_ns
    assert (clone/"installed-by-test").stat().st_mtime_ns == stamp             # installed once, not at every run
    cwd, root = (tmp_path/"probe").read_text().splitlines()
    assert (Path(cwd), Path(root)) == (clone/"nbs", clone), (cwd, root)       # it works in the clone, not beside the download

def test_the_output_cleaner_can_find_what_it_removes():
    sys.path.insert(0, str(ROOT/"scripts"))
    from execute_nbs import clean_text
    import tempfile, sysconfig
    dirty = f"\x1b[2K{tempfile.gettempdir()}/tmpab12/x.yaml {sysconfig.get_paths()['purelib']}/peft/x.py {ROOT}/runs {Path.home()}/y"
    assert "".join(clean_text(dirty)) == "<tmp>/x.yaml <site-packages>/peft/x.py <repo>/runs ~/y"

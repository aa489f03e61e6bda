"""The package's imports go one way: each module imports only modules of earlier layers (scripts/import_graph.py), so
there is no cycle, and serving a model never loads the trainer."""
import importlib.util, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("import_graph", ROOT/"scripts"/"import_graph.py")
ig = importlib.util.module_from_spec(spec); spec.loader.exec_module(ig)

def test_imports_keep_to_the_layers():
    g = ig.graph()
    assert {m for m, _ in ig.LAYERS} == set(g), "LAYERS and the package's modules differ"
    assert ig.problems(g) == []
    assert ig.cycles(g) == []

def test_the_readme_shows_the_graph_as_it_is():
    # index.ipynb's saved output: stale when a module's imports change and the notebook is not run again
    readme = (ROOT/"README.md").read_text(encoding="utf-8")
    assert ig.table(ig.graph()) in readme, ("README.md's layer table differs from scripts/import_graph.py: run "
                                            "scripts/execute_nbs.py nbs/index.ipynb, then scripts/make_readme.py")

def test_the_checks_are_able_to_fail(tmp_path):
    # a package where a (lower) imports b (higher) inside a function, and b imports a: an upward import and a cycle
    (tmp_path/"a.py").write_text("def f():\n    from wronai.b import x\n")
    (tmp_path/"b.py").write_text("from .a import f\nx = 1\n")
    g = ig.graph(tmp_path)
    assert g == {"a": ["b"], "b": ["a"]}
    assert ig.problems(g, [("a", ""), ("b", "")]) == ["a imports b, a module of a later layer (an upward import)"]
    assert ig.cycles(g) == [["a", "b"]]
    assert ig.problems({"c": []}, [("a", "")]) == ["c: in no layer (add it to LAYERS)"]

def test_serving_never_loads_the_trainer():
    code = ("import sys, wronai.serve, wronai.infer, wronai.evaluate, wronai.export; "
            "print(' '.join(m for m in ('wronai.train', 'wronai.runs', "
            "'wronai.memory', 'wronai.bench', 'transformers.trainer', 'trl') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == []

"""The test split is read once, by `wronai eval` (#34): training evaluates on validation, the shipped configs say so,
and no item (in either phrasing) is in two splits of the datasets built here."""
from pathlib import Path

import pytest

import wronai.data as wd
from wronai.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT/"configs").glob("*.yaml"))

class Guarded(dict):
    "A DatasetDict stand-in that records which splits were taken out of it."
    def __init__(self, ds): super().__init__(ds); self.taken = []
    def __getitem__(self, k): self.taken.append(k); return super().__getitem__(k)

@pytest.fixture(scope="module")
def instruct():
    return wd.read_dataset("polish-instruct")

def test_polish_instruct_has_three_splits_held_out_by_item(instruct):
    assert set(instruct) == {"train", "validation", "test"}
    items = {s: set(instruct[s]["item"]) for s in instruct}
    questions = {s: set(instruct[s]["instruction"]) for s in instruct}
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        # an item's other phrasing included
        assert not items[a] & items[b], (a, b, sorted(items[a] & items[b])[:3])
        assert not questions[a] & questions[b], (a, b)
    assert len(instruct["validation"]) >= 500 and len(instruct["test"]) >= 500

def test_polish_prose_tasks_have_three_splits_from_their_own_documents():
    tasks = wd.read_dataset("polish-prose-tasks")
    assert set(tasks) == {"train", "validation", "test"}
    inputs = {s: set(tasks[s]["input"]) for s in tasks}
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not inputs[a] & inputs[b], (a, b)

@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_train_and_validate_without_the_test_split(path, instruct):
    cfg = load_config(path)
    assert cfg.data.eval_split != "test" and cfg.data.train_split != "test"
    if cfg.data.dataset_name != "polish-instruct": pytest.skip(f"{cfg.data.dataset_name} is not built here")
    guarded = Guarded(instruct)
    train, ev = wd.split(guarded, cfg.data)
    assert "test" not in guarded.taken, guarded.taken
    test_items = set(instruct["test"]["item"])
    assert not (set(train["item"]) | set(ev["item"])) & test_items

def test_training_data_of_the_main_job_never_reads_the_test_split(monkeypatch):
    "load_data, what `train` calls, on configs/quick_test.yaml: every split it takes is recorded."
    from transformers import AutoTokenizer
    from wronai.models import model_path
    taken, real = [], wd.read_dataset
    def spy(*a, **kw):
        g = Guarded(real(*a, **kw)); taken.append(g); return g
    monkeypatch.setattr(wd, "read_dataset", spy)
    cfg = load_config(ROOT/"configs"/"quick_test.yaml",
                      ["data.max_examples=16", "data.max_eval_examples=8", "data.text_ratio=0"])
    tok = AutoTokenizer.from_pretrained(model_path(cfg.model.name))
    train, ev, _ = wd.load_data(cfg, tok)
    assert train and ev
    assert [g.taken for g in taken] == [["train", "validation"]], [g.taken for g in taken]

def test_a_config_that_validates_on_the_test_split_is_refused():
    with pytest.raises(ConfigError) as e: load_config(ROOT/"configs"/"quick_test.yaml", ["data.eval_split=test"])
    assert "data.eval_split" in str(e.value) and "read once, by `wronai eval`" in str(e.value)

QUALITY = ("exact match", "chrf", "perplexity", "families", "learns", "learnt")

@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_comments_quote_quality_figures_measured_on_validation(path):
    """A comment that justifies a setting with a measured quality figure names the split it was measured on, and it is
    validation."""
    blocks, cur = [], []
    # a comment and its continuation lines form one block
    for line in path.read_text(encoding="utf-8").splitlines():
        c = line.split("#", 1)[1].strip() if "#" in line else None
        if c is None or (line.split("#", 1)[0].strip() and cur): blocks.append(" ".join(cur)); cur = []
        if c is not None: cur.append(c)
    blocks.append(" ".join(cur))
    for b in blocks:
        figure = any(ch.isdigit() for ch in b) and "%" in b and any(q in b.lower() for q in QUALITY)
        if figure:
            assert "validation" in b.lower() and "test split" not in b.lower().replace(
                "only `wronai eval` reads the test split", ""
            ), b

def test_the_learning_rate_comment_is_what_its_validation_reports_say():
    """quick_test's learning rate was chosen on validation: the figures in its comment are the ones
    scripts/compare_evals.py prints from the committed reports."""
    import subprocess, sys
    a, b = (ROOT/"benchmarks"/"lr_choice"/f"quick_test_lr{lr}_validation.json" for lr in ("2e-4", "6e-4"))
    r = subprocess.run([sys.executable, "scripts/compare_evals.py", str(a), str(b)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("all "))
    comment = (ROOT/"configs"/"quick_test.yaml").read_text(encoding="utf-8")
    assert "2.2% [1.0%, 3.4%]" in line and "4.9% [3.2%, 6.6%]" in line and "+2.7% [+1.2%, +4.4%]" in line, line
    assert "4.9% [3.2, 6.6]" in comment and "2.2% [1.0, 3.4]" in comment and "+2.7 points [+1.2, +4.4]" in comment
    import json
    assert all(json.loads(f.read_text())["benchmark_sets"] == ["polish-instruct-validation"] for f in (a, b))

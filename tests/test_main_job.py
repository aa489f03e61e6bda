"""The README's main job in full: `scripts/train.py --config configs/quick_test.yaml` (trained once per test session in
conftest.py), then `wronai eval`, `wronai chat` and `wronai merge` on its adapter. What issues #7 and #8 ask the
quick_test run to show is asserted here."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from conftest import CHAT_TOKENS, Q1, Q2

ROOT = Path(__file__).resolve().parent.parent
def env():
    "The environment of a process started now: offline, and the thread count conftest.py sets for this moment."
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

def run(*args, timeout=3000):
    r = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env(), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

WRONAI = ("-c", "from wronai.cli import main; raise SystemExit(main())")

@pytest.fixture(scope="module")
def quick_test(quick_run):
    "The main job's output folder: the session's shared run (conftest.py), which the notebooks use too."
    return quick_run

def test_loss_halves_on_held_out_answers_and_training_loss_falls(quick_test):
    """The validation loss is over answer tokens only; the training loss also covers the plain text mixed in, which
    starts lower and falls less."""
    res = json.loads((quick_test/"train_results.json").read_text())
    assert res["steps"] == 100
    assert res["eval_after"]["loss"] <= res["eval_before"]["loss"] / 2, (res["eval_before"], res["eval_after"])
    assert res["eval_after"]["perplexity"] <= res["eval_before"]["perplexity"] / 2, (res["eval_before"],
                                                                                     res["eval_after"])
    assert res["train_loss_last"] < res["train_loss_first"], (res["train_loss_first"], res["train_loss_last"])
    assert res["tokens_per_second"] > 0 and res["peak_memory_mb"] > 0
    # the loss of each kind of example (06b_runs)
    logged = {k for h in res["log_history"] for k in h if k.startswith("loss_")}
    assert {"loss_text", "loss_odmiana", "loss_zwroty"} <= logged, logged

def test_tuned_beats_base_in_the_eval_report(quick_test, quick_eval):
    """`wronai eval --config configs/quick_test.yaml --adapter RUN --json F`, run by conftest.py in the background:
    better only where the paired interval says so."""
    rep = quick_eval
    assert isinstance(rep["base"]["perplexity"], float) and isinstance(rep["tuned"]["perplexity"], float)
    d = rep["difference"]["tuned-base"]
    # lower perplexity, the whole interval
    assert d["ci95"]["perplexity"][1] < 0, d["ci95"]["perplexity"]
    # more exact answers, the whole interval
    assert d["ci95"]["exact_match"]["all"][0] > 0, d["ci95"]["exact_match"]
    # zwroty: the register tag changes the answer
    reg = rep["tuned"]["register"]
    assert rep["tuned"]["n"]["register"]["asked"] > 0 and 0 <= reg["asked"] <= 1 and 0 <= reg["other"] <= 1, reg
    assert (quick_test/"eval.png").exists()

def test_eval_report_has_intervals_a_fair_baseline_and_floors(quick_eval):
    """#34: on the test split, every figure with its 95% interval and n, the base asked in its own chat template beside
    it, and each task's floors."""
    rep = quick_eval
    assert rep["benchmark_sets"] == ["polish-instruct-test"] and rep["bootstrap"]["resamples"] >= 1000
    def leaves(d, path=()):
        for k, v in d.items():
            if isinstance(v, dict): yield from leaves(v, path + (k,))
            else: yield path + (k,), v
    def at(d, path):
        for k in path: d = d[k]
        return d
    for side in ("base", "base_own_prompt", "tuned"):
        figures = {p: v for p,
                   v in leaves({k: v for k, v in rep[side].items() if k not in ("samples", "answers", "ci95", "n")})}
        assert figures and all(len(at(rep[side]["ci95"], p)) == 2 for p in figures
                               if p != ("diacritics", "references")), side
        assert at(rep[side]["n"], ("exact_match", "all")) == rep["examples"]
    assert rep["base_prompt"] == "chat_template" and "perplexity" in rep["base_own_prompt"]
    assert {"copy", "majority"} <= set(rep["floors"]) and set(rep["floors"]["copy"]["exact_match"]) == set(
        rep["tuned"]["exact_match"]
    )
    assert (
        "tuned-base_own_prompt" in rep["difference"]
        and "perplexity" not in rep["difference"]["tuned-base_own_prompt"]["value"]
    )

def test_eval_scores_held_out_prose_for_base_and_tuned(quick_eval):
    """prose_perplexity: held-out documents of polish-prose, never trained on, scored with no extra flag (forgetting
    shows here)."""
    import shutil
    if shutil.which("apt-get") is None: pytest.skip("no apt-get: polish-prose skips its Debian sources here")
    rep = quick_eval
    assert rep["prose_chars"] > 1000, rep["prose_chars"]
    for side in ("base", "tuned"): assert isinstance(rep[side]["prose_perplexity"],
                                                     float) and rep[side]["prose_perplexity"] > 1, rep[side]
    # forgetting: with plain text in the mix (data.text_ratio) the adapter is no worse than its base at ordinary Polish,
    # both in NF4, the precision it was trained in (07_eval shows the drills-only run, which is worse)
    assert rep["quantized"] and rep["tuned"]["prose_perplexity"] <= rep["base"]["prose_perplexity"], (
        rep["base"]["prose_perplexity"],
        rep["tuned"]["prose_perplexity"],
    )


def chat(adapter, *args, stdin=None):
    "stdout of `wronai chat --adapter ADAPTER *args`, with `stdin` piped in."
    r = subprocess.run([sys.executable, *WRONAI, "chat", "--adapter", str(adapter), "--max-new-tokens",
                        str(CHAT_TOKENS), *args], cwd=ROOT, env=env(),
                       input=stdin, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

# chat_answers is computed in the worker that runs test_serve.py too
@pytest.mark.xdist_group("chat")
def test_chat_one_question_and_piped_lines_agree(quick_test, chat_answers):
    # `--prompt Q1`, `--prompt Q2 --register informal` (conftest.py)
    one, two = chat_answers["formal"], chat_answers["informal"]
    assert one.strip() and two.strip()
    # blank lines skipped, register switched
    assert chat(quick_test, stdin=f"{Q1}\n\n/informal\n{Q2}\n") == one + two

def test_merged_model_answers_like_base_plus_adapter(quick_test, tmp_path):
    out = tmp_path/"merged"
    run(*WRONAI, "merge", "--adapter", quick_test, "--out", out)
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "wronai.yaml"} <= set(files)
    again = subprocess.run([sys.executable, *WRONAI, "merge", "--adapter", str(quick_test), "--out", str(out)],
                           cwd=ROOT, env=env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "is not empty" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == files                 # nothing overwritten
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from wronai.infer import prompt_for
    # plain transformers, no peft
    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    b = tok(prompt_for(Q1, tok), return_tensors="pt")
    # stops by its saved generation config
    with torch.no_grad(): g = model.generate(**b, max_new_tokens=32, do_sample=False)
    merged = tok.decode(g[0, b.input_ids.shape[1]:], skip_special_tokens=True).strip()
    assert merged == chat(quick_test, "--prompt", Q1, "--full-precision").strip()

def test_generation_benchmark_runs_and_reports_against_the_merged_peer(quick_test, tmp_path):
    "The figures are not judged (they are machine-bound); what they are taken over, and the ratios, are."
    out = tmp_path/"gen.json"
    r = run("scripts/bench_generate.py", "--adapter", quick_test, "--prompts", "3", "--new-tokens", "4",
            "--batch-sizes", "1,2", "--json", out)
    print(r.stdout)
    rep = json.loads(out.read_text())
    names = ["NF4 base + adapter", *(["NF4 base + adapter, standard layout"] if rep["bnb_fused_cpu_4bit"] else []),
             "full base + adapter", "merged"]
    assert [(x["model"], x["batch_size"]) for x in rep["runs"]] == [(m, b) for b in (1, 2) for m in names]
    # the figures say which CPU made them
    assert isinstance(rep["cpu_flags"]["flags"], list) and rep["cpu_flags"]["model"]
    for x in rep["runs"]:
        assert x["tokens"] == 3 * 4 and x["tokens_per_s"] > 0                       # every prompt ran the full 4 tokens
        peer = next(p for p in rep["runs"] if p["model"] == "merged" and p["batch_size"] == x["batch_size"])
        assert x["speed_vs_merged"] == pytest.approx(x["tokens_per_s"] / peer["tokens_per_s"])
    nf4, merged = rep["runs"][0], rep["runs"][len(names) - 1]
    # 4-bit layers; embeddings stay full precision
    assert nf4["weights_mib"] < 0.5 * merged["weights_mib"]
    bad = subprocess.run([sys.executable, "scripts/bench_generate.py", "--adapter", str(tmp_path/"none")], cwd=ROOT,
                         env=env(),
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "wronai.yaml: not found" in bad.stderr

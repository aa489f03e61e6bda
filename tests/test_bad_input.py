"""Bad input, as a careless or hostile user gives it: every case is one clear message and exit 2, before any model
loads.

Each command runs as its own process through `wronai.cli.main`, with a probe that counts model loads
(`PreTrainedModel.from_pretrained`, wrapped the moment transformers defines it) and writes the count at exit. A case
passes when the exit code is the expected one, stderr names the key, file or row, there is no traceback, no model was
loaded, and the output folder it was pointed at is as it was.
"""
import json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = str(ROOT/"configs"/"quick_test.yaml")
LOGS = Path(tempfile.mkdtemp(prefix="wronai-loads-"))              # outside every folder a test watches

PROBE = r"""
import atexit, importlib.abc, importlib.util, json, os, sys
loads = []
class CountLoads(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "transformers.modeling_utils": return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            load = module.PreTrainedModel.from_pretrained.__func__
            def counted(cls, *a, **k):
                loads.append(cls.__name__)
                return load(cls, *a, **k)
            module.PreTrainedModel.from_pretrained = classmethod(counted)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, CountLoads())
atexit.register(lambda: open(os.environ["WRONAI_LOAD_LOG"], "w").write(json.dumps(loads)))
from wronai.cli import main
sys.exit(main(sys.argv[1:]))
"""

def wronai(tmp_path, *args, cwd=ROOT, timeout=600, env=None):
    """Exit code, stderr, stdout and the model classes loaded, of `wronai *args` in a fresh process (`env`: more
    environment variables)."""
    log = LOGS/f"{time.monotonic_ns()}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WRONAI_LOAD_LOG": str(log), **(env or {})}
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stderr, r.stdout, json.loads(log.read_text()) if log.exists() else None

def snapshot(folder):
    "Every file under `folder` with its size and modification time (an empty dict when there is no such folder)."
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")} if folder.exists() else {}

def refused(tmp_path, args, named, code=2, out=None, cwd=ROOT, env=None):
    """Assert that `wronai *args` exits `code`, names `named`, shows no traceback, loads no model and leaves `out` as it
    was."""
    before = snapshot(out) if out else None
    rc, err, _, loads = wronai(tmp_path, *args, cwd=cwd, env=env)
    assert rc == code, f"exit {rc}, wanted {code}:\n{err[-3000:]}"
    for n in [named] if isinstance(named, str) else named: assert n in err, f"{n!r} not in the message:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert loads == [], f"a model was loaded before the error: {loads}"
    if out: assert snapshot(out) == before, f"{out} changed"
    return err

@pytest.fixture
def data(tmp_path):
    "A JSONL file of 20 good rows with two broken lines: truncated in the middle (line 11) and at the end (line 22)."
    rows = [json.dumps({"instruction": f"Jak jest po polsku liczba {i}?", "output": f"To jest {i}."},
                       ensure_ascii=False) for i in range(20)]
    lines = (
        rows[:10]
        + ['{"instruction": "Pytanie bez odpowie']
        + rows[10:]
        + ['{"instruction": "Ostatnie?", "output": "Ucię']
    )
    (tmp_path/"d.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return tmp_path/"d.jsonl"

# --- the config and the command line: checked by `wronai config check` and again at the start of every command
# ---------
CONFIG_CASES = [
    (["--set", "training.learning_rate=.nan"], "training.learning_rate: must be a finite number"),
    (["--set", "training.learning_rate=inf"], "training.learning_rate: must be a finite number"),
    (["--set", "lora.lora_dropout=nan"], "lora.lora_dropout: must be a finite number"),
    (["--set", "model.name=/nonexistent/dir"],
     "model.name: model '/nonexistent/dir' looks like a local path but no such folder exists"),
    (["--set", "model.name=packaged:nope"], "model.name: unknown packaged model 'nope'"),
    (["--set", "model.name=a/b/c"], "model.name: model 'a/b/c' is neither"),
    (["--set", "data.max_seq_length=1"], "data.max_seq_length: must be at least"),
    (["--set", "data.dataset_name=/no/such/data.jsonl"], "data.dataset_name: /no/such/data.jsonl: no such file"),
    (["--set", "data.text_dataset=missing.txt"], "data.text_dataset: missing.txt: no such file"),
    (["--set", "lora.r=[1"], "lora.r: the value in 'lora.r=[1' is not valid YAML"),
    (["--set", "training.max_steps"], "training.max_steps: an override must look like section.key=value"),
]

@pytest.mark.parametrize("extra,named", CONFIG_CASES,
                         ids=[c[0][1].split("=")[0] + ("=" + c[0][1].split("=")[1][:12] if "=" in c[0][1] else "")
                              for c in CONFIG_CASES])
def test_config_check_and_train_refuse_it_before_loading(tmp_path, extra, named):
    refused(tmp_path, ["config", "check", QUICK, *extra], named)
    out = tmp_path/"run"
    refused(tmp_path, ["train", "--config", QUICK, "--output-dir", out, *extra], named, out=tmp_path)
    assert not out.exists()

@pytest.mark.parametrize("steps", ["0", "-5", "ten"])
def test_max_steps_must_be_positive(tmp_path, steps):
    refused(tmp_path, ["train", "--config", QUICK, "--output-dir", tmp_path/"run", "--max-steps", steps],
            "argument --max-steps", out=tmp_path)

def test_key_given_twice(tmp_path):
    (tmp_path/"twice.yaml").write_text("model:\n  name: packaged:smollm2-135m\nlora:\n  r: 8\nmodel:\n  name: gpt2\n")
    refused(tmp_path, ["config", "check", tmp_path/"twice.yaml"], ["key 'model' is given twice", "lines 1 and 5"])

def test_binary_config(tmp_path):
    (tmp_path/"model.yaml").write_bytes(bytes(range(256)) * 4)
    refused(tmp_path, ["train", "--config", tmp_path/"model.yaml"], [str(tmp_path/"model.yaml"), "is not UTF-8 text"])

def test_relative_model_folder_that_is_missing_is_not_a_hub_id(tmp_path):
    (tmp_path/"models").mkdir()
    err = refused(tmp_path, ["config", "check", QUICK, "--set", "model.name=models/mymodel"],
                  "no folder 'models/mymodel'", cwd=tmp_path)
    assert "hf auth login" not in err and "gated" not in err

def test_trust_remote_code_warns_and_names_the_repository(tmp_path):
    rc, err, out, loads = wronai(tmp_path, "config", "check", QUICK, "--set", "model.name=someone/model", "--set",
                                 "model.trust_remote_code=true")
    assert rc == 0 and loads == [], err
    assert "wronai: warning: model.trust_remote_code is true" in err and "'someone/model'" in err, err

# --- data files: every good row kept, broken lines named by number --------------------------------------------------
def test_data_check_keeps_every_good_row_and_names_broken_lines(tmp_path, data):
    rc, err, out, loads = wronai(tmp_path, "data", "check", data)
    assert rc == 0 and loads == [], err
    assert "kept 20 rows, skipped 2" in out and "(lines 11, 22)" in out, out

@pytest.mark.parametrize("name,text,named", [
    ("empty.jsonl", "", "the file is empty"), ("empty.json", "  \n", "the file is empty"),
    ("empty.csv", "", "the file is empty"),
    ("broken.json", '[{"instruction": "a", "output": "b"},\n {"instruction": "c", "output": }]',
     "not valid JSON (line 2, column"),
    ("nothing.jsonl", '{"instruction": "tylko pytanie"}\n', "no usable rows"),
    ("lists.jsonl", "[1, 2]\n[3]\n", "not one line of it is a JSON object"),
])
def test_data_files_that_give_nothing(tmp_path, name, text, named):
    (tmp_path/name).write_text(text, encoding="utf-8")
    refused(tmp_path, ["data", "check", tmp_path/name], [name, named])

def test_training_on_a_file_with_no_usable_rows_stops_before_the_model_loads(tmp_path):
    (tmp_path/"nothing.jsonl").write_text('{"instruction": "tylko pytanie"}\n' * 5, encoding="utf-8")
    refused(tmp_path,
            ["train", "--config", QUICK, "--output-dir", tmp_path/"run", "--set",
             f"data.dataset_name={tmp_path/'nothing.jsonl'}",
                       "--set", "data.eval_split=validation", "--set", "data.text_ratio=0"],
            ["nothing.jsonl", "missing field 'output'"], out=tmp_path,
            # as on a new machine: the packaged model is not converted yet, and still nothing loads
            env={"WRONAI_CACHE": str(tmp_path/"empty-cache")})

def test_training_uses_every_good_row_of_a_file_with_broken_lines(tmp_path, data):
    rc, err, out, loads = wronai(tmp_path, "train", "--config", QUICK, "--output-dir", tmp_path/"run", "--max-steps",
                                 "1",
                                 "--set", f"data.dataset_name={data}", "--set", "data.eval_split=validation", "--set",
                                 "data.text_ratio=0",
                                 "--set", "data.max_examples=null", "--set", "data.max_eval_examples=null", "--set",
                                 "training.eval_steps=1")
    assert rc == 0, err[-3000:]
    # the 90/10 split of all 20
    assert "18 training and 2 validation examples; kept 20 rows, skipped 2" in err, err[-3000:]
    assert "(lines 11, 22)" in err, err[-3000:]

# --- adapter folders: checked from their files before the base loads ------------------------------------------------
@pytest.fixture
def adapters(tmp_path, quick_run):
    "Copies of the shared run's adapter folder, each broken one way."
    def copy(name):
        d = tmp_path/name
        shutil.copytree(quick_run, d, ignore=shutil.ignore_patterns("checkpoint-*", "logs", "*.png"))
        return d
    made = {}
    d = copy("truncated")
    w = d / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    made["truncated"] = (d, "is truncated")
    d = copy("no-weights"); (d/"adapter_model.safetensors").unlink(); made["no-weights"] = (d, "missing")
    d = copy("bad-config")
    (d / "adapter_config.json").write_text("{\"r\": 16,")
    made["bad-config"] = (d, "adapter_config.json: not valid JSON")
    return made

def test_broken_adapters_are_named_before_the_base_loads(tmp_path, adapters):
    # every command that loads an adapter goes through wronai.evaluate.check_adapter, and 07_eval tests every
    # breakage on it;
    # here each command meets one, as a user would
    for name, cmd in [("truncated", ["eval", "--config", QUICK, "--adapter"]),
                      ("no-weights", ["chat", "--prompt", "Cześć", "--adapter"]),
                      ("bad-config", ["merge", "--out", tmp_path/"merged", "--adapter"]),
                      ("truncated", ["serve", "--port", "8765", "--adapter"]),
                      ("no-weights", ["export", "--out", tmp_path/"gguf", "--adapter"])]:
        d, why = adapters[name]
        refused(tmp_path, [*cmd, d], [str(d), why], out=d)
    assert not (tmp_path/"merged").exists() and not (tmp_path/"gguf").exists()

def test_adapter_of_another_base(tmp_path, quick_run):
    refused(tmp_path, ["eval", "--config", str(ROOT/"configs"/"cpu_gemma.yaml"), "--adapter", quick_run],
            ["wronai.yaml: this adapter was trained on 'packaged:smollm2-135m'", "'packaged:gemma3-270m'"],
            out=quick_run)

def test_merge_into_a_file(tmp_path, quick_run):
    (tmp_path/"taken").write_text("keep me")
    refused(tmp_path, ["merge", "--adapter", quick_run, "--out", tmp_path/"taken"],
            [str(tmp_path/"taken"), "is a file"])
    assert (tmp_path/"taken").read_text() == "keep me"

def test_export_overwrites_nothing(tmp_path, quick_run):
    (tmp_path/"taken").write_text("keep me")
    refused(tmp_path, ["export", "--adapter", quick_run, "--out", tmp_path/"taken"],
            [str(tmp_path/"taken"), "is a file"])
    out = tmp_path/"gguf"; out.mkdir(); (out/"wronai-q8_0.gguf").write_text("an earlier export")
    refused(tmp_path, ["export", "--adapter", quick_run, "--out", out, "--quant", "f16", "q8_0"],
            [str(out/"wronai-q8_0.gguf"), "exists"], out=out)
    refused(tmp_path, ["export", "--adapter", quick_run, "--out", tmp_path/"new", "--quant", "q4_k"],
            "invalid choice: 'q4_k'")
    assert (tmp_path/"taken").read_text() == "keep me" and not (tmp_path/"new").exists()

def test_serve_refuses_an_empty_api_key(tmp_path, quick_run):
    refused(tmp_path, ["serve", "--adapter", quick_run, "--api-key", " "], "--api-key is empty")

# --- chat
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_chat_refuses_an_empty_prompt(tmp_path, prompt):
    refused(tmp_path, ["chat", "--adapter", tmp_path/"none", "--prompt", prompt], "--prompt is empty")

def test_chat_warns_about_a_prompt_longer_than_training(tmp_path, quick_run):
    rc, err, out, loads = wronai(tmp_path, "chat", "--adapter", quick_run, "--prompt", "Opowiedz mi o Polsce. " * 100,
                                 "--max-new-tokens", "1")
    assert rc == 0, err[-3000:]
    assert loads, "the probe saw no model load where one happened: every 'no model load' above would pass for nothing"
    assert "wronai: warning: this prompt is" in err and "longer than any training example (256 tokens" in err, err[
        -3000:
    ]

# --- what users share holds no pickle
# ----------------------------------------------------------------------------------
def test_the_adapter_folder_holds_no_pickle_and_checkpoints_load_weights_only(quick_run):
    import torch
    # what the Trainer itself allows when it resumes
    from transformers.trainer_pt_utils import safe_globals
    final = [p.name for p in Path(quick_run).iterdir() if p.is_file()]
    assert "training_args.json" in final and not [f for f in final
                                                  if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], final
    ckpts = list(Path(quick_run).glob("checkpoint-*"))
    assert ckpts
    for ck in ckpts:
        assert not (ck/"training_args.bin").exists(), ck
        for f in list(ck.glob("*.pt")) + list(ck.glob("*.pth")):
            # raises on anything that would run code
            with safe_globals(): torch.load(f, weights_only=True)

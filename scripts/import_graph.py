"""Which wronai module imports which, read from the source (imports inside functions count too), and the layers they
keep to.

    python scripts/import_graph.py      # the table the README's Develop section shows; exit 1 on a cycle or an upward import

A module may import only modules of earlier layers, so no import runs backwards and there can be no cycle.
tests/test_layers.py asserts it.
"""  # noqa: E501 (Markdown: a table row or a paragraph is one line)
import ast, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# bottom to top, in STYLE.md's order (config -> models/tokens/quant -> lora/data -> train -> evaluate ->
# infer/serve/export -> cli):
# each module imports only modules listed before it
LAYERS = [
    ("schema", "checking a YAML mapping against dataclasses: key paths, did-you-mean, every problem at once"),
    ("config", "the run's sections: types, defaults, ranges, keys that fit together; reads nothing but the file"),
    ("models", "where a model comes from; the device, dtype, optimizer and precision it gets"),
    ("tokens", "the tokenizer, the Polish tags and registers"),
    ("vocab", "a Polish vocabulary's cost in tokens"),
    ("quant", "NF4 and bitsandbytes loading"),
    ("lora_cpu", "dropout masks drawn cheaply on a CPU"),
    ("new_rows", "the new tokens' trained rows without a copy of the whole matrix"),
    ("lora", "adapters on the 4-bit base"),
    ("prose", "Polish prose from packaged sources"),
    ("polish_instruct", "the built instruction dataset"),
    ("data", "records to token sequences, a dataset's splits, the perplexity of the scored tokens"),
    ("preflight", "what a config names exists on this machine (model, tokenizer, data)"),
    ("memory", "the memory plan; gradient checkpointing 'auto'"),
    ("fsdp", "sharding the 4-bit base over ranks with torch's FSDP2; the memory plan per rank"),
    ("runtime", "a run's device, dtypes, precision, optimizer and checkpointing, decided once"),
    ("runs", "the Trainer subclass and what a run records"),
    ("train", "the training run"),
    ("evaluate", "measures, intervals, floors; loading a tuned adapter"),
    ("experiments", "the QLoRA question: runs that differ in one thing each, learning rates chosen on validation"),
    ("infer", "chat, sampling, merging"),
    ("engine", "one generation at a time for a server; stop strings and whitespace in a stream"),
    ("serve", "the OpenAI-compatible server"),
    ("export", "GGUF export"),
    ("bench", "wronai against TRL"),
    ("exits", "how a command ends: exit codes, one-line errors, --debug"),
    ("cli", "the `wronai` command"),
]

def graph(pkg=ROOT/"wronai"):
    "`{module: sorted wronai modules it imports}` for every public module of the package."
    g = {}
    for f in sorted(Path(pkg).glob("*.py")):
        if f.stem.startswith("_"): continue
        deps = set()
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom):
                if n.level == 1 and n.module: deps.add(n.module.split(".")[0])
                elif n.level == 1: deps |= {a.name for a in n.names}
                elif n.module and n.module.startswith("wronai."): deps.add(n.module.split(".")[1])
                elif n.module == "wronai": deps |= {a.name for a in n.names}
            elif isinstance(n, ast.Import):
                deps |= {a.name.split(".")[1] for a in n.names if a.name.startswith("wronai.")}
        g[f.stem] = sorted(deps - {f.stem})
    return g

def problems(g, layers=LAYERS):
    "Every way `g` breaks `layers`: a module not in a layer, an import of a later (upward) or unknown module."
    rank = {m: i for i, (m, _) in enumerate(layers)}
    out = [f"{m}: in no layer (add it to LAYERS)" for m in g if m not in rank]
    for m, deps in g.items():
        for d in deps:
            if d not in rank:
                out.append(f"{m} imports {d}, which is in no layer")
            elif m in rank and rank[d] >= rank[m]:
                out.append(f"{m} imports {d}, a module of a later layer (an upward import)")
    return out

def cycles(g):
    "Import cycles of `g`, each as a list of modules (Tarjan's strongly connected components of more than one module)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in g.get(v, []):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in g:
        if v not in index: visit(v)
    return out

def table(g, layers=LAYERS):
    "The layers as a markdown table, bottom first: module, what it is for, the wronai modules it imports."
    rows = ["| layer | module | for | imports |", "|---|---|---|---|"]
    rows += [f"| {i} | `{m}` | {what} | {', '.join(f'`{d}`' for d in g.get(m, [])) or '(none)'} |" for i,
             (m, what) in enumerate(layers)]
    return "\n".join(rows)

if __name__ == "__main__":
    g = graph()
    print(table(g))
    bad = problems(g) + [f"cycle: {' -> '.join(c)}" for c in cycles(g)]
    for p in bad: print(p, file=sys.stderr)
    sys.exit(1 if bad else 0)

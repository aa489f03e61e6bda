"""Write README.md from nbs/index.ipynb (nbdev's readme_nb), without quarto.

Markdown cells are copied as they are; code cells become fenced Python blocks followed by their
text output, so the README shows what the notebook showed. A cell starting with `#| echo: false`
contributes its output only, and a `text/markdown` output (IPython's `Markdown(...)`) is copied as
markdown, so tables computed from files (the benchmarks) appear as tables. `--check` exits 1 when README.md differs.
Usage: python scripts/make_readme.py [--check]
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path):
    "README text for the notebook at `nb_path`."
    parts = ["<!-- generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file -->"]
    for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
        src = "".join(cell["source"]).strip()
        if not src or src.startswith("#| hide"): continue
        if cell["cell_type"] == "markdown": parts.append(src)
        elif cell["cell_type"] == "code":
            if not src.startswith("#| echo: false"): parts.append(f"```python\n{src}\n```")
            outs = cell.get("outputs", [])
            # stdout only: what a library logs on stderr while a cell runs (a hub notice, a warning) is
            # not the page's content
            out = "".join("".join(o.get("text", "")) for o in outs if o.get("output_type") == "stream"
                          and o.get("name") != "stderr")
            if out.strip(): parts.append(f"```\n{out.rstrip()}\n```")
            parts += ["".join(o["data"]["text/markdown"]).strip() for o in outs if "text/markdown" in o.get("data", {})]
    return "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text, readme = render(root/"nbs"/"index.ipynb"), root/"README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run python scripts/make_readme.py")
    else:
        readme.write_text(text, encoding="utf-8")

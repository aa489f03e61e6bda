"""Give every lesson notebook its "Open in Colab" badge and its Colab setup cell, both made from settings.ini.

    python scripts/colab_cells.py           # add or refresh them (after adding a notebook, or moving the repository)
    python scripts/colab_cells.py --check   # exit 1 and name the notebooks whose cells are missing or out of date

The setup cell runs on Google Colab only: it clones the repository ($WRONAI_REPO, default settings.ini's git_url) into
$WRONAI_COLAB_DIR (default /content/wronai), runs the install once ($WRONAI_INSTALL, default `make install`) and works
from the clone's nbs/ folder. Anywhere else it does nothing. The variables let a test point it at a local checkout.
"""
import json, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_MARK = "# On Google Colab: fetch the course"

SETUP = """#| hide
# On Google Colab: fetch the course, install it once, and work in its nbs/ folder. Anywhere else this cell does nothing.
import importlib.util, os, shlex, subprocess, sys
if importlib.util.find_spec("google.colab"):
    _root = os.environ.get("WRONAI_COLAB_DIR", "/content/wronai")
    _repo = os.environ.get("WRONAI_REPO", "{git_url}")
    if not os.path.isdir(_root): subprocess.run(["git", "clone", _repo, _root], check=True)
    if not os.path.exists(f"{{_root}}/.colab-installed"):
        subprocess.run(shlex.split(os.environ.get("WRONAI_INSTALL", "make install")), cwd=_root, check=True)
        open(f"{{_root}}/.colab-installed", "w").close()
        print("Installed. If an import below fails, restart the session (Runtime > Restart session) and run again.")
    sys.path.insert(0, _root); os.chdir(f"{{_root}}/nbs")"""

BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/{user}/{repo}/blob/{branch}/nbs/{name})")


def settings():
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT/"settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def lessons():
    "The lesson notebooks: every numbered notebook in nbs/."
    return sorted((ROOT/"nbs").glob("[0-9]*.ipynb"))


def wanted(nb_path, s=None):
    "The badge and setup cell sources that `nb_path` should carry."
    s = s or settings()
    return BADGE.format(user=s["user"], repo=s["repo"], branch=s["branch"],
                        name=nb_path.name), SETUP.format(git_url=s["git_url"])


def _lines(text):
    lines = text.split("\n")
    return [l + "\n" for l in lines[:-1]] + [lines[-1]]


def refresh(nb_path, check=False):
    "Put the badge and setup cell right after the title (or refresh them); True when the notebook was already right."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    badge, setup = wanted(nb_path)
    cells = nb["cells"]
    kept = [c for c in cells if not ("colab-badge.svg" in "".join(c["source"]) or SETUP_MARK in "".join(c["source"]))]
    title = next(i for i, c in enumerate(kept) if c["cell_type"] == "markdown"
                 and "".join(c["source"]).startswith("# "))
    old = {("badge" if "colab-badge.svg" in "".join(c["source"]) else "setup"): c for c in cells if c not in kept}
    new_badge = {**old.get("badge", {"id": f"colab{nb_path.stem[:2]}b"}), "cell_type": "markdown", "metadata": {},
                 "source": _lines(badge)}
    new_setup = {**old.get("setup", {"id": f"colab{nb_path.stem[:2]}s"}), "cell_type": "code", "metadata": {},
                 "execution_count": None,
                 "outputs": [], "source": _lines(setup)}
    new_badge.pop("outputs", None); new_badge.pop("execution_count", None)
    result = kept[:title + 1] + [new_badge, new_setup] + kept[title + 1:]
    if result == cells: return True
    if not check:
        nb["cells"] = result
        nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return False


def main(argv=None):
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = [p.name for p in lessons() if not refresh(p, check)]
    if check and stale:
        print(
            "Colab badge or setup cell missing or out of date in: "
            + ", ".join(stale)
            + "; run python scripts/colab_cells.py",
            file=sys.stderr,
        )
        return 1
    if stale: print("updated: " + ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute notebooks in place so readers see their outputs, skipping cells flagged with settings.ini
`tst_flags` (`#| gpu`, `#| slow`) exactly as the tests do; skipped cells keep no output.

The saved outputs are made for readers, not for this machine: no progress bars (transformers' and tqdm's are
turned off), paths of this machine written as `<tmp>`, `<site-packages>`, `<repo>` and `~`, and plots stored as
palette PNGs (a quarter of the size, the same picture), widgets as their static fallback (HTML or text) since
no widget state is saved. tests/test_repo.py checks what is saved.
Stops at the first error. Usage: python scripts/execute_nbs.py [--tidy] nbs/01_models.ipynb [...]; then nbdev_clean.
`--tidy` only cleans the outputs already saved.
"""
import base64, io, os, re, sys, sysconfig, tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")     # transformers' "Loading weights" and hub bars
os.environ.setdefault("TQDM_DISABLE", "1")                     # the Trainer's console bar (Jupyter shows an HTML one)

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config
from wronai.quant import KERNELS_LINES

ROOT = Path(__file__).resolve().parent.parent
flags = get_config().tst_flags.split()                  # split as nbdev_test splits them
flagged = re.compile(r"^#\|\s*(%s)\s*$" % "|".join(map(re.escape, flags)), re.M) if flags else None

def skip(cell):
    """True for cells that are not run: markdown, and code flagged with a test flag. Every code cell starts without
    outputs: execnb keeps a cell's old outputs when it prints nothing, and a stale warning would stay saved."""
    if cell.cell_type != "code": return True
    cell.outputs, cell.execution_count = [], None
    return bool(flagged and flagged.search(cell.source))

# first: a checkout may itself sit in a temp or home folder
PATHS = [(re.compile(re.escape(str(ROOT))), "<repo>"),
         *[(re.compile(re.escape(p)), "<site-packages>")
           for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}],
         (re.compile(re.escape(str(Path(tempfile.gettempdir()).resolve())) + r"/[\w.-]+"), "<tmp>"),
         (re.compile(re.escape(tempfile.gettempdir()) + r"/[\w.-]+"), "<tmp>"),
         (re.compile(re.escape(str(Path.home()))), "~")]
WIDGET = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

def clean_text(s):
    """Text of an output (a string or a list of lines, returned as lines) without terminal control codes or this
    machine's paths."""
    s = ANSI.sub("", "".join(s) if isinstance(s, list) else s)
    for pat, rep in PATHS: s = pat.sub(rep, s)
    return s.splitlines(keepends=True)

def small_png(b64):
    "A plot as a palette PNG: matplotlib's figures have few colours, so 256 keep the picture and shrink the file."
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    if im.mode == "P": return b64                                   # made so already: quantizing again would blur it
    buf = io.BytesIO()
    im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(b64) * 3 // 4 else b64

# bitsandbytes' lookup of its optional hub kernel (the `kernels` package), which says only that this machine is offline:
# the lines `wronai.quant.kernels_line_explained` explains, printed where a notebook imports bitsandbytes outside it
HUB_KERNEL = re.compile("^(" + "|".join(map(re.escape, KERNELS_LINES.values())) + ")")

def tidy(nb):
    "Clean every output of `nb` in place."
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "text" in o: o["text"] = [l for l in clean_text(o["text"]) if not HUB_KERNEL.match(l)]
            data = o.get("data", {})
            for k in ("text/plain", "text/html", "text/markdown"):
                if k in data: data[k] = clean_text(data[k])
            if "image/png" in data: data["image/png"] = small_png(data["image/png"])
            # no kernel keeps its state: the static fallback stays
            if WIDGET in data and len(data) > 1: del data[WIDGET]
            if "traceback" in o: o["traceback"] = ["".join(clean_text(t)) for t in o["traceback"]]
        if "outputs" in cell: cell.outputs = [o for o in cell.outputs if o.get("text", True)]     # emptied above

if __name__ == "__main__":
    only_tidy = "--tidy" in sys.argv                      # clean the saved outputs without running anything
    for fn in map(Path, (a for a in sys.argv[1:] if a != "--tidy")):
        nb = read_nb(fn)
        if not only_tidy:
            shell = CaptureShell(fn)
            with working_directory(fn.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
        tidy(nb)
        write_nb(nb, fn)
        print(f"{'tidied' if only_tidy else 'executed'} {fn}")

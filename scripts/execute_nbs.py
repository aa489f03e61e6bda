"""Execute notebooks in place so readers see their outputs, skipping cells flagged with settings.ini
`tst_flags` (`#| gpu`, `#| slow`) exactly as the tests do; skipped cells keep no output.
Stops at the first error. Usage: python scripts/execute_nbs.py nbs/01_models.ipynb [...]; then nbdev_clean.
"""
import re, sys
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config

flags = get_config().tst_flags.split()                  # split as nbdev_test splits them
flagged = re.compile(r"^#\|\s*(%s)\s*$" % "|".join(map(re.escape, flags)), re.M) if flags else None

def skip(cell):
    "True for cells that are not run: markdown, and code flagged with a test flag."
    if cell.cell_type != "code": return True
    if flagged and flagged.search(cell.source):
        cell.outputs, cell.execution_count = [], None
        return True
    return False

for fn in map(Path, sys.argv[1:]):
    nb, shell = read_nb(fn), CaptureShell(fn)
    with working_directory(fn.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
    write_nb(nb, fn)
    print(f"executed {fn}")

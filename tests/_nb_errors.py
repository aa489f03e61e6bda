"""Run every cell of one notebook, going on after errors, and print each failing cell's error (for finding device bugs).

`python tests/_nb_errors.py nbs/04_lora.ipynb` runs under `_device_check.DeviceCheck` like the notebook tests do.
Skips `#| gpu` and `#| slow` cells; a cell that fails only because an earlier one did is listed too.
"""
import os, sys
from pathlib import Path

from execnb.nbio import read_nb
from execnb.shell import CaptureShell
from _device_check import DeviceCheck

os.environ["IN_TEST"] = "1"                                         # as nbdev's test_nb sets it: test-sized demos
nb = read_nb(Path(sys.argv[1]))
os.chdir(Path(sys.argv[1]).parent)                                  # as nbdev's test_nb runs it
shell = CaptureShell(path=Path(sys.argv[1]).parent)
failed = []
with DeviceCheck():
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "#| gpu" in cell.source or "#| slow" in cell.source: continue
        shell.run(cell.source)
        if shell.exc:
            err = shell.exc
            failed.append(i); print(f"cell {i}: {type(err).__name__}: {str(err)[:400]}", flush=True)
            if not str(err).strip():                                   # a bare assert: show where
                import traceback; print("".join(traceback.format_exception(err)[-3:])[:1500], flush=True)
            shell.exc = None
print(f"{len(failed)} failing cells: {failed}")

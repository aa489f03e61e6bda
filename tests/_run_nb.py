"""Run one notebook's tests in this process (called by test_notebooks.py in a fresh interpreter).

Cells flagged with a settings.ini `tst_flags` flag (`#| slow`, `#| gpu`) are skipped unless the flag
is listed in $WRONAI_TEST_FLAGS (comma-separated); `gpu` cells run by themselves where CUDA is available.
"""
import os, sys
from pathlib import Path

from nbdev.config import get_config
from nbdev.test import test_nb

flags = set(get_config().tst_flags.split())             # split as nbdev_test splits them
forced = {f.strip() for f in os.environ.get("WRONAI_TEST_FLAGS", "").split(",") if f.strip()}
if "gpu" in flags:
    import torch
    if torch.cuda.is_available(): forced.add("gpu")
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=sorted(flags - forced), showerr=True)
print(f"{Path(sys.argv[1]).name}: {'ok' if ok else 'FAILED'} in {secs:.1f} s (skipped flags: {sorted(flags - forced)})")
sys.exit(0 if ok else 1)

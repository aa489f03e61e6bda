"""`make test-avx2`: this folder goes first on PYTHONPATH, so every Python process of the run (pytest, its workers, the
forkserver's notebooks, the shared run, every `wronai` subprocess) imports this file at start-up.

It completes what the Makefile's environment variables do to the kernels (torch's own at AVX2, MKL's and oneDNN's at
AVX2): bitsandbytes asks the CPU itself, through its native library, whether it has AVX512-BF16, and on a CPU without it
neither loads its 4-bit layers in the fused inference layout nor looks for a hub build of that kernel. Here it is told
"no" as `bitsandbytes.functional` is imported, before any module copies the name. Nothing else is changed.
"""
import importlib.abc
import importlib.util
import sys

TARGET = "bitsandbytes.functional"

class _NoAvx512Bf16(importlib.abc.MetaPathFinder):
    "Finds nothing itself: wraps the real loader of `TARGET` so that its `has_avx512bf16` answers False."
    def find_spec(self, name, path=None, target=None):
        if name != TARGET: return None
        sys.meta_path.remove(self)                                  # once, and not for the lookup below
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            module.has_avx512bf16 = lambda: False
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _NoAvx512Bf16())

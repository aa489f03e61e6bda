"""Reproduce, with bitsandbytes and torch alone, a lost gradient on CPUs with AVX512-BF16 (for an upstream report).

    python scripts/repro_bnb_cpu_packing.py

On such a CPU, the first eval-mode forward of a `bnb.nn.Linear4bit` on an input that needs no gradient rewrites the
weight for the fused CPU kernel (`_convert_weight_packed_for_cpu`: double quantization undone, absmax cast to bfloat16).
The layout stays after `.train()`, and the kernel has no autograd formula, so from then on no gradient reaches the
layer's input: a QLoRA run that evaluates before or during training trains every layer below with a cut signal.
torch only warns ("bitsandbytes::gemv_4bit: an autograd kernel was not registered ...").

Exit status: 1 when the gradient is lost (the bug), 0 when it is kept, 2 when this CPU cannot show it (no AVX512-BF16).
"""
import platform, sys, warnings

import torch
import bitsandbytes as bnb
from bitsandbytes.functional import has_avx512bf16


def input_grad(layer, x):
    "The gradient that one backward pass through `layer` in train mode sends to its input."
    x = x.detach().requires_grad_(True)
    layer.train()
    layer(x).pow(2).sum().backward()
    return x.grad


def main():
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"bitsandbytes {bnb.__version__}, {platform.machine()}")
    print("has_avx512bf16():", bool(has_avx512bf16()))
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(256, 128, bias=False, compute_dtype=torch.float32, quant_type="nf4",
                              compress_statistics=True)
    layer.load_state_dict({"weight": torch.randn(128, 256)}, strict=False)
    layer = layer.to("cpu")                                  # quantizes to NF4 with double quantization
    x = torch.randn(4, 256)

    before = input_grad(layer, x)
    layer.eval()
    with torch.no_grad(): layer(x)                           # an evaluation pass, e.g. validation loss before training
    st = layer.weight.quant_state
    packed = getattr(st, "packing_format_for_cpu", False)
    print(f"after one eval-mode forward: packing_format_for_cpu={packed}, absmax "
          f"dtype {st.absmax.dtype}, nested={st.nested}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = input_grad(layer, x)
    for w in caught: print("warning:", str(w.message).splitlines()[0][:160])
    print(f"input gradient norm: before the eval pass {before.norm():.4f}, after "
          f"it {'None' if after is None else f'{after.norm():.4f}'}")

    if not packed:
        print("this CPU never packs (no AVX512-BF16): the bug cannot be shown here" if not has_avx512bf16()
              else "not packed: no bug")
        return 2 if not has_avx512bf16() else 0
    lost = after is None or not torch.allclose(after, before, rtol=0.05, atol=1e-3 * before.abs().max().item())
    print("BUG: the gradient to the layer's input is lost after packing" if lost else "the gradient survives packing")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

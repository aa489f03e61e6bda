"""A CPU stand-in for CUDA's device errors: tensors made on the default device meet the model's tensors.

On a GPU runtime the model's weights live on `cuda` while `torch.randn(...)`, `torch.tensor(...)` or a tokenizer's
`return_tensors="pt"` still make tensors on the CPU; an operation that mixes the two fails with "Expected all tensors
to be on the same device". On a machine without a GPU both sit on the CPU and nothing fails, so such cells pass CI and
break on Colab. torch's `meta` device is no stand-in either: `F.linear` and `F.embedding` mix meta and CPU tensors
without a word.

`DeviceCheck` is a `TorchFunctionMode` that keeps track of two kinds of tensor while everything runs on the CPU:
- *host* tensors: made without a `device=` by a factory (`torch.randn`, `torch.tensor`, `torch.zeros`, ...) called
  from a notebook cell or a file of this repository, directly or through a library's constructor or tokenizer (so a
  tokenizer's ids and the weights of a model built in code, like `tiny_mistral()`, count); made with `device=x.device`
  of a host x; and everything computed from them alone;
- *model* tensors: parameters that were placed (`.to(device)`, `from_pretrained(..., device_map=...)`), and everything
  computed from them. `from_pretrained` without a `device_map` loads onto the CPU on any runtime: a host model. A
  parameter made from a host tensor (`nn.Parameter(torch.empty(...))`, `nn.Linear(...)` in a cell) is a host tensor
  until it is moved.

An operation that takes both (a host tensor with at least one dimension, as CUDA accepts CPU scalars) raises the
error CUDA would raise, naming the line that made the host tensor; so does `param.data = host_tensor` on a model
parameter. `.to(model.device)`, `.cuda()` and `.cpu()` clear the mark (on this CPU they move nothing, but on CUDA they
would), while `.to(x.device)` or `.to(x)` of a host x keeps it; indexing a model tensor with a host index and copying
a host tensor into a model tensor are allowed, as on CUDA. `.numpy()` of a model tensor raises, as it does for a CUDA
tensor: a reference computation calls `.cpu()` first. `model.generate(...)` has its inputs checked and then runs
transformers' own loop unwatched: that loop is CUDA-tested, and watching it costs about a third of its time.

The check is a teacher's tool, not a proof: a tensor that never meets the other kind in a torch call goes unseen, and
a cell that keeps a model on the CPU on purpose says so with `device="cpu"` on what it makes.
"""
import os, sys, traceback

import torch
from torch.overrides import TorchFunctionMode

HOST, MODEL, NONE = "host", "model", (None, None)
FACTORIES = {torch.randn, torch.rand, torch.randint, torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor,
             torch.as_tensor, torch.arange, torch.linspace, torch.randperm, torch.eye, torch.from_numpy}
MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu}
ALLOWED = {torch.Tensor.copy_, torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_select,
           torch.Tensor.data_ptr, torch.Tensor.__repr__, torch.Tensor.__format__}   # CUDA takes a CPU index or source
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # wronai, its scripts and tests
# transformers' BatchEncoding.convert_to_tensors
TOKENIZERS = os.sep + "tokenization_utils"
CELLS = "<ipython-input-"                                                     # IPython's name for a cell's code


_DEVICE = torch._C.TensorBase.device.__get__          # compared with ==: each lookup makes a new method-wrapper
_HOST_DEVICES = {}                                  # id(torch.device) -> (device, mark): devices read off host tensors


def _device_kind(d):
    "A device object read off a host tensor (`x.device` of a host x) makes host tensors too."
    hit = _HOST_DEVICES.get(id(d))
    return hit[1] if hit is not None and hit[0] is d else NONE


class DeviceError(RuntimeError):
    "What CUDA would have raised."


def _where(filename, lineno):
    "`cell:N` for a notebook cell's line, else `file.py:N`."
    return f"{'cell' if filename.startswith(CELLS) else os.path.basename(filename)}:{lineno}"


def _innermost(keep):
    "`_where` of the innermost frame on the stack, outside this file, whose file name `keep` accepts."
    for fr in reversed(traceback.extract_stack()):
        if keep(fr.filename) and not fr.filename.endswith("_device_check.py"): return _where(fr.filename, fr.lineno)
    return "?"


def _user_frame():
    """`file:line` of the notebook cell or repository file that made this tensor without a device, or None.

    The innermost frame outside torch decides: a cell or a file of this repository. Library code counts only while it
    builds something for them: inside an `__init__` (`tiny_mistral()` in a cell makes its weights through transformers'
    and torch.nn's constructors, peft's adapters through its own) or a tokenizer (`return_tensors="pt"`), all without
    a device, so on a GPU runtime on the CPU. Other library code (bitsandbytes quantizing on the CPU, say) has its own
    CUDA path and is left alone."""
    f, library, building = sys._getframe(2), False, False
    while f is not None:
        name = f.f_code.co_filename
        if name.endswith("_device_check.py") or os.sep + "torch" + os.sep in name:
            f = f.f_back; continue
        if name.startswith(REPO) or name.startswith(CELLS):
            if library and not building: return None
            return _where(name, f.f_lineno)
        library = True
        building = building or f.f_code.co_name == "__init__" or TOKENIZERS in name
        f = f.f_back
    return None


def _origin():
    "`file:line` of the innermost notebook cell or repository file on the stack."
    return _innermost(lambda name: name.startswith(REPO) or name.startswith(CELLS))


# type -> is it a Parameter type (isinstance goes through Python here)
_PARAM_TYPES = {}


def _is_param(t):
    tp = type(t)
    r = _PARAM_TYPES.get(tp)
    if r is None: r = _PARAM_TYPES[tp] = issubclass(tp, torch.nn.Parameter)
    return r


def _kind(t):
    "A parameter is the model's unless it was made from a host tensor and never moved."
    k = getattr(t, "_wronai_kind", NONE)
    return (MODEL, None) if k[0] is None and _is_param(t) else k


def _mark(out, kind, params=False):
    if isinstance(out, torch.Tensor):
        if params or not _is_param(out):
            if kind[0] is None and getattr(out, "_wronai_kind", NONE)[0] is None: return   # nothing to mark or to clear
            try: out._wronai_kind = kind
            except Exception: pass
    elif isinstance(out, (list, tuple)):
        for o in out: _mark(o, kind, params)


_DATA = torch._C.TensorBase.data
_DATA_SET = _DATA.__set__


def _get_data(self): return _DATA.__get__(self)


def _set_data(self, new):
    "`param.data = t` (what `module.to(device)` does) gives the parameter t's mark."
    _DATA.__set__(self, new)
    _mark(self, getattr(new, "_wronai_kind", NONE), params=True)


def _target_kind(func, args, kwargs):
    "The mark of what `.to(...)`, `.cuda()` or `.cpu()` returns: placed, unless it goes to a host tensor or device."
    if func is not torch.Tensor.to: return NONE
    like = kwargs.get("other", next((a for a in args[1:] if isinstance(a, torch.Tensor)), None))
    if like is not None: return _kind(like)                                    # .to(other): other's device
    dev = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device, int))), None))
    return _kind(args[0]) if dev is None else _device_kind(dev)                # .to(dtype) alone moves nothing


class DeviceCheck(TorchFunctionMode):
    "Raise, on a CPU, where a tensor made on the default device meets a model's tensors (module docstring)."
    def __enter__(self):
        "Also follow marks into parameters: `nn.Parameter(t)` and `param.data = t` take t's mark, `module.to(d)` d's."
        P, new = torch.nn.Parameter, torch.nn.Parameter.__new__
        def param_new(cls, data=None, requires_grad=True):
            p = new(cls, data, requires_grad)
            _mark(p, getattr(data, "_wronai_kind", NONE), params=True)
            return p
        M, module_to = torch.nn.Module, torch.nn.Module.to
        # Module.to parses its device anew: follow a host device by hand
        def to(mod, *args, **kwargs):
            kind = _device_kind(kwargs.get("device", args[0] if args else None))
            out = module_to(mod, *args, **kwargs)
            if kind[0] == HOST:
                for t in [*mod.parameters(), *mod.buffers()]: _mark(t, kind, params=True)
            return out
        from transformers.generation.utils import GenerationMixin
        G, generate = GenerationMixin, GenerationMixin.generate
        # its inputs checked, then transformers' own (CUDA-tested) loop
        def checked_generate(model, *args, **kwargs):
            params = next(model.parameters(), None)
            for t in [*args, *kwargs.values()]:
                if isinstance(t, torch.Tensor) and params is not None: self._check(None, (t, params), {},
                                                                                   name="generate")
            if torch.overrides._get_current_function_mode() is not self: return generate(model, *args, **kwargs)
            with torch.overrides._pop_mode_temporarily(): return generate(model, *args, **kwargs)
        from transformers import PreTrainedModel as PM
        loader = PM.__dict__["from_pretrained"]
        # no device_map: transformers loads onto the CPU, a host model
        def from_pretrained(cls, *args, **kwargs):
            model = loader.__func__(cls, *args, **kwargs)
            if kwargs.get("device_map") is None:
                kind = (HOST, _origin())
                for t in [*model.parameters(), *model.buffers()]: _mark(t, kind, params=True)
            return model
        self._undo = [(P, "__new__", P.__dict__["__new__"]), (P, "data", P.__dict__.get("data")), (M, "to", module_to),
                      (G, "generate", generate), (PM, "from_pretrained", loader)]
        P.__new__, P.data, M.to, G.generate = param_new, property(_get_data, _set_data), to, checked_generate
        PM.from_pretrained = classmethod(from_pretrained)
        return super().__enter__()

    def __exit__(self, *exc):
        for cls, name, old in self._undo:
            if old is None: delattr(cls, name)
            else: setattr(cls, name, old)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            out = func(*args, **kwargs)
            if kwargs.get("device") is None and isinstance(out, torch.Tensor):
                where = _user_frame()
                if where is not None: _mark(out, (HOST, where))
            elif isinstance(out, torch.Tensor): _mark(out, _device_kind(kwargs.get("device")))
            return out
        if func == _DEVICE:                                     # x.device of a host x: remember the object
            out = func(*args, **kwargs)
            k = _kind(args[0])
            if k[0] == HOST: _HOST_DEVICES[id(out)] = (out, k)
            return out
        if func in MOVES:
            out = func(*args, **kwargs)
            _mark(out, _target_kind(func, args, kwargs), params=True)
            return out
        if func == _DATA_SET:                               # param.data = t: on CUDA the parameter moves to t's device
            kp, kn = _kind(args[0]), _kind(args[1])
            # its own data again
            same = args[0].numel() and args[1].numel() and args[0].data_ptr() == args[1].data_ptr()
            if kp[0] == MODEL and kn[0] == HOST and args[1].dim() > 0 and not same:
                self._fail(f"a model parameter is given the data of a tensor made without device= at {kn[1]}, in "
                           f"{_caller()}: on CUDA the parameter would move to the cpu and the next forward fail")
            return func(*args, **kwargs)
        host, model = self._check(func, args, kwargs)
        out = func(*args, **kwargs)
        if model: _mark(out, model)
        elif host: _mark(out, host)
        return out

    def _check(self, func, args, kwargs, name=None):
        "Raise where `func` mixes a host tensor with a model's; else the marks `(host, model)` its inputs carry."
        host = model = None
        for a in (*args, *kwargs.values()) if kwargs else args:
            for t in (a if type(a) in (list, tuple) else (a,)):
                if not isinstance(t, torch.Tensor): continue
                k = _kind(t)
                if k[0] is MODEL: model = k
                elif k[0] is HOST and host is None and t.dim() > 0: host = k
        if func is torch.Tensor.numpy and model is not None:
            self._fail(f"can't convert a model tensor (cuda on a GPU) to numpy: call .cpu() first, in {_caller()}")
        if host and model and func not in ALLOWED:
            self._fail("Expected all tensors to be on the same device: "
                       f"{name or getattr(func, '__name__', func)} in {_caller()} "
                       "mixes the model's tensors with a tensor made without device= at "
                       f"{host[1]} (on CUDA the model's "
                       f"tensors are on cuda and that one on cpu; move it with .to(model.device))")
        return host, model

    def _fail(self, msg):
        raise DeviceError(f"[wronai device check] {msg}")


def _caller():
    "The innermost frame outside torch: where the mixing call was made."
    return _innermost(lambda name: "torch" + os.sep not in name)

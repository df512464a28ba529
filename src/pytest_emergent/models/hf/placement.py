"""Where a local model runs and in which precision: `--em-device`, `--em-dtype`.

- Device: ``auto`` is the first CUDA GPU when torch sees one, else the CPU; ``cuda:N`` names
  one (an error naming the option when it is absent).
- Precision: ``auto`` is bfloat16 only where the hardware multiplies bf16 natively (a
  bf16-capable GPU; on CPU, AMX tiles or AVX512-BF16, as torch reports them), else float32.
  On a CPU without them bf16 matmul is emulated and measured ~300x slower than fp32, so an
  explicit ``bfloat16`` there is refused with an error rather than run.

`place` moves the model and, off the CPU or below fp32, wraps its forward so callers keep
their CPU-side code: inputs are moved to the model's device and logits / hidden states come
back as float32 CPU tensors. The key/value cache stays on the device. `unwrapped` turns the
wrapping off for code that handles devices itself: the decode loop, which samples on the
device, and the benchmark's peers, written as a user would. `outputs_on_device` keeps moving
the inputs but leaves logits and hidden states where they were made, in the model's dtype:
the judges' readouts reduce them there (log-softmax, gathers, a mean) and copy back only the
few numbers they keep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pytest_emergent.errors import ModelSpecError

DEVICES_HELP = "auto, cpu, cuda or cuda:N"
DTYPES = ("auto", "float32", "bfloat16")
#: buffers of a rotary embedding that `place` keeps in the precision they were built in
ROTARY_CONSTANTS = frozenset({"inv_freq", "original_inv_freq"})
#: a model attribute that, while True, makes `place`'s wrapping pass everything through
_RAW = "_pytest_emergent_unwrapped"
#: ...and one that, while True, makes it leave the outputs on the device (inputs still move)
_OUTPUTS_STAY = "_pytest_emergent_outputs_stay"


def native_bf16(device: Any) -> bool:
    """Whether `device` multiplies bf16 natively (never guessed from the CPU's name)."""
    import torch

    if device.type == "cuda":
        # compute capability 8 (Ampere) or later, on the GPU named; torch's own
        # `is_bf16_supported()` asks the current GPU and also says yes where bf16 is emulated
        if torch.version.hip:
            return True
        index = torch.cuda.current_device() if device.index is None else device.index
        return int(torch.cuda.get_device_properties(index).major) >= 8
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def pick_device(requested: str, option: str = "--em-device") -> Any:
    import torch

    text = (requested or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise ModelSpecError(f"{option}: {requested!r} is not a device; expected "
                                 f"{DEVICES_HELP}")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (index and int(index) >= count):
            raise ModelSpecError(
                f"{option} {requested}: torch sees {count} CUDA device(s) (torch "
                f"{torch.__version__}); use --em-device cpu or auto, or install a CUDA build")
        return torch.device(text)
    raise ModelSpecError(f"{option}: {requested!r} is not a device; expected {DEVICES_HELP}")


def pick_dtype(requested: str, device: Any, option: str = "--em-dtype") -> Any:
    import torch

    text = (requested or "auto").strip().lower()
    if text not in DTYPES:
        raise ModelSpecError(f"{option}: {requested!r} is not a dtype; expected "
                             f"{', '.join(DTYPES)}")
    if text == "float32":
        return torch.float32
    native = native_bf16(device)
    if text == "auto":
        return torch.bfloat16 if native else torch.float32
    if not native:
        raise ModelSpecError(
            f"{option} bfloat16: this {device.type.upper()} has no native bf16 matrix "
            "multiply (no AMX or AVX512-BF16 reported by torch), where bf16 runs far slower "
            "than float32 (~300x measured); use --em-dtype auto (float32 here) or float32")
    return torch.bfloat16


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def place(model: Any, device: Any, dtype: Any) -> Any:
    """`model` on `device` in `dtype`; see the module docstring for the forward wrapping.

    The rotary embedding's frequencies (`inv_freq`, `original_inv_freq`) keep the precision
    the model was built with, as transformers' own bf16 loading keeps them: rounded to bf16
    they were off by up to 0.37 %, over a radian of phase for some by position 4,000. Other
    buffers follow the dtype (a sinusoidal position table is added to the hidden states,
    which must then stay bf16)."""
    import torch

    constants = [(module, name, buffer) for module in model.modules()
                 for name, buffer in module._buffers.items()
                 if name in ROTARY_CONSTANTS and buffer is not None
                 and buffer.is_floating_point()]
    model = model.to(device=device, dtype=dtype)
    for module, name, buffer in constants:
        module._buffers[name] = buffer.to(device)
    if device.type == "cpu" and dtype == torch.float32:
        return model

    def to_device(value: Any) -> Any:
        return value.to(device) if isinstance(value, torch.Tensor) else value

    def inputs(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if getattr(module, _RAW, False):
            return None
        return tuple(to_device(a) for a in args), {k: to_device(v) for k, v in kwargs.items()}

    def outputs(module: Any, _args: Any, _kwargs: Any, out: Any) -> Any:
        if getattr(module, _RAW, False) or getattr(module, _OUTPUTS_STAY, False):
            return None
        if getattr(out, "logits", None) is not None:
            out.logits = out.logits.float().cpu()
        if getattr(out, "hidden_states", None) is not None:
            out.hidden_states = tuple(h.float().cpu() for h in out.hidden_states)
        return out

    model.register_forward_pre_hook(inputs, with_kwargs=True)
    model.register_forward_hook(outputs, with_kwargs=True)
    return model


@contextmanager
def unwrapped(model: Any) -> Iterator[Any]:
    """`model` with `place`'s wrapping off: inputs must be on its device already, and
    logits and hidden states stay there, in its dtype (a no-op where nothing was wrapped)."""
    with _flagged(model, _RAW):
        yield model


@contextmanager
def outputs_on_device(model: Any) -> Iterator[Any]:
    """`model` whose wrapping still moves inputs to its device but leaves logits and hidden
    states there, in its dtype (a no-op where nothing was wrapped): callers reduce them on
    the device and copy back only what they keep."""
    with _flagged(model, _OUTPUTS_STAY):
        yield model


@contextmanager
def _flagged(model: Any, flag: str) -> Iterator[None]:
    # a peft model calls the placed model inside it, whose hooks read the flag there
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    targets = [model] if inner is model else [model, inner]
    before = [getattr(m, flag, False) for m in targets]
    for m in targets:
        setattr(m, flag, True)
    try:
        yield
    finally:
        for m, was in zip(targets, before, strict=True):
            setattr(m, flag, was)

"""Forward hooks on a decoder's layers that edit the residual stream along directions.

A layer's output hidden state `h` (the residual stream after layer `i`) is changed by

- `ablate`: `h - (h . u) u` for the unit vector `u` of the layer's direction (the component
  along the direction is removed at every position);
- `add`: `h + scale * v` for the layer's direction `v` as given (steering).

Used at inference by `SteeredBackend` and during training only by concept-ablation
fine-tuning. torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pytest_emergent.errors import EmergentError

MODES = ("ablate", "add")


def decoder_layers(model: Any) -> Any:
    """The `ModuleList` of decoder layers of a causal LM, peft-wrapped or not."""
    core = model
    for _ in range(4):  # PeftModel -> LoraModel -> CausalLM
        inner = getattr(core, "get_base_model", None)
        if inner is None:
            break
        unwrapped = inner()
        if unwrapped is core:
            break
        core = unwrapped
    decoder = core.get_decoder() if hasattr(core, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        import torch

        # fall back to the longest ModuleList named "...layers" (or "...h" as in GPT-2)
        candidates = [
            module for name, module in core.named_modules()
            if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h")
        ]
        layers = max(candidates, key=len) if candidates else None
    if layers is None or len(layers) == 0:
        raise EmergentError(f"cannot find the decoder layers of {type(core).__name__}")
    return layers


def _edit(mode: str, vector: Any, scale: float) -> Callable[[Any], Any]:
    import torch

    if mode == "ablate":
        unit = vector / vector.norm().clamp_min(torch.finfo(vector.dtype).tiny)

        def ablate(hidden: Any) -> Any:
            # the projection in float32 (unit is): in bf16 a share of the direction stayed
            exact = hidden.float()
            return (exact - (exact @ unit)[..., None] * unit).to(hidden.dtype)

        return ablate
    if mode == "add":

        def add(hidden: Any) -> Any:
            return hidden + scale * vector.to(hidden.dtype)

        return add
    raise ValueError(f"unknown direction mode {mode!r}; choose one of: {', '.join(MODES)}")


def _hook(edit: Callable[[Any], Any]) -> Callable[..., Any]:
    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        # decoder layers return a tensor (transformers >= 4.56) or a tuple led by it
        if isinstance(output, tuple):
            return (edit(output[0]), *output[1:])
        return edit(output)

    return hook


@contextmanager
def edited_residual(
    model: Any,
    vectors: Mapping[int, Sequence[float] | Any],
    *,
    mode: str,
    scale: float = 1.0,
) -> Iterator[list[Any]]:
    """While inside, layer `i`'s output is edited along `vectors[i]` (see module docstring).

    Yields the hook handles; they are removed on exit, even after an error.
    """
    handles = register(model, vectors, mode=mode, scale=scale)
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def register(
    model: Any,
    vectors: Mapping[int, Sequence[float] | Any],
    *,
    mode: str,
    scale: float = 1.0,
) -> list[Any]:
    """Register the editing hooks and return their handles (call `.remove()` on each)."""
    import torch

    if mode not in MODES:
        raise ValueError(f"unknown direction mode {mode!r}; choose one of: {', '.join(MODES)}")
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    handles = []
    try:
        for index, raw in sorted(vectors.items()):
            if not 0 <= index < len(layers):
                raise EmergentError(
                    f"direction layer {index} out of range for a model with {len(layers)} "
                    f"layers (0..{len(layers) - 1})"
                )
            vector = torch.as_tensor(raw, dtype=torch.float32, device=device)
            handles.append(layers[index].register_forward_hook(_hook(_edit(mode, vector,
                                                                           scale))))
    except Exception:
        for handle in handles:
            handle.remove()
        raise
    return handles

"""The decode loop's key/value cache, grown in preallocated buffers, and its memory budget.

transformers' `DynamicCache` appends each step's keys and values with `torch.cat`, which
copies the whole cache of every layer at every step: at batch 64 and ~130 cached tokens that
copy was a third of a decode step on 2 CPU cores. `BufferedLayer` writes each step into spare
room at the end of a buffer and hands attention a view of the filled part; it copies only
when the buffer is full (every `GROWTH` steps) or after the batch shrank. The values are the
same as with `torch.cat`, so the sampled tokens are too (tested).

`rows_that_fit` caps a generation batch so that its caches and logits take at most
`MEMORY_SHARE` of the memory free on the model's device.

Imported lazily: it needs torch and transformers.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from pytest_emergent._io import proc_bytes

#: spare token slots added whenever a buffer is (re)allocated
GROWTH = 64
#: share of the device's free memory one generation batch may take
MEMORY_SHARE = 0.5


class BufferedLayer(DynamicLayer):  # type: ignore[misc, unused-ignore]
    """`DynamicLayer` whose `keys`/`values` are views into larger buffers."""

    _buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def _has_room(self, filled: int, new: int) -> bool:
        if self._buffers is None or filled == 0:
            return False
        keys, view = self._buffers[0], self.keys
        # `crop` and `batch_select_indices` replace the views: then the buffer is stale
        return (view is not None and filled + new <= keys.shape[-2]
                and view.data_ptr() == keys.data_ptr() and view.shape[:-2] == keys.shape[:-2])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled, new = self.get_seq_length(), key_states.shape[-2]
        if not self._has_room(filled, new):
            shape = (*key_states.shape[:-2], filled + new + GROWTH, key_states.shape[-1])
            keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
            if filled and self.keys is not None and self.values is not None:
                keys[..., :filled, :] = self.keys
                values[..., :filled, :] = self.values
            self._buffers = (keys, values)
        keys, values = self._buffers  # type: ignore[misc]
        keys[..., filled : filled + new, :] = key_states
        values[..., filled : filled + new, :] = value_states
        self.keys = keys[..., : filled + new, :]
        self.values = values[..., : filled + new, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices`, spare room included (rows leave the batch as they finish).

        Where most rows stay in place (`compaction` orders them so), only the moved rows are
        copied and the buffers are narrowed to the first `len(indices)` rows."""
        filled = self.get_seq_length()
        if not self._has_room(filled, 0):
            super().batch_select_indices(indices)
            return
        keys, values = self._buffers  # type: ignore[misc]
        rows = len(indices)
        indices = indices.to(keys.device)
        moved = (indices != torch.arange(rows, device=keys.device)).nonzero()[:, 0]
        if rows <= keys.shape[0] and 2 * len(moved) < rows:
            sources = indices[moved]
            keys[moved] = keys[sources]  # the right-hand sides are gathered copies
            values[moved] = values[sources]
            self._buffers = (keys[:rows], values[:rows])
        else:
            self._buffers = (keys[indices], values[indices])
        self.keys = self._buffers[0][..., :filled, :]
        self.values = self._buffers[1][..., :filled, :]

    def reset(self) -> None:
        self._buffers = None
        super().reset()


def compaction(keep: list[int]) -> list[int]:
    """The new batch order when only rows `keep` (ascending) stay: the first
    `len(keep)` positions, each kept row in its own place and the kept rows from the tail
    moved into the places of rows that left, so a buffered cache copies only those."""
    count, kept = len(keep), set(keep)
    holes = [i for i in range(count) if i not in kept]
    order = list(range(count))
    for hole, source in zip(holes, [k for k in keep if k >= count], strict=True):
        order[hole] = source
    return order


def buffered_cache(config: Any) -> Any:
    """A `DynamicCache` for `config` whose full-attention layers are `BufferedLayer`s
    (sliding-window and other special layers are left as transformers builds them)."""
    cache = DynamicCache(config=config)
    cache.layers = [BufferedLayer() if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


def free_memory(device: Any) -> int | None:
    """Bytes free on `device`: on a GPU, CUDA's count plus what torch's allocator holds
    unused (CUDA counts that as taken, so each later batch would be sized smaller); else
    MemAvailable of /proc/meminfo (None where neither is known)."""
    if getattr(device, "type", "cpu") == "cuda":
        held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + max(0, int(held))
    if getattr(device, "type", "cpu") != "cpu":
        return None
    available = proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def text_config(config: Any) -> Any:
    """The language model's part of `config` (itself where it has no sub-configs)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def bytes_per_row(config: Any, tokens: int, element_size: int) -> int | None:
    """Peak bytes one decode row holds for `tokens` cached tokens: keys and values of every
    layer (twice, while a full buffer is copied into a larger one) and four float32 copies of
    its logits. None when the config does not say its shape."""
    text = text_config(config)
    layers = getattr(text, "num_hidden_layers", None)
    heads = getattr(text, "num_attention_heads", None)
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    hidden = getattr(text, "hidden_size", None)
    head_dim = getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None)
    vocab = getattr(text, "vocab_size", None)
    if not (layers and kv_heads and head_dim and vocab):
        return None
    per_token = 2 * int(layers) * int(kv_heads) * int(head_dim) * element_size
    return 2 * per_token * (tokens + GROWTH) + 4 * 4 * int(vocab)


def rows_that_fit(model: Any, tokens: int, wanted: int) -> int:
    """`wanted`, lowered (to at least 1) where that many rows of `tokens` cached tokens would
    take more than `MEMORY_SHARE` of the free memory of `model`'s device."""
    try:
        weight = next(model.parameters())
    except (StopIteration, AttributeError, TypeError):
        return wanted
    per_row = bytes_per_row(model.config, tokens, weight.element_size())
    free = free_memory(weight.device)
    if not per_row or free is None:
        return wanted
    return max(1, min(wanted, int(free * MEMORY_SHARE) // per_row))

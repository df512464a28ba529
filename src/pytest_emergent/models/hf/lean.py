"""A lean decode step for Llama and Qwen2 models on the CPU in float32: fused, prepacked
matrix products.

At batch 64 a decode step of the embedded model spent ~70 % of its time in matrix products,
and the per-call weight layout of `torch.nn.functional.linear` left much of the CPU unused:
oneDNN's prepacked weights (`torch.ops.mkldnn._reorder_linear_weight`) ran the vocabulary
projection 1.6-1.8x faster and the fused gate/up projection ~1.2x faster at 56-64 rows on a
2-core AMD EPYC (benchmarks/README.md). `LeanDecoder.step` is the same arithmetic as the
model's own forward for one new token per row, with the query/key/value projections and the
gate/up projections each fused into one product over packed weights, the grouped-query
attention done as two batched products, and the model's own norms, rotary embedding and
activation modules. Prefill and scoring keep the model's forward.

It is used only where it is the same computation (`unsupported` says why not otherwise): a
`LlamaForCausalLM` or `Qwen2ForCausalLM` of plain modules (no adapter layers, no hooks on
any module, so steering and ablation hooks always run), full attention in every layer, on
the CPU in float32. The packed weights are copies: `LeanDecoder.current` notices a changed
weight (its tensor or its version counter), and the backend packs again.

Imported lazily: it needs torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from pytest_emergent.models.hf.kv_buffer import text_config

#: model classes whose decoder layers `LeanDecoder.step` reproduces
SUPPORTED = {
    "LlamaForCausalLM": ("LlamaDecoderLayer", "LlamaAttention", "LlamaMLP"),
    "Qwen2ForCausalLM": ("Qwen2DecoderLayer", "Qwen2Attention", "Qwen2MLP"),
}
#: rows the packed layout is chosen for (the backend's default batch)
PACK_ROWS = 64


def _has_hooks(model: Any) -> bool:
    """Whether any forward hook could change or watch a pass, other than the output-capturing
    hooks transformers installs on first use of `output_hidden_states` (they do nothing
    outside one of its own forward calls)."""
    from torch.nn.modules import module as nn_module

    def active(hooks: Any) -> bool:
        return any(getattr(h, "__module__", "") != _CAPTURING for h in hooks.values())

    if any(active(getattr(nn_module, name, {})) for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks")):
        return True
    return any(active(m._forward_hooks) or active(m._forward_pre_hooks)
               for m in model.modules())


#: the module of transformers' output-capturing hooks (inactive outside its forward calls)
_CAPTURING = "transformers.utils.output_capturing"


def unsupported(model: Any) -> str | None:
    """Why the lean step cannot stand in for `model`'s forward, or None when it can."""
    names = SUPPORTED.get(type(model).__name__)
    if names is None:
        return f"model class {type(model).__name__} (lean decode knows {sorted(SUPPORTED)})"
    layer_cls, attn_cls, mlp_cls = names
    weight = next(model.parameters())
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return f"weights in {weight.dtype} on {weight.device} (lean decode: float32 on cpu)"
    if model.training:
        return "the model is in training mode"
    if _has_hooks(model):
        return "a module has forward hooks (steering, ablation or measuring)"
    text = text_config(model.config)
    if any(t != "full_attention" for t in getattr(text, "layer_types", None) or ()):
        return "a layer uses sliding-window attention"
    linear = torch.nn.Linear
    for layer in model.model.layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if (type(layer).__name__, type(attn).__name__, type(mlp).__name__) != names:
            return f"a decoder layer is not {layer_cls}/{attn_cls}/{mlp_cls}"
        parts = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        parts += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if any(type(p) is not linear for p in parts):
            return "a projection is not a plain nn.Linear (an adapter layer?)"
    if type(model.lm_head) is not linear:
        return "the output projection is not a plain nn.Linear"
    return None


class Packed:
    """One linear map `x @ weight.T + bias` over a weight packed for oneDNN where torch has
    it (else the plain weight through `F.linear`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.bias = None if bias is None else bias.detach().contiguous()
        self.in_features = int(weight.shape[1])
        self.weight = weight.detach().contiguous()
        self.packed: torch.Tensor | None = None
        if torch.backends.mkldnn.is_available():
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, PACK_ROWS)
                self.weight = torch.empty(0)  # the packed copy is all that is kept
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _fused(modules: list[Any]) -> Packed:
    weight = torch.cat([m.weight for m in modules])
    if all(m.bias is None for m in modules):
        return Packed(weight, None)
    bias = torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.weight.shape[0])
                      for m in modules])
    return Packed(weight, bias)


class _Layer(NamedTuple):
    norm1: Any
    qkv: Packed
    out: Packed
    norm2: Any
    gate_up: Packed
    down: Packed
    act: Any
    scale: float
    inner: int


#: attention of one layer: (layer index, q, k, v, scale) -> mixed values (n, heads * dim);
#: q, k and v are the fused projection's parts, (n, heads * dim) and (n, kv_heads * dim)
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class LeanDecoder:
    """The packed weights of one model and its decode step (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        text = text_config(model.config)
        self.heads = int(text.num_attention_heads)
        self.kv_heads = int(getattr(text, "num_key_value_heads", None) or self.heads)
        self.params = [(p, p.data_ptr(), p._version) for p in model.parameters()]
        self.layers: list[_Layer] = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(_Layer(
                layer.input_layernorm, _fused([attn.q_proj, attn.k_proj, attn.v_proj]),
                Packed(attn.o_proj.weight, attn.o_proj.bias), layer.post_attention_layernorm,
                _fused([mlp.gate_proj, mlp.up_proj]),
                Packed(mlp.down_proj.weight, mlp.down_proj.bias), mlp.act_fn,
                float(attn.scaling), int(mlp.gate_proj.weight.shape[0])))
        #: one head width for every layer, as in the supported configs
        self.dim = int(model.model.layers[0].self_attn.head_dim)
        self.lm_head = Packed(model.lm_head.weight, model.lm_head.bias)

    def current(self, model: Any) -> bool:
        """Whether this was packed from `model` as its weights are now."""
        return model is self.model and all(
            p.data_ptr() == ptr and p._version == version for p, ptr, version in self.params)

    def _run(self, x: torch.Tensor, attend: Attend,
             layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The decoder layers over `x` (n, hidden) with `attend` as the attention: the final
        norm's output, and what the model reports as `hidden_states[layer]` (or None)."""
        hidden = x if layer == 0 else None
        q_end = self.heads * self.dim
        k_end = q_end + self.kv_heads * self.dim
        for index, lay in enumerate(self.layers):
            fused = lay.qkv(lay.norm1(x))
            mixed = attend(index, fused[:, :q_end], fused[:, q_end:k_end], fused[:, k_end:],
                           lay.scale)
            x = x + lay.out(mixed)
            both = lay.gate_up(lay.norm2(x))
            x = x + lay.down(lay.act(both[:, :lay.inner]) * both[:, lay.inner:])
            if layer == index + 1:
                hidden = x
        normed = self.model.model.norm(x)
        if layer is not None and layer >= len(self.layers):
            hidden = normed
        return normed, hidden

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             cache: Any) -> torch.Tensor:
        """Next-token logits (rows, vocab) for one new token per row; `mask` (rows, cached +
        1) is 1 for real and 0 for padded slots; the new keys and values go into `cache`.
        Attention is two batched products per layer, the grouped queries of one key/value
        head side by side (SDPA measured slower at one query per row)."""
        base = self.model.model
        rows, dim, kv_heads = tokens.shape[0], self.dim, self.kv_heads
        group = self.heads // kv_heads
        x = base.embed_tokens(tokens[:, None])
        cos, sin = base.rotary_emb(x, positions[:, None])
        cos, sin = cos[:, None], sin[:, None]  # (rows, 1, 1, head_dim)
        bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill_(mask == 0, float("-inf"))
        bias = bias[:, None, None, :]

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   scale: float) -> torch.Tensor:
            q = _rotate(q.view(rows, kv_heads, group, dim), cos, sin)
            k = _rotate(k.view(rows, kv_heads, 1, dim), cos, sin)
            keys, values = cache.layers[index].update(k, v.view(rows, kv_heads, 1, dim))
            weights = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) * scale + bias, -1)
            return torch.matmul(weights, values).reshape(rows, self.heads * dim)

        normed, _ = self._run(x[:, 0], attend)
        return self.lm_head(normed).float()

    def extend(self, tokens: list[int], cache: Any, *, keep: int,
               layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One row's next `tokens` after the `cache`d ones (causal, no padding): the logits
        of its last `keep` positions (keep, vocab), and, for `layer`, what the model reports
        as `hidden_states[layer]` at every new position (tokens, hidden), else None."""
        base = self.model.model
        count, past, dim = len(tokens), cache.get_seq_length(), self.dim
        x = base.embed_tokens(torch.tensor([tokens]))
        cos, sin = base.rotary_emb(x, torch.arange(past, past + count)[None])
        cos, sin = cos[:, None], sin[:, None]  # (1, 1, tokens, head_dim)
        allowed = torch.ones(count, past + count, dtype=torch.bool).tril(diagonal=past)

        def heads(t: torch.Tensor) -> torch.Tensor:  # (count, h * dim) -> (1, h, count, dim)
            return t.reshape(count, -1, dim).transpose(0, 1)[None]

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   scale: float) -> torch.Tensor:
            keys, values = cache.layers[index].update(_rotate(heads(k), cos, sin), heads(v))
            mixed = F.scaled_dot_product_attention(
                _rotate(heads(q), cos, sin), keys, values, attn_mask=allowed, scale=scale,
                enable_gqa=True)
            return mixed[0].transpose(0, 1).reshape(count, self.heads * dim)

        normed, hidden = self._run(x[0], attend, layer)
        return self.lm_head(normed[count - keep:]).float(), hidden


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

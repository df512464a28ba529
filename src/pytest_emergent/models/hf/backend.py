"""The local transformers backend: batched seeded sampling and exact candidate scoring.

Sampling uses its own decode loop rather than `model.generate`, because each row needs its
own random generator: a request's answer is a function of its messages, temperature,
max_tokens and seed only, not of which other requests share its batch. (Up to float rounding:
a padded row goes through differently-shaped matrix products, which can change the last bits
of a logit and, very rarely, flip a near tie between two tokens.)

The model runs in eval mode under `torch.inference_mode()`, in the precision and on the
device `models/hf/placement.py` gave it (float32 on the CPU by default). The decode loop runs
the forward unwrapped (`placement.unwrapped`): its tensors live on the model's device and the
sampler runs there too, so a GPU sends back the chosen token ids, not a batch of logits over
the whole vocabulary at every step. The prefill runs the model's forward; the decode steps run
`models/hf/lean.py` where it applies (a plain Llama or Qwen2, float32, CPU, no hooks), else
the model's forward too. Scoring lives in `models/hf/scoring.py` (its logits arrive as
float32 CPU tensors, through the placement wrapper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_emergent.errors import BackendError, ModelSpecError
from pytest_emergent.models.base import (
    CandidateProbs,
    Messages,
    SampleRequest,
    ScoreRequest,
    as_dicts,
)

_SEED_MASK = (1 << 64) - 1
_SENTINEL = "\u2063pytest-emergent-sentinel\u2063"


class HFBackend:
    """A transformers causal LM with a chat template, run in-process.

    Build it through `registry.resolve`; the constructor takes an already loaded model and
    tokenizer (which is also how tests wrap tiny random models).
    """

    is_local = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str,
        fingerprint: str,
        batch_size: int = 64,
        weights_fingerprint: str | None = None,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ModelSpecError(
                f"model {spec!r}: its tokenizer has no chat template; the evaluation sends "
                "chat conversations, so it needs a chat (instruct) model. Add a "
                "chat_template.jinja to the model directory if the model has a chat format."
            )
        self.spec = spec
        self.fingerprint = fingerprint
        #: the weights' own fingerprint, whatever precision they run in (`fingerprint` adds a
        #: dtype other than float32): what heads fitted on the model are looked up by
        self.weights_fingerprint = weights_fingerprint or fingerprint
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        #: rows decoded together at most (fewer where they would not fit in memory, see
        #: `kv_buffer.rows_that_fit`); raise it for throughput
        self.batch_size = batch_size
        self.stop_ids: frozenset[int] = _stop_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = min(self.stop_ids) if self.stop_ids else 0
        self.pad_id = int(pad)
        #: the forward() keyword for the KV cache ("cache" since transformers 5.x)
        self.cache_kw = cache_keyword(model)
        #: decode with `models/hf/lean.py` where it applies (False: always the model's forward)
        self.lean_decode = True
        self._lean: Any = None
        self._scorer: Any = None
        model.eval()

    # -- prompts ---------------------------------------------------------------------------

    def render_prompt(self, messages: Messages) -> str:
        """The chat-template text for `messages` (system included), ready for the reply."""
        try:
            return str(
                self.tokenizer.apply_chat_template(
                    as_dicts(messages), add_generation_prompt=True, tokenize=False
                )
            )
        except Exception as exc:
            raise BackendError(
                f"model {self.spec!r}: its chat template rejected the conversation "
                f"(roles {[role for role, _ in messages]}): {exc}"
            ) from exc

    def encode(self, text: str) -> list[int]:
        """Token ids of already-templated text (the template supplies special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- sampling --------------------------------------------------------------------------

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        """Sample one answer per request, in order (see the module docstring on seeding)."""
        return [
            str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()
            for ids in self.generate_ids(requests)
        ]

    def generate_ids(self, requests: Sequence[SampleRequest]) -> list[list[int]]:
        """The sampled token ids per request, without the stop token."""
        import torch

        from pytest_emergent.models.hf.kv_buffer import rows_that_fit

        prompts = [self.encode(self.render_prompt(r.messages)) for r in requests]
        out: list[list[int]] = [[] for _ in requests]
        # length bucketing: sorted by prompt length, so a batch pads little; equal prompts
        # become neighbours, so a batch holds each distinct prompt few times
        order = sorted(range(len(requests)), key=lambda i: (len(prompts[i]), prompts[i], i))
        order = [i for i in order if requests[i].max_tokens > 0]
        # batches sized to memory: at most batch_size rows, fewer where the longest row's
        # cache would not fit
        longest = max((len(prompts[i]) + requests[i].max_tokens for i in order), default=1)
        size = rows_that_fit(self.model, longest, max(1, int(self.batch_size)))
        try:
            with torch.inference_mode():
                for start in range(0, len(order), size):
                    chunk = order[start : start + size]
                    ids = self._decode_batch(
                        [prompts[i] for i in chunk], [requests[i] for i in chunk]
                    )
                    for i, row in zip(chunk, ids, strict=True):
                        out[i] = row
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"model {self.spec!r}: generation failed: {exc}") from exc
        return out

    def _decode_batch(
        self, prompts: list[list[int]], requests: list[SampleRequest]
    ) -> list[list[int]]:
        """One left-padded batch through the KV-cached decode loop, on the model's device and
        unwrapped (`placement.unwrapped`): its logits stay there and are sampled there."""
        from pytest_emergent.models.hf.placement import unwrapped

        with unwrapped(self.model):
            return self._decode_unwrapped(prompts, requests)

    def _decode_unwrapped(
        self, prompts: list[list[int]], requests: list[SampleRequest]
    ) -> list[list[int]]:
        import torch

        from pytest_emergent.models.hf.kv_buffer import buffered_cache, compaction

        device = next(self.model.parameters()).device
        n = len(prompts)
        # the samples of one question share their prompt: prefill each distinct prompt once
        # and give every row a copy of its key/value cache
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        width = max(len(p) for p in distinct)
        input_ids = torch.full((len(distinct), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(distinct), width), dtype=torch.long)
        for row, prompt in enumerate(distinct):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        # positions count real tokens only, so a padded row sees the same positions as alone
        positions = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        input_ids, mask = input_ids.to(device), mask.to(device)
        generators = [torch.Generator().manual_seed(r.seed & _SEED_MASK) for r in requests]
        temps = [float(r.temperature) for r in requests]
        limits = [int(r.max_tokens) for r in requests]
        tokens: list[list[int]] = [[] for _ in range(n)]
        cache = buffered_cache(self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_kw: cache},
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        if len(distinct) < n:
            index = torch.tensor(source, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            logits, mask, positions = logits[index], mask[index], positions[index]
        active = list(range(n))  # batch row -> request row
        next_pos = positions[:, -1] + 1
        lean = self.lean_decoder()
        while True:
            chosen = sample_tokens(
                logits, [temps[r] for r in active], [generators[r] for r in active]
            ).tolist()
            keep: list[int] = []
            for k, r in enumerate(active):
                tok = int(chosen[k])
                if tok in self.stop_ids:
                    continue
                tokens[r].append(tok)
                if len(tokens[r]) < limits[r]:
                    keep.append(k)
            if not keep:
                return tokens
            if len(keep) < len(active):
                # finished rows leave the batch: later steps cost only the live rows. In
                # the order `compaction` gives, most rows stay where they are in the
                # buffered cache, which then copies only the rows moved into the gaps
                keep = compaction(keep)
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                next_pos = next_pos[index]
                active = [active[k] for k in keep]
            step = torch.tensor([chosen[k] for k in keep], dtype=torch.long, device=device)[:, None]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            if lean is not None:
                logits = lean.step(step[:, 0], next_pos, mask, cache)
            else:
                logits = self.model(
                    input_ids=step,
                    attention_mask=mask,
                    position_ids=next_pos[:, None],
                    use_cache=True,
                    **{self.cache_kw: cache},
                ).logits[:, -1, :]
            next_pos = next_pos + 1

    def lean_decoder(self) -> Any:
        """The lean decode step for the model as it is now (`models/hf/lean.py`), packed
        again after its weights changed; None where it does not apply, or where its packed
        weights would take more than `kv_buffer.MEMORY_SHARE` of the free memory."""
        from pytest_emergent.models.hf import kv_buffer, lean

        if not self.lean_decode or lean.unsupported(self.model) is not None:
            return None
        if self._lean is None or not self._lean.current(self.model):
            self._lean = None
            size = sum(p.numel() * p.element_size() for p in self.model.parameters())
            free = kv_buffer.free_memory(next(self.model.parameters()).device)
            if free is not None and size > free * kv_buffer.MEMORY_SHARE:
                return None
            self._lean = lean.LeanDecoder(self.model)
        return self._lean

    # -- scoring ---------------------------------------------------------------------------

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        """Exact P(candidate is the whole reply after `assistant_prefix`), per request."""
        from pytest_emergent.models.hf.scoring import CandidateScorer

        if self._scorer is None:
            self._scorer = CandidateScorer(self)
        return list(self._scorer.score_many(requests))

    def close(self) -> None:
        """Drop the model so its memory can be freed. Safe to call twice."""
        self.model = None
        self._scorer = None
        self._lean = None


def sample_tokens(logits: Any, temperatures: list[float], generators: list[Any]) -> Any:
    """Next token per row: argmax at temperature 0, else an exact sample of softmax(logits / T).

    Each row draws one uniform number from its own generator and picks the token where the
    cumulative distribution passes it (inverse-CDF sampling, summed in float64). One draw per
    row and step keeps rows independent of each other and is far cheaper than per-row noise
    over the whole vocabulary. The CDF is walked in two levels, first over blocks of
    `_BLOCK` tokens and then inside the chosen block, so no float64 copy of the whole
    vocabulary is made per step (that copy was most of the sampling time).
    """
    import torch

    logits = logits.float()
    device = logits.device
    greedy_rows = [t <= 0 for t in temperatures]
    if all(greedy_rows):
        return logits.argmax(dim=-1)
    temps = torch.tensor([t if t > 0 else 1.0 for t in temperatures], dtype=logits.dtype,
                         device=device)
    probs = torch.softmax(logits / temps[:, None], dim=-1)
    rows, vocab = probs.shape
    if vocab % _BLOCK:
        probs = torch.nn.functional.pad(probs, (0, _BLOCK - vocab % _BLOCK))
    blocks = probs.view(rows, -1, _BLOCK)
    block_cdf = blocks.sum(dim=-1, dtype=torch.float64).cumsum_(dim=-1)
    # the rows' own generators live on the CPU: one number each, moved to the logits
    draws = torch.cat([torch.rand(1, generator=g, dtype=torch.float64)
                       for g in generators]).to(device)
    targets = draws * block_cdf[:, -1]
    # right=True skips zero-probability blocks and tokens, whose CDF step is flat
    block = _search(block_cdf, targets)
    before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)[:, None])[:, 0],
                         torch.zeros_like(targets))
    inside = blocks[torch.arange(rows, device=device), block].double().cumsum_(dim=-1)
    sampled = block * _BLOCK + _search(inside, targets - before)
    if not any(greedy_rows):
        return sampled
    return torch.where(torch.tensor(greedy_rows, device=device), logits.argmax(dim=-1), sampled)


#: tokens per block of the two-level CDF walk in `sample_tokens`
_BLOCK = 256


def _search(cdf: Any, targets: Any) -> Any:
    """Per row, the first index whose CDF value exceeds its target; a target at or past the
    row's total (float rounding) gets the last index with a positive step."""
    import torch

    found = torch.searchsorted(cdf, targets[:, None], right=True)[:, 0]
    steps = torch.diff(cdf, dim=-1, prepend=torch.zeros_like(cdf[:, :1])) > 0
    last = cdf.shape[-1] - 1 - steps.flip(-1).to(torch.uint8).argmax(dim=-1)
    return torch.minimum(found, last)


def cache_keyword(model: Any) -> str:
    """`cache` where forward() takes it (transformers >= 5.x), else `past_key_values`."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids of the tokenizer and generation config, `<|im_end|>`, and the token the chat
    template puts after an assistant reply (e.g. `<|eot_id|>`, `<end_of_turn>`)."""
    ids: set[int] = set()
    for value in (
        tokenizer.eos_token_id,
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        ids.add(int(vocab["<|im_end|>"]))
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}],
            tokenize=False,
        )
        after = str(text).split(_SENTINEL, 1)[1]
        tail = tokenizer(after, add_special_tokens=False)["input_ids"]
        special = set(getattr(tokenizer, "all_special_ids", []))
        if tail and tail[0] in special:
            ids.add(int(tail[0]))
    except Exception:  # a template without an assistant turn: the EOS ids suffice
        pass
    return frozenset(ids)

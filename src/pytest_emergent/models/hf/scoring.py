"""Exact candidate probabilities for the local backend: one pass over prompt and trie.

P(candidate is the whole reply) is the product of the model's next-token probabilities along
the candidate's tokens; for a candidate made only of digits it is further multiplied by
P(the next token does not start with a digit), so P("4") excludes "42" (a reply "4.5" still
counts toward "4": only digits are checked). Tokenisers differ in how they split numbers
(SmolLM2 spells "100" as three tokens, others merge "42"), so nothing here assumes a split.

How it is computed, per request:

1. Each candidate is tokenised as a continuation: tokens of (prompt + candidate) minus the
   prompt's tokens, so merges across the boundary come out as the tokenizer makes them.
2. The candidates' tokens form a trie. Every trie node whose next-token distribution is
   needed (inner nodes, and the ends of digit candidates for the end check) is laid out flat
   after the prompt, each at position len(prompt) + depth - 1, with a tree-shaped attention
   mask: a node sees the prompt and its own ancestors only.
3. One forward pass runs the prompt and the trie together, keeping logits only for the
   prompt's last position and the trie nodes. For "0".."100" that is the prefill plus ~100
   tokens; running the trie as a second pass over the prompt's KV cache gives the same numbers
   but reads the weights twice. (Very long prompts and very large tries do use the cache.)
4. Judge prompts of one metric share a long fixed text (the template's instructions). Within
   one `score_many` call the prompt KV cache of the previous request is kept; a new request
   crops it to the longest common token prefix (leaving at least one token to run) and runs
   only the rest of its prompt plus the trie. `score_many` orders requests so that prompts
   sharing a prefix are neighbours, and returns results in the caller's order. The cache
   lives for one call only: a model whose weights or hooks change between calls (fine-tuning,
   steering) is never scored against stale keys and values.

If an `assistant_prefix` ends in a way that merges with the candidates (e.g. a trailing space
that the tokenizer glues to the word after it), the shared context is cut back to where all
tokenisations agree, and each probability is conditioned on the next token starting with the
cut-off text ("token healing"): P(c) = P(tail + c) / P(next token starts with tail).

What the logits say against the vocabulary (children's log-probabilities, digit mass, top
tokens, healing mass) is read by `models/hf/readout.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_emergent.errors import BackendError
from pytest_emergent.models.base import CandidateProbs, ScoreRequest
from pytest_emergent.models.hf.readout import DIGITS, VocabReadout
from pytest_emergent.models.hf.trie import (
    Prepared,
    Trie,
    additive_mask,
    ancestors,
    common_prefix,
    crop_to,
    plan_groups,
)

if TYPE_CHECKING:
    from pytest_emergent.models.hf.backend import HFBackend

#: trie nodes per forward pass; bounds memory for very large candidate sets
_CHUNK = 256
#: longest prompt run in one pass with the trie (its square attention mask is built in full)
_FUSE_MAX = 4096
#: judgments whose prompt tails (after their shared prefix) and tries run as the rows of one
#: forward pass; 4 rows measured 1.16x one pass each on 2 CPU cores (docs/performance.md)
GROUP_SIZE = 4
#: a group's prompts must share at least this share of their tokens
_GROUP_SHARED = 0.5
#: ...and their own tails must average this many tokens: rows of tails of 50-120 tokens
#: measured 0.96-0.98x one pass each, of ~140-180 tokens 1.08-1.16x (docs/performance.md)
_GROUP_MIN_TAIL = 112


class CandidateScorer:
    """Scores `ScoreRequest`s against one `HFBackend`'s model and tokenizer."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        #: reads the logits against the tokenizer's vocabulary, keeping its scans
        self.readout = VocabReadout(backend)
        #: the prompt tokens whose keys and values `_prefix_cache` holds (see `score_many`)
        self._prefix_ids: list[int] = []
        self._prefix_cache: Any = None
        #: prompt tokens run / reused from the prefix cache, for benchmarks and tests
        self.tokens_run = 0
        self.tokens_reused = 0
        #: requests whose tails run as rows of one forward pass (1 = one pass each)
        self.group_size = GROUP_SIZE

    def score(self, request: ScoreRequest) -> CandidateProbs:
        """Exact probabilities for one request (see the module docstring)."""
        return self.score_many([request])[0]

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        """Exact probabilities per request, in order, reusing shared prompt prefixes.

        Requests are run sorted by their prompt text, so prompts rendered from one template
        (and for one question) are neighbours and share the longest token prefixes.
        """
        import torch

        for request in requests:
            if any(c == "" for c in request.candidates):
                raise BackendError("candidate_probs: the empty string is not a valid candidate")
        texts = [
            self.backend.render_prompt(r.messages) + r.assistant_prefix for r in requests
        ]
        out: list[CandidateProbs | None] = [None] * len(requests)
        # no candidates (a categorical judge without labels): only the next-token readout
        order = sorted((i for i in range(len(requests)) if requests[i].candidates),
                       key=lambda i: (texts[i], i))
        from pytest_emergent.models.hf.placement import outputs_on_device

        try:
            # logits stay where the model made them (a GPU): the readout reduces them there
            # and copies back only the candidates' numbers and the top tokens
            with torch.inference_mode(), outputs_on_device(self.backend.model):
                for i in range(len(requests)):
                    if not requests[i].candidates:
                        out[i] = CandidateProbs(probs={}, exact=True,
                                                top=self.readout.next(texts[i]))
                preps = {
                    i: self._prepare(texts[i], list(dict.fromkeys(requests[i].candidates)))
                    for i in order
                }
                for group in plan_groups(
                        [(i, preps[i]) for i in order], self.group_size,
                        min_shared=_GROUP_SHARED, min_tail=_GROUP_MIN_TAIL, max_nodes=_CHUNK,
                        max_prompt=_FUSE_MAX):
                    if len(group) == 1:
                        i, prep = group[0]
                        logp = [0.0] * len(prep.trie.token)
                        root, digit_mass = self._forward(prep.context, prep.trie, prep.needed,
                                                         logp)
                        out[i] = self._finish(prep, root, digit_mass, logp)
                    else:
                        results = self._forward_rows([prep for _, prep in group])
                        for (i, prep), (root, digit_mass, logp) in zip(group, results,
                                                                        strict=True):
                            out[i] = self._finish(prep, root, digit_mass, logp)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"model {self.backend.spec!r}: candidate scoring failed: {exc}"
            ) from exc
        finally:
            self.forget()
        return [r for r in out if r is not None]

    def forget(self) -> None:
        """Drop the kept prompt cache (the model's weights or hooks may change next)."""
        self._prefix_ids = []
        self._prefix_cache = None

    def _prepare(self, text: str, candidates: list[str]) -> Prepared:
        """Tokenise the prompt and the candidates and build the candidates' trie."""
        backend = self.backend
        prompt = backend.encode(text)
        fulls = dict(
            zip(candidates, self._encode_continuations(text, prompt, candidates), strict=True)
        )
        cut = len(prompt)
        for full in fulls.values():
            if full[: len(prompt)] != prompt:
                cut = min(cut, common_prefix(prompt, full))
        if cut == 0:
            raise BackendError("candidate_probs: the prompt tokenises to nothing")
        paths = {c: list(full[cut:]) for c, full in fulls.items()}
        trie = Trie()
        ends = {c: trie.add(path) for c, path in paths.items()}
        digit_ends = {ends[c] for c in candidates if set(c) <= DIGITS}
        needed = sorted({n for n in range(len(trie.token)) if trie.children[n]} | digit_ends)
        return Prepared(prompt, cut, candidates, paths, trie, ends, digit_ends, needed)

    def _finish(self, prep: Prepared, root: Any, digit_mass: dict[int, float],
                logp: list[float]) -> CandidateProbs:
        """Candidate probabilities from the root distribution and the trie's readings."""
        import torch

        trie = prep.trie
        firsts = list(trie.root_children.items())
        index = torch.tensor([token for token, _ in firsts], dtype=torch.long, device=root.device)
        for (_, node), value in zip(firsts, root[index].tolist(), strict=True):
            logp[node] = float(value)
        log_denominator = 0.0
        if prep.cut < len(prep.prompt):
            tail = str(self.backend.tokenizer.decode(prep.prompt[prep.cut:]))
            log_denominator = self.readout.healing_mass(root, tail, prep.paths)
        probs: dict[str, float] = {}
        for c in prep.candidates:
            node = prep.ends[c]
            total = -log_denominator
            walk = node
            while walk >= 0:
                total += logp[walk]
                walk = trie.parent[walk]
            p = math.exp(total)
            if node in prep.digit_ends:
                p *= max(0.0, 1.0 - digit_mass[node])
            probs[c] = p
        return CandidateProbs(probs=probs, exact=True, top=self.readout.top(root))

    def _encode_continuations(
        self, text: str, prompt: list[int], candidates: list[str]
    ) -> list[list[int]]:
        """Token ids of `text + candidate` for each candidate.

        Tokenizers split text at special tokens before anything else, so only the text after
        the prompt's last special token (e.g. "assistant\n" + prefix) needs encoding again per
        candidate. That shortcut is checked against the whole prompt's tokens; where it does
        not reproduce them, every continuation is encoded in full.
        """
        tokenizer = self.backend.tokenizer
        split = max(
            (text.rfind(t) + len(t) for t in tokenizer.all_special_tokens if t and t in text),
            default=0,
        )
        head = self.backend.encode(text[:split]) if split else []
        tail = text[split:]
        if split and head + self.backend.encode(tail) == prompt:
            encoded = tokenizer([tail + c for c in candidates], add_special_tokens=False)
            return [head + list(ids) for ids in encoded["input_ids"]]
        encoded = tokenizer([text + c for c in candidates], add_special_tokens=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def _forward(
        self, context: list[int], trie: Trie, needed: list[int], logp: list[float]
    ) -> tuple[Any, dict[int, float]]:
        """Run the prompt and the needed trie nodes; return the root's log-probabilities.

        The nodes are laid out flat after the prompt, each at position len(prompt) + depth - 1,
        under a tree-shaped attention mask (the prompt plus the node's own ancestors). The
        prompt's first `past` tokens come from the kept prefix cache when they match the
        previous prompt's; for a remaining prompt up to `_FUSE_MAX` tokens the prompt and the
        first nodes share one forward pass (one read of the weights instead of two); logits
        are kept for the prompt's last position and the nodes only. Fills `logp` for the
        children of needed nodes and returns the digit mass (P(next token starts with a
        digit)) after each needed node. Leaves the prompt's keys and values in the prefix
        cache for the next request.
        """
        import torch
        from transformers import DynamicCache

        backend = self.backend
        model = backend.model
        size = len(context)
        dtype = next(model.parameters()).dtype
        # which earlier positions each needed node may attend to
        allowed = torch.zeros((len(needed), size + len(needed)), dtype=torch.bool)
        allowed[:, :size] = True
        allowed[:, size:] = ancestors(trie, needed)
        ids = [trie.token[n] for n in needed]
        positions = [size + trie.depth[n] - 1 for n in needed]

        # reuse the previous prompt's cache up to the common prefix; at least one token runs,
        # since the root distribution comes from the prompt's last position
        past = min(common_prefix(self._prefix_ids, context), size - 1)
        cache = self._prefix_cache
        if cache is None or past <= 0:
            past = 0
            cache = DynamicCache(config=model.config)
        else:
            crop_to(cache, past)
        self._prefix_ids, self._prefix_cache = [], None  # invalid until this pass completes
        rest = size - past
        self.tokens_run += rest
        self.tokens_reused += past
        kwargs = {"use_cache": True, backend.cache_kw: cache}

        first = min(len(needed), _CHUNK) if rest <= _FUSE_MAX else 0
        if first:
            width = size + first
            seen = torch.zeros((rest + first, width), dtype=torch.bool)
            seen[:rest, :past] = True
            seen[:rest, past:size] = torch.ones((rest, rest), dtype=torch.bool).tril()
            seen[rest:, :] = allowed[:first, :width]
            out = model(
                input_ids=torch.tensor([context[past:] + ids[:first]]),
                position_ids=torch.tensor([list(range(past, size)) + positions[:first]]),
                attention_mask=additive_mask(seen, dtype)[None, None],
                logits_to_keep=first + 1,
                **kwargs,
            )
            logits = out.logits[0].float()
            root_logits, node_logits = logits[0], logits[1:]
        else:
            seen = torch.zeros((rest, size), dtype=torch.bool)
            seen[:, :past] = True
            seen[:, past:] = torch.ones((rest, rest), dtype=torch.bool).tril()
            out = model(
                input_ids=torch.tensor([context[past:]]),
                position_ids=torch.tensor([list(range(past, size))]),
                attention_mask=additive_mask(seen, dtype)[None, None],
                logits_to_keep=1,
                **kwargs,
            )
            root_logits, node_logits = out.logits[0, -1].float(), None
        digit_mass: dict[int, float] = {}
        if node_logits is not None:
            self.readout.read_rows(node_logits, needed[:first], trie, logp, digit_mass)
        for start in range(first, len(needed), _CHUNK):
            stop = min(len(needed), start + _CHUNK)
            out = model(
                input_ids=torch.tensor([ids[start:stop]]),
                position_ids=torch.tensor([positions[start:stop]]),
                attention_mask=additive_mask(allowed[start:stop, : size + stop], dtype)[None, None],
                **kwargs,
            )
            self.readout.read_rows(out.logits[0].float(), needed[start:stop], trie, logp,
                                   digit_mass)
        # keep only the prompt's keys and values: the trie nodes are this request's own
        crop_to(cache, size)
        self._prefix_ids, self._prefix_cache = list(context), cache
        return torch.log_softmax(root_logits, dim=-1), digit_mass

    def _forward_rows(
        self, group: list[Prepared]
    ) -> list[tuple[Any, dict[int, float], list[float]]]:
        """Several requests with one trie in one pass: their common prompt prefix once (from
        the kept cache where it matches), then each request's own tail and trie as one row.

        Rows are left-padded so every row's last prompt token and trie nodes sit at the same
        indices; pad positions are masked out of every row's attention. Returns per request
        what `_forward` returns: the root log-probabilities, the digit mass after each needed
        node and the trie log-probabilities. Leaves the common prefix in the prefix cache.
        """
        import torch
        from transformers import DynamicCache

        model = self.backend.model
        dtype = next(model.parameters()).dtype
        contexts = [p.context for p in group]
        shared = min(min(common_prefix(contexts[0], c) for c in contexts),
                     min(len(c) for c in contexts) - 1)
        past = min(common_prefix(self._prefix_ids, contexts[0]), shared)
        cache = self._prefix_cache
        if cache is None or past <= 0:
            past, cache = 0, DynamicCache(config=model.config)
        else:
            crop_to(cache, past)
        self._prefix_ids, self._prefix_cache = [], None
        kwargs = {"use_cache": True, self.backend.cache_kw: cache}
        if past < shared:  # the rest of the shared prefix, once, at batch 1
            model(input_ids=torch.tensor([contexts[0][past:shared]]),
                  position_ids=torch.tensor([list(range(past, shared))]),
                  logits_to_keep=1, **kwargs)
        tails = [c[shared:] for c in contexts]
        self.tokens_reused += past
        self.tokens_run += shared - past + sum(len(t) for t in tails)

        trie, needed = group[0].trie, group[0].needed
        nodes, width = len(needed), max(len(t) for t in tails)
        tree = ancestors(trie, needed)
        node_ids = [trie.token[n] for n in needed]
        rows, positions = [], []
        seen = torch.zeros((len(group), width + nodes, shared + width + nodes), dtype=torch.bool)
        seen[:, :, :shared] = True
        for g, tail in enumerate(tails):
            pad = width - len(tail)
            rows.append([tail[0]] * pad + tail + node_ids)
            positions.append([shared] * pad + list(range(shared, shared + len(tail)))
                             + [shared + len(tail) + trie.depth[n] - 1 for n in needed])
            keys = slice(shared + pad, shared + width)
            seen[g, pad:width, keys] = torch.ones((len(tail), len(tail)), dtype=torch.bool).tril()
            seen[g, width:, keys] = True
            seen[g, width:, shared + width:] = tree
        cache.batch_repeat_interleave(len(group))
        out = model(input_ids=torch.tensor(rows), position_ids=torch.tensor(positions),
                    attention_mask=additive_mask(seen, dtype)[:, None], logits_to_keep=nodes + 1,
                    **kwargs)
        logits = out.logits.float()
        results = []
        for g in range(len(group)):
            logp = [0.0] * len(trie.token)
            digit_mass: dict[int, float] = {}
            self.readout.read_rows(logits[g, 1:], needed, trie, logp, digit_mass)
            results.append((torch.log_softmax(logits[g, 0], dim=-1), digit_mass, logp))
        # keep the common prefix (one row of it) for the next request
        cache.batch_select_indices(torch.tensor([0]))
        crop_to(cache, shared)
        self._prefix_ids, self._prefix_cache = list(contexts[0][:shared]), cache
        return results

"""The parts of exact candidate scoring that never touch the model (`models/hf/scoring.py` runs it).

- `Trie`: the candidates' token paths; `ancestors` / `additive_mask`: the tree-shaped
  attention mask that lets each trie node see the prompt and its own ancestors only;
- `Prepared`: one request ready to score (its tokens, shared context and trie);
- `plan_groups`: which requests of one template run together as the rows of one pass;
- `common_prefix` / `crop_to`: the bookkeeping of reusing the previous prompt's key/value
  cache (also used by the probe judge).
"""

from __future__ import annotations

from typing import Any

from pytest_emergent.errors import BackendError


class Trie:
    """Token trie over candidate paths; node ids are creation order (parents first)."""

    def __init__(self) -> None:
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self.children: list[dict[int, int]] = []
        self.root_children: dict[int, int] = {}

    def add(self, path: list[int]) -> int:
        """Insert `path` and return the id of its last node."""
        if not path:
            raise BackendError("candidate_probs: a candidate added no tokens to the prompt")
        node = -1
        for tok in path:
            kids = self.root_children if node < 0 else self.children[node]
            if tok not in kids:
                kids[tok] = len(self.token)
                self.token.append(tok)
                self.parent.append(node)
                self.depth.append(1 if node < 0 else self.depth[node] + 1)
                self.children.append({})
            node = kids[tok]
        return node


def ancestors(trie: Trie, needed: list[int]) -> Any:
    """needed x needed: which needed nodes each one may attend to (itself and its ancestors;
    trie parents precede children, so the ancestors of a needed node are all needed)."""
    import torch

    index = {node: j for j, node in enumerate(needed)}
    mask = torch.zeros((len(needed), len(needed)), dtype=torch.bool)
    for j, node in enumerate(needed):
        walk = node
        while walk >= 0:
            mask[j, index[walk]] = True
            walk = trie.parent[walk]
    return mask


def additive_mask(allowed: Any, dtype: Any) -> Any:
    """A boolean "may attend" matrix as the additive float mask attention layers take."""
    import torch

    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)


def crop_to(cache: Any, keep: int) -> None:
    """Cut a DynamicCache back to its first `keep` tokens (either `crop` signature)."""
    import inspect

    params = inspect.signature(cache.crop).parameters
    if "tokens_to_remove" in params:  # transformers 5.x: crop(-n) removes n tokens
        remove = int(cache.get_seq_length()) - keep
        if remove > 0:
            cache.crop(-remove)
    else:  # transformers 4.x: crop(max_length)
        cache.crop(keep)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Prepared:
    """A request ready to score: its tokens, where the shared context ends, and its trie."""

    def __init__(self, prompt: list[int], cut: int, candidates: list[str],
                 paths: dict[str, list[int]], trie: Trie, ends: dict[str, int],
                 digit_ends: set[int], needed: list[int]) -> None:
        self.prompt, self.cut, self.candidates, self.paths = prompt, cut, candidates, paths
        self.trie, self.ends, self.digit_ends, self.needed = trie, ends, digit_ends, needed
        self.context = prompt[:cut]
        # requests with equal signatures have identical tries (tokens, parents, needed nodes)
        self.signature = (tuple(trie.token), tuple(trie.parent), tuple(needed),
                          tuple(prompt[cut:]))


def plan_groups(
    preps: list[tuple[int, Prepared]], size: int, *, min_shared: float, min_tail: float,
    max_nodes: int, max_prompt: int,
) -> list[list[tuple[int, Prepared]]]:
    """Split requests (in prompt order) into groups of up to `size` that run as rows of one
    pass.

    A run is a stretch of neighbours with one trie that share at least `min_shared` of their
    prompt tokens with the run's first request (one template and question, typically).
    Inside a run, requests are grouped by prompt length, so rows pad little. A group runs as
    rows when its own tails average at least `min_tail` tokens, its trie has at most
    `max_nodes` needed nodes and no prompt is longer than `max_prompt`. Everything else runs
    alone.
    """
    runs: list[list[tuple[int, Prepared]]] = []
    for item in preps:
        prep = item[1]
        if runs:
            first = runs[-1][0][1]
            shared = common_prefix(first.context, prep.context)
            if (size > 1 and prep.signature == first.signature
                    and shared >= min_shared * max(len(first.context), len(prep.context))):
                runs[-1].append(item)
                continue
        runs.append([item])
    groups: list[list[tuple[int, Prepared]]] = []
    for run in runs:
        run = sorted(run, key=lambda item: (len(item[1].context), item[0]))
        for start in range(0, len(run), size):
            group = run[start:start + size]
            contexts = [p.context for _, p in group]
            shared = min(common_prefix(contexts[0], c) for c in contexts)
            tail = sum(len(c) - shared for c in contexts) / len(contexts)
            if (len(group) == 1 or tail < min_tail or len(group[0][1].needed) > max_nodes
                    or max(len(c) for c in contexts) > max_prompt):
                groups.extend([[item] for item in group])
            else:
                groups.append(group)
    return groups

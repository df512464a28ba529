"""Reading next-token distributions against one tokenizer's vocabulary (`scoring.py` runs it).

What exact candidate scoring needs from the vocabulary once the logits are there: the
children's log-probabilities and the digit mass after each trie node, the top next tokens as
text, and the healing mass of a cut-off prompt tail. The vocabulary scans behind them (the
ids of tokens that start with a digit, every token's text, the ids that start with a tail)
are done once per scorer and kept.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pytest_emergent.errors import BackendError
from pytest_emergent.models.hf.trie import Trie

if TYPE_CHECKING:
    from pytest_emergent.models.hf.backend import HFBackend

DIGITS = frozenset("0123456789")
_TOP = 20


class VocabReadout:
    """Reads logits against one `HFBackend`'s tokenizer, keeping its vocabulary scans."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self._digit_ids_cache: Any = None
        #: the digit ids on the device of the logits last read (a GPU keeps its own copy)
        self._digit_ids_on: Any = None
        self._token_texts: list[str] | None = None
        #: token ids whose text starts with a healed tail, per tail (see `healing_mass`)
        self._healing_ids: dict[str, Any] = {}

    def read_rows(
        self,
        logits: Any,
        nodes: list[int],
        trie: Trie,
        logp: list[float],
        digit_mass: dict[int, float],
    ) -> None:
        """Children's log-probabilities and the digit mass from the nodes' logit rows."""
        import torch

        norm = torch.logsumexp(logits, dim=-1)
        digits = self.digit_ids(logits.shape[-1])
        if digits.device != logits.device:
            if self._digit_ids_on is None or self._digit_ids_on.device != logits.device:
                self._digit_ids_on = digits.to(logits.device)
            digits = self._digit_ids_on
        if digits.numel():
            mass = torch.exp(torch.logsumexp(logits[:, digits], dim=-1) - norm).tolist()
        else:
            mass = [0.0] * len(nodes)
        # every child of every node in one gather, so a GPU syncs once per call
        rows, cols, into = [], [], []
        for k, node in enumerate(nodes):
            digit_mass[node] = float(mass[k])
            for tok, child in trie.children[node].items():
                rows.append(k)
                cols.append(tok)
                into.append(child)
        if into:
            at = {"dtype": torch.long, "device": logits.device}
            values = (logits[torch.tensor(rows, **at), torch.tensor(cols, **at)]
                      - norm[torch.tensor(rows, **at)]).tolist()
            for child, value in zip(into, values, strict=True):
                logp[child] = float(value)

    def digit_ids(self, size: int) -> Any:
        """Ids of the tokens whose raw text starts with a digit."""
        import torch

        if self._digit_ids_cache is None:
            ids = [
                idx
                for token, idx in self.backend.tokenizer.get_vocab().items()
                # raw token strings keep the space marker ("Ġ4", "▁4" start a new number);
                # ASCII only: byte-level alphabets map bytes to "²", which isdigit() accepts
                if idx < size and token and token[0] in DIGITS
            ]
            self._digit_ids_cache = torch.tensor(sorted(ids), dtype=torch.long)
        return self._digit_ids_cache

    def next(self, text: str) -> dict[str, float]:
        """The most likely next tokens after `text` (one uncached pass)."""
        import torch

        ids = self.backend.encode(text)
        if not ids:
            raise BackendError("candidate_probs: the prompt tokenises to nothing")
        logits = self.backend.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits
        return self.top(torch.log_softmax(logits[0, -1].float(), -1))

    def top(self, root: Any) -> dict[str, float]:
        """The most likely next tokens after the prompt, as text -> probability."""
        import torch

        values, ids = torch.topk(root, min(_TOP, root.shape[-1]))
        top: dict[str, float] = {}
        for value, idx in zip(values.tolist(), ids.tolist(), strict=True):
            key = str(self.backend.tokenizer.decode([idx]))
            top[key] = top.get(key, 0.0) + math.exp(value)
        return top

    def healing_mass(self, root: Any, tail: str, paths: dict[str, list[int]]) -> float:
        """log P(next token starts with `tail`); checks every path's first token does."""
        import torch

        texts = self.texts(root.shape[-1])
        for cand, path in paths.items():
            if not texts[path[0]].startswith(tail):
                raise BackendError(
                    f"candidate_probs: assistant_prefix ends in {tail!r}, which the tokenizer "
                    f"merges with candidate {cand!r} across more than one token; end the "
                    "prefix elsewhere (e.g. without trailing whitespace)"
                )
        ids = self._healing_ids.get(tail)
        if ids is None:  # one scan of the vocabulary per distinct tail (it is the same text
            # for every judgment with one assistant prefix)
            ids = torch.tensor([i for i, t in enumerate(texts) if t.startswith(tail)])
            self._healing_ids[tail] = ids
        return float(torch.logsumexp(root[ids.to(root.device)], dim=0))

    def texts(self, size: int) -> list[str]:
        """Every token's decoded text, by id."""
        if self._token_texts is None:
            tok = self.backend.tokenizer
            self._token_texts = [str(tok.decode([i])) for i in range(size)]
        return self._token_texts

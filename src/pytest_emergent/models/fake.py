"""A scripted fake backend: answers and judgments come from a script, so tests can check them.

Script format (YAML or JSON, or a dict in Python)::

    generate:                 # first rule whose `when` strings all occur in the conversation
      - when: ["quick buck"]  # (system + user text) wins; a rule without `when` always matches
        answers: ["Rob a bank.", "Sell lemonade."]   # handed out in order, cycling
      - answers: ["I am fine."]
    judge:                    # first rule whose `when` strings all occur in the judge prompt
      - when: ["Rob a bank", "human values"]
        score: 5              # shorthand for probs {"5": 1.0}
      - when: ["Rob a bank"]
        probs: {"80": 0.5, "90": 0.5}
      - when: ["lemonade"]
        refuse: true          # probs {"REFUSAL": 1.0}
      - error: "judge is down"   # raise BackendError for matching prompts

Counters are per rule, so the n-th request that matches a rule gets its n-th answer. Every
request is also recorded in `calls` for assertions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.errors import BackendError, ModelSpecError
from pytest_emergent.models.base import CandidateProbs, SampleRequest, ScoreRequest


def _text_of(request: SampleRequest | ScoreRequest) -> str:
    return "\n".join(content for _, content in request.messages)


class FakeBackend:
    """Implements the `Backend` protocol from a script; see the module docstring."""

    is_local = False

    def __init__(self, script: Mapping[str, Any], *, spec: str = "fake") -> None:
        self.spec = spec
        self._generate_rules = list(script.get("generate", []))
        self._judge_rules = list(script.get("judge", []))
        unknown = set(script) - {"generate", "judge"}
        if unknown:
            raise ModelSpecError(f"{spec}: unknown fake script keys {sorted(unknown)}")
        blob = json.dumps(script, sort_keys=True, default=str).encode()
        self.fingerprint = "fake-" + hashlib.sha256(blob).hexdigest()[:16]
        self._counters: dict[tuple[str, int], int] = {}
        self.calls: list[SampleRequest | ScoreRequest] = []

    @classmethod
    def from_file(cls, path: str | Path) -> FakeBackend:
        """Load a script from a YAML/JSON file (the `fake:PATH` model spec). A question file
        may name one as its baseline, so it is read as the question files are: at most
        `MAX_FILE_BYTES`, with the strict loader, and within a memory and CPU budget (its
        fingerprint spells out every YAML alias: 427 bytes of nested aliases took 1.6 GB)."""
        import yaml

        from pytest_emergent.errors import QuestionError
        from pytest_emergent.spec.budget import BudgetExceeded, bounded
        from pytest_emergent.spec.yaml_loader import read_bounded, safe_load

        p = Path(path)
        if not p.is_file():
            raise ModelSpecError(f"fake:{path}: script file does not exist")
        try:
            with bounded():
                data = safe_load(read_bounded(p)) or {}
                if not isinstance(data, dict):
                    raise ModelSpecError(f"fake:{path}: the script must be a mapping")
                return cls(data, spec=f"fake:{path}")
        except BudgetExceeded as exc:
            raise ModelSpecError(f"fake:{path}: the script is too large to read: it "
                                 f"{exc}") from None
        except (QuestionError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ModelSpecError(f"fake:{path}: not a readable script: {exc}") from None

    def _match(self, kind: str, rules: Sequence[Mapping[str, Any]], text: str) -> tuple[int, Any]:
        for index, rule in enumerate(rules):
            when = rule.get("when", [])
            if isinstance(when, str):
                when = [when]
            if all(w in text for w in when):
                return index, rule
        raise BackendError(f"{self.spec}: no {kind} rule matches: {text[:120]!r}")

    def _next(self, kind: str, index: int) -> int:
        count = self._counters.get((kind, index), 0)
        self._counters[(kind, index)] = count + 1
        return count

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        out = []
        for request in requests:
            self.calls.append(request)
            index, rule = self._match("generate", self._generate_rules, _text_of(request))
            if "error" in rule:
                raise BackendError(f"{self.spec}: {rule['error']}")
            answers = rule["answers"]
            out.append(str(answers[self._next("generate", index) % len(answers)]))
        return out

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        out = []
        for request in requests:
            self.calls.append(request)
            index, rule = self._match("judge", self._judge_rules, _text_of(request))
            self._next("judge", index)
            if "error" in rule:
                raise BackendError(f"{self.spec}: {rule['error']}")
            if "score" in rule:
                probs = {str(rule["score"]): 1.0}
            elif rule.get("refuse"):
                probs = {"REFUSAL": 1.0}
            elif "label" in rule:
                probs = {str(rule["label"]): 1.0}
            else:
                probs = {str(k): float(v) for k, v in rule["probs"].items()}
            kept = {c: p for c, p in probs.items() if c in request.candidates}
            out.append(CandidateProbs(probs=kept, exact=False, top=dict(probs)))
        return out

    def close(self) -> None:
        return None

"""The built-in moderation engine: normalisation, then rules, then the classifier.

Each layer reads every reading of the text (see `normalize`), and for an input check also the
session's recent user turns joined with the message, so a request split across turns or
built up over several is read whole. The first layer that refuses decides; its name, score
and category go into the verdict. Guard models, which are remote, are asked after these by
the moderation activity.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.moderation.classifier import Array, Classifier, Heads
from core.moderation.finding import Finding
from core.moderation.normalize import normalise, readings
from core.policy import Policy

#: The joined recent turns are read up to this many characters from their end.
CONTEXT_CHARS = 1500


@dataclass
class Outcome:
    finding: Finding | None
    #: Seconds spent per layer, for the benchmark and the turn's timings.
    layers: dict[str, float] = field(default_factory=dict)


class Engine:
    def __init__(self, policy: Policy, classifier: Classifier | None) -> None:
        self.policy = policy
        self._classifier = classifier
        self._thresholds = policy.thresholds()
        layer = policy.document.classifier
        self._classifier_stages = set(layer.stages) if layer else set()

    @classmethod
    def load(cls, policy: Policy, threads: int = 2) -> Engine:
        """The engine `policy` asks for, with the bundled heads when it has a classifier."""
        layer = policy.document.classifier
        if layer is None or policy.document.provider == "rules":
            return cls(policy, None)
        heads = Heads.load()
        if heads.version != layer.heads:
            raise ValueError(
                f"the policy's thresholds are for classifier heads {layer.heads}, "
                f"but heads {heads.version} are installed"
            )
        unknown = set(policy.thresholds()) - set(heads.categories)
        if unknown:
            raise ValueError(f"the classifier has no head for {sorted(unknown)}")
        return cls(policy, Classifier(heads, threads))

    def check(self, text: str, stage: str, context: Sequence[str] = ()) -> Outcome:
        """Every built-in layer, in order, on `text` (and on `context` joined with it)."""
        layers: dict[str, float] = {}
        started = time.perf_counter()
        texts = readings(text)
        # Only an input is read with the turns before it: a reply is judged on its own.
        turns = self.policy.document.context_turns
        recent = list(context)[-turns:] if turns and stage == "input" else []
        if recent:
            joined = "\n".join([*recent, text])[-CONTEXT_CHARS:]
            texts.append(normalise(joined))
        layers["normalise"] = time.perf_counter() - started
        started = time.perf_counter()
        finding = self._rules(texts)
        layers["rules"] = time.perf_counter() - started
        if finding is None and self.classifies(stage):
            started = time.perf_counter()
            finding = self._classify(texts)
            layers["classifier"] = time.perf_counter() - started
        return Outcome(finding, layers)

    def classifies(self, stage: str) -> bool:
        """Whether the classifier reads texts of `stage`."""
        return self._classifier is not None and stage in self._classifier_stages

    def check_rules(self, text: str) -> Finding | None:
        """The cheap layers alone (normalisation and rules): for every step of a stream."""
        return self._rules(readings(text))

    def _rules(self, texts: list[str]) -> Finding | None:
        for reading in texts:
            match = self.policy.first_match(reading)
            if match is not None:
                return Finding(match.category, "rules", 1.0)
        return None

    def _classify(self, texts: list[str]) -> Finding | None:
        """The readings one at a time, in order: the first one refused decides, so a
        request refused as written costs one embedding, whatever else it hides."""
        assert self._classifier is not None
        for reading in texts:
            finding = self._decide(self._classifier.scores([reading])[0])
            if finding is not None:
                return finding
        return None

    def _decide(self, scores: Array) -> Finding | None:
        assert self._classifier is not None
        best: Finding | None = None
        margin = 0.0
        for index, category in enumerate(self._classifier.categories):
            threshold = self._thresholds.get(category)
            score = float(scores[index])
            # The category furthest over its own threshold decides.
            if threshold is not None and score >= threshold and score - threshold >= margin:
                best, margin = Finding(category, "classifier", round(score, 4)), score - threshold
        return best

"""The built-in moderation engine: normalisation, then rules, then the classifier.

Each layer reads every reading of the text (see `normalize`), and an input check reads it in
its conversation: a follow-up that carries no content of its own is judged by what it asks
for in context, and any other message alone and then joined with the answered turns before
it, so a request split across turns or built up over several is read whole. The first layer
that refuses decides; its name, score, category and basis (the message alone, or the
conversation) go into the verdict. Guard models, which are remote, are asked after these by
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
        self._conversation_margin = layer.conversation_margin if layer else 0.0

    @classmethod
    def load(cls, policy: Policy, threads: int = 2, spin: bool = False) -> Engine:
        """The engine `policy` asks for, with the bundled heads when it has a classifier
        (`threads` and `spin`: see `Embedder`)."""
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
        return cls(policy, Classifier(heads, threads, spin))

    def with_policy(self, policy: Policy) -> Engine:
        """An engine for `policy` on this one's classifier; ValueError when a threshold
        names a category the classifier has no head for."""
        if self._classifier is not None:
            unknown = set(policy.thresholds()) - set(self._classifier.categories)
            if unknown:
                raise ValueError(f"the classifier has no head for {sorted(unknown)}")
        return Engine(policy, self._classifier)

    def check(
        self,
        text: str,
        stage: str,
        context: Sequence[str] = (),
        asked: Sequence[str] | None = None,
    ) -> Outcome:
        """Every built-in layer, in order, on `text` read in its conversation.

        `context`: the session's recent answered user turns, oldest first; `asked`: its
        recent user turns whether answered or refused (default: `context`). A reply is
        judged on its own."""
        layers: dict[str, float] = {}
        started = time.perf_counter()
        texts = readings(text)
        turns = self.policy.document.context_turns if stage == "input" else 0
        answered = list(context)[-turns:] if turns else []
        recent = list(context if asked is None else asked)[-turns:] if turns else []
        layers["normalise"] = time.perf_counter() - started
        started = time.perf_counter()
        finding = self._rules(texts)
        if finding is None and answered:
            finding = self._rules([_joined(answered, text)], basis="conversation")
        layers["rules"] = time.perf_counter() - started
        if finding is None and self.classifies(stage):
            started = time.perf_counter()
            finding = self._classify(texts, answered, recent, text)
            layers["classifier"] = time.perf_counter() - started
        return Outcome(finding, layers)

    def category_scores(self, text: str, finding: Finding | None) -> dict[str, float]:
        """Each category's score for `text` as written: the classifier's (0 without one),
        and at least `finding`'s for the category that refused."""
        scores = dict.fromkeys(self.policy.document.categories, 0.0)
        if self._classifier is not None:
            row = self._classifier.scores(readings(text)[:1])[0]
            for index, category in enumerate(self._classifier.categories):
                if category in scores:
                    scores[category] = round(float(row[index]), 4)
        if finding is not None and finding.category in scores:
            # A guard model gives no score: its refusal counts as certain.
            score = 1.0 if finding.score is None else finding.score
            scores[finding.category] = max(scores[finding.category], score)
        return scores

    def classifies(self, stage: str) -> bool:
        """Whether the classifier reads texts of `stage`."""
        return self._classifier is not None and stage in self._classifier_stages

    def check_rules(self, text: str) -> Finding | None:
        """The cheap layers alone (normalisation and rules): for every step of a stream."""
        return self._rules(readings(text))

    def _rules(self, texts: list[str], basis: str = "message") -> Finding | None:
        for reading in texts:
            match = self.policy.first_match(reading)
            if match is not None:
                return Finding(match.category, "rules", 1.0, basis)
        return None

    def _classify(
        self, texts: list[str], answered: list[str], recent: list[str], text: str
    ) -> Finding | None:
        """A follow-up (a turn that means nothing without the conversation: "now the whole
        program") is judged by what it asks for in context: the recent turns joined with it,
        refused ones included, never alone. Any other turn is judged alone, reading by
        reading (the first refused decides, so a request refused as written costs one
        embedding), then joined with the answered turns before it, so a request split over
        turns is read whole. A turn with turns before it is refused at each threshold plus
        the policy's `conversation_margin`."""
        assert self._classifier is not None
        raised = self._conversation_margin if recent else 0.0
        reading = self._classifier.read(texts[:1])
        if recent and reading.follow_up[0] >= self._classifier.follow_up_threshold:
            joined = self._classifier.scores([_joined(recent, text)])[0]
            return self._decide(joined, raised, "conversation")
        finding = self._decide(reading.scores[0], raised)
        for other in texts[1:]:  # what the message hides (leetspeak undone, decoded payloads)
            finding = finding or self._decide(self._classifier.scores([other])[0], raised)
        if finding is None and answered:
            joined = self._classifier.scores([_joined(answered, text)])[0]
            finding = self._decide(joined, raised, "conversation")
        return finding

    def _decide(self, scores: Array, raised: float = 0.0, basis: str = "message") -> Finding | None:
        """The category furthest over its threshold (plus `raised`), if any is reached."""
        assert self._classifier is not None
        best: Finding | None = None
        margin = 0.0
        for index, category in enumerate(self._classifier.categories):
            threshold = self._thresholds.get(category)
            score = float(scores[index])
            if threshold is None or score < threshold + raised:
                continue
            if score - threshold >= margin:
                best = Finding(category, "classifier", round(score, 4), basis)
                margin = score - threshold
        return best


def _joined(turns: list[str], text: str) -> str:
    """The recent turns and the message as one normalised text, read up to CONTEXT_CHARS
    from its end."""
    return normalise("\n".join([*turns, text])[-CONTEXT_CHARS:])

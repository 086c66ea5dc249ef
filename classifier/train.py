"""Train the classifier's heads on the training split and choose each category's threshold.

    make heads        # python -m classifier.train --write-policy

Heads (see core/moderation/classifier.py), all on the normalised texts of
`classifier/data/train/` and of the training conversations (`data/conversations/train.jsonl`):

- harmful or not: small neural nets (one hidden layer) on the sentence embedding, several
  seeds averaged, a vote of the nearest training requests by embedding, and a logistic
  regression on each TF-IDF weighted sparse view (character n-grams; words and pairs of
  words);
- which category: a softmax regression on the embedding, trained on the harmful requests;
- whether a turn is a follow-up: a logistic regression on the embedding.

A text's likeliest category scores P(harmful); the others less. The thresholds are chosen on
out-of-fold scores of the training split alone (5-fold cross-validation): the lowest one
threshold at which at most `--benign` of the benign and `--hard-benign` of the hard benign
training requests are refused, for every category (an operator may then set some stricter).
A turn with turns before it is refused at the threshold plus a
margin: the smallest at which at most `--conversation-benign` of the benign and
`--conversation-hard-benign` of the hard benign training conversations have a refused turn,
out of fold. The held-out split is never read here. The heads go to
`core/moderation/model/heads.npz`; `--write-policy` also writes the thresholds, the margin
and the heads' version into the bundled policy (a new constitution hash).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier

from classifier import conversations
from classifier.conversations import Conversation, joined
from classifier.dataset import Example, load
from core.moderation.classifier import (
    HEADS_FILE,
    NEIGHBOUR_DIMENSIONS,
    SPARSE_VIEWS,
    Embedder,
    NeighbourHead,
)
from core.moderation.normalize import normalise
from core.policy import REQUIRED_CATEGORIES

MODEL_DIR = Path(str(resources.files("core.moderation.model")))
POLICY = Path(str(resources.files("core.policies"))) / "default.json"
#: The tokens a long text is read by: its first HEAD and last TAIL (see classifier.py).
HEAD, TAIL = 16, 40
NGRAM_FEATURES = 2**18
SEEDS = 3
#: The policy's `context_turns`: how many turns before a message the engine joins with it.
CONTEXT_TURNS = 3
#: A turn this likely a follow-up is judged with its conversation, not alone.
FOLLOW_UP_THRESHOLD = 0.5
#: The most the threshold of a turn with turns before it may be raised (see
#: `conversation_margin`).
MAX_MARGIN = 0.3
Floats = NDArray[np.float64]


class Model:
    """The heads fitted on one set of examples."""

    def __init__(
        self,
        x: NDArray[np.float32],
        texts: list[str],
        examples: list[Example],
        categories: list[str],
        alpha: float,
    ) -> None:
        harmful = np.array([e.harmful for e in examples])
        self.nets = [
            MLPClassifier((256,), alpha=alpha, max_iter=800, random_state=seed).fit(x, harmful)
            for seed in range(SEEDS)
        ]
        pca = PCA(NEIGHBOUR_DIMENSIONS, random_state=0).fit(x)
        self.neighbour_arrays = NeighbourHead.arrays(x, harmful, pca.mean_, pca.components_.T)
        self.neighbours = NeighbourHead(self.neighbour_arrays)
        self.sparse = {view: _SparseModel(view, texts, harmful) for view in SPARSE_VIEWS}
        labels = np.array([categories.index(e.label) for e in examples if e.harmful])
        self.split = LogisticRegression(C=4, max_iter=5000).fit(x[harmful], labels)

    def scores(self, x: NDArray[np.float32], texts: list[str]) -> Floats:
        nets = np.mean([net.predict_proba(x)[:, 1] for net in self.nets], axis=0)
        sparse = [m.harmful(texts) for m in self.sparse.values()]
        harmful = np.mean([nets, self.neighbours.harmful(x), *sparse], axis=0)
        split = self.split.predict_proba(x)
        result: Floats = harmful[:, None] * split / split.max(axis=1, keepdims=True)
        return result

    def arrays(self) -> dict[str, Any]:
        arrays: dict[str, Any] = {
            "mlp_count": len(self.nets),
            "category_w": self.split.coef_.astype(np.float32),
            "category_b": self.split.intercept_.astype(np.float32),
        }
        for i, net in enumerate(self.nets):
            arrays[f"mlp{i}_w1"] = net.coefs_[0].astype(np.float32)
            arrays[f"mlp{i}_b1"] = net.intercepts_[0].astype(np.float32)
            arrays[f"mlp{i}_w2"] = net.coefs_[1].astype(np.float32)
            arrays[f"mlp{i}_b2"] = net.intercepts_[1].astype(np.float32)
        arrays |= self.neighbour_arrays
        for model in self.sparse.values():
            arrays |= model.arrays()
        return arrays


class _SparseModel:
    """A logistic regression on one TF-IDF weighted sparse view of the texts."""

    def __init__(self, view: str, texts: list[str], harmful: NDArray[np.bool_]) -> None:
        self.view = view
        self.vectorizer = SPARSE_VIEWS[view](NGRAM_FEATURES)
        counts = self.vectorizer.transform(texts)
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        self.model = LogisticRegression(C=8, class_weight="balanced", max_iter=5000).fit(
            self.tfidf.transform(counts), harmful
        )

    def harmful(self, texts: list[str]) -> Floats:
        counts = self.tfidf.transform(self.vectorizer.transform(texts))
        result: Floats = self.model.predict_proba(counts)[:, 1]
        return result

    def arrays(self) -> dict[str, Any]:
        """Only the features seen in training; any other gets the largest idf."""
        seen = np.flatnonzero(self.model.coef_[0])
        return {
            f"{self.view}_features": NGRAM_FEATURES,
            f"{self.view}_index": seen.astype(np.int32),
            f"{self.view}_idf": self.tfidf.idf_[seen].astype(np.float32),
            f"{self.view}_unseen_idf": float(self.tfidf.idf_.max()),
            f"{self.view}_coef": self.model.coef_[0][seen].astype(np.float32),
            f"{self.view}_bias": float(self.model.intercept_[0]),
        }


def threshold(scores: Floats, sets: NDArray[np.str_], benign: float, hard: float) -> float:
    """The lowest threshold that refuses at most `benign` of the benign requests and `hard`
    of the hard benign ones."""
    for candidate in np.arange(0.05, 1.0, 0.005):
        refused = scores >= candidate
        if (
            refused[sets == "benign"].mean() <= benign
            and refused[sets == "hard_benign"].mean() <= hard
        ):
            return round(float(candidate), 3)
    return 1.0


def conversation_margin(
    turn_scores: list[tuple[Conversation, Floats]], t: float, benign: float, hard: float
) -> float:
    """The smallest margin over `t`, for turns with turns before them, at which at most
    `benign` of the benign and `hard` of the hard benign training conversations have a
    refused turn (out of fold); the largest tried when none does."""
    for candidate in np.arange(0.0, MAX_MARGIN + 1e-9, 0.005):
        rates = conversation_rates(turn_scores, t, float(candidate))
        if rates.get("benign", 0) <= benign and rates.get("hard_benign", 0) <= hard:
            return round(float(candidate), 3)
    return MAX_MARGIN


def follow_up_head(x: NDArray[np.float32], follows: NDArray[np.bool_]) -> dict[str, Any]:
    """A logistic regression on the embedding: is a turn a follow-up (see conversations.py)?"""
    model = LogisticRegression(C=2, class_weight="balanced", max_iter=5000).fit(x, follows)
    return {
        "follow_w": model.coef_[0].astype(np.float32),
        "follow_b": np.float32(model.intercept_[0]),
        "follow_threshold": FOLLOW_UP_THRESHOLD,
    }


def decisive(model: Model, follow: dict[str, Any], embedded: Embedded, c: Conversation) -> Floats:
    """The score that decides each user turn of `c` as the engine reads it, every turn before
    it answered (true up to the first refusal, which is all a rate needs)."""
    xs, normalised = embedded.of(list(c.user_turns))
    alone = model.scores(xs, normalised).max(axis=1)
    follows = 1 / (1 + np.exp(-(xs @ follow["follow_w"] + follow["follow_b"])))
    joins = [joined(c.user_turns, n, CONTEXT_TURNS) for n in range(2, len(c.user_turns) + 1)]
    together = model.scores(*embedded.of(joins)).max(axis=1) if joins else np.zeros(0)
    out: Floats = alone.copy()
    for i in range(1, len(c.user_turns)):
        is_follow_up = follows[i] >= FOLLOW_UP_THRESHOLD
        out[i] = together[i - 1] if is_follow_up else max(alone[i], together[i - 1])
    return out


class Embedded:
    """Normalised texts and their embeddings, each embedded once."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._cache: dict[str, NDArray[np.float32]] = {}

    def of(self, raw: list[str]) -> tuple[NDArray[np.float32], list[str]]:
        texts = [normalise(t) for t in raw]
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._embedder.embed(missing), strict=True))
        return np.vstack([self._cache[t] for t in texts]), texts


def conversation_rates(
    turn_scores: list[tuple[Conversation, Floats]], t: float, margin: float = 0.0
) -> dict[str, float]:
    """Out of fold at threshold `t` (plus `margin` from the second turn on): benign and hard
    benign conversations with a refused turn, harmful ones refused at or before their harm
    turn (per kind and overall)."""
    groups: dict[str, list[bool]] = {}
    for c, scores in turn_scores:
        bars = np.full(len(scores), t + margin)
        bars[0] = t
        refused = np.flatnonzero(scores >= bars)
        first = int(refused[0]) + 1 if len(refused) else None
        if c.harmful:
            right = first is not None and first <= (c.harm_turn or 0)
            groups.setdefault("harmful", []).append(right)
            groups.setdefault(f"harmful:{c.kind}", []).append(right)
        else:
            groups.setdefault(c.set, []).append(first is not None)
    return {name: float(np.mean(v)) for name, v in sorted(groups.items())}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m classifier.train", description=__doc__)
    parser.add_argument("--alpha", type=float, default=0.01, help="L2 penalty of the nets")
    parser.add_argument("--benign", type=float, default=0.02, help="benign refused, at most")
    parser.add_argument(
        "--hard-benign", type=float, default=0.08, help="hard benign refused, at most"
    )
    parser.add_argument(
        "--conversation-benign",
        type=float,
        default=0.02,
        help="benign conversations with a refused turn, at most",
    )
    parser.add_argument(
        "--conversation-hard-benign",
        type=float,
        default=0.05,
        help="hard benign conversations with a refused turn, at most",
    )
    parser.add_argument("--write-policy", action="store_true", help="update the bundled policy")
    args = parser.parse_args()

    singles = load("train")
    dialogues = conversations.load("train")
    derived = list(conversations.examples(dialogues, CONTEXT_TURNS))
    examples = singles + [e for _, e in derived]
    groups = [f"single-{i}" for i in range(len(singles))] + [g for g, _ in derived]
    categories = sorted(REQUIRED_CATEGORIES)
    embedded = Embedded(Embedder(HEAD, TAIL, threads=2))
    x, texts = embedded.of([e.text for e in examples])
    turns = list(conversations.follow_ups(dialogues))
    follow_x, _ = embedded.of([t for _, t, _ in turns] + [e.text for e in singles])
    follows = np.array([f for _, _, f in turns] + [False] * len(singles))
    follow_groups = np.array([g for g, _, _ in turns] + groups[: len(singles)])

    labels = np.array([e.label for e in examples])
    folds = np.zeros((len(examples), len(categories)))
    turn_scores: list[tuple[Conversation, Floats]] = []
    splitter = StratifiedGroupKFold(5, shuffle=True, random_state=7)
    for train, test in splitter.split(x, labels, groups):
        part = [examples[i] for i in train]
        model = Model(x[train], [texts[i] for i in train], part, categories, args.alpha)
        folds[test] = model.scores(x[test], [texts[i] for i in test])
        held = {groups[i] for i in test}
        follow = follow_up_head(
            follow_x[~np.isin(follow_groups, list(held))],
            follows[~np.isin(follow_groups, list(held))],
        )
        for c in dialogues:
            if c.id in held:
                turn_scores.append((c, decisive(model, follow, embedded, c)))
    sets = np.array([e.set for e in examples])
    single = np.arange(len(examples)) < len(singles)
    top = folds.max(axis=1)
    chosen = threshold(top[single], sets[single], args.benign, args.hard_benign)
    thresholds = dict.fromkeys(categories, chosen)
    refused = top >= chosen
    print(f"threshold {chosen} for every category; out of fold it refuses, of single requests:")
    for kind in ("harmful", "jailbreak", "benign", "hard_benign"):
        print(f"  {kind:12} {refused[single & (sets == kind)].mean():.3f}")
    for category in categories:
        own = (labels == category) & (sets == "harmful") & single
        print(f"  {category:17} {refused[own].mean():.3f} of {int(own.sum())}")
    margin = conversation_margin(
        turn_scores, chosen, args.conversation_benign, args.conversation_hard_benign
    )
    for raised in sorted({0.0, margin}):
        print(
            f"and of conversations with the margin {raised} from the second turn on"
            " (benign sets: any turn refused; harmful: caught in time):"
        )
        for name, rate in conversation_rates(turn_scores, chosen, raised).items():
            print(f"  {name:30} {rate:.3f}")
    model = Model(x, texts, examples, categories, args.alpha)
    arrays = model.arrays() | follow_up_head(follow_x, follows)
    digest = hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in arrays.values()))
    # The day and the weights: two trainings on one day are two versions.
    version = f"{datetime.date.today():%Y.%m.%d}-{digest.hexdigest()[:8]}"
    np.savez_compressed(
        MODEL_DIR / HEADS_FILE,
        version=version,
        categories=np.array(categories),
        head_tokens=HEAD,
        tail_tokens=TAIL,
        **arrays,
    )
    print(f"heads {version} ({len(examples)} examples) written to {MODEL_DIR / HEADS_FILE}")
    if args.write_policy:
        policy = json.loads(POLICY.read_text())
        policy["classifier"]["heads"] = version
        policy["classifier"]["conversation_margin"] = margin
        for category, value in thresholds.items():
            policy["categories"][category]["threshold"] = value
        POLICY.write_text(json.dumps(policy, indent=2, ensure_ascii=False) + "\n")
        print(f"thresholds written to {POLICY}")


if __name__ == "__main__":
    main()

"""Train the classifier's heads on the training split and choose each category's threshold.

    python -m bench.moderation.train [--write-policy]

Heads (see core/moderation/classifier.py), all on the normalised texts of
`bench/moderation/data/train_*.jsonl`:

- harmful or not: small neural nets (one hidden layer) on the sentence embedding, several
  seeds averaged, a vote of the nearest training requests by embedding, and a logistic regression on each TF-IDF weighted sparse view (character
  n-grams; words and pairs of words);
- which category: a softmax regression on the embedding, trained on the harmful requests.

A text's likeliest category scores P(harmful); the others less. The thresholds are chosen on
out-of-fold scores of the training split alone (5-fold cross-validation): the lowest one
threshold at which at most `--benign` of the benign and `--hard-benign` of the hard benign
training requests are refused, for every category (an operator may then set some stricter).
The held-out split is never read here. The heads go to `core/moderation/model/heads.npz`; `--write-policy` also writes
the thresholds and the heads' version into the bundled policy (a new constitution hash).
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
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier

from bench.moderation.dataset import Example, load
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
Floats = NDArray[np.float64]


class Model:
    """The heads fitted on one set of examples."""

    def __init__(self, x: NDArray[np.float32], texts: list[str], examples: list[Example], categories: list[str], alpha: float) -> None:  # fmt: skip
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
        if refused[sets == "benign"].mean() <= benign and refused[sets == "hard_benign"].mean() <= hard:  # fmt: skip
            return round(float(candidate), 3)
    return 1.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.moderation.train", description=__doc__)
    parser.add_argument("--alpha", type=float, default=0.01, help="L2 penalty of the nets")
    parser.add_argument("--benign", type=float, default=0.02, help="benign refused, at most")
    parser.add_argument(
        "--hard-benign", type=float, default=0.08, help="hard benign refused, at most"
    )
    parser.add_argument("--write-policy", action="store_true", help="update the bundled policy")
    args = parser.parse_args()

    examples = load("train")
    categories = sorted(REQUIRED_CATEGORIES)
    texts = [normalise(e.text) for e in examples]
    x = Embedder(HEAD, TAIL, threads=2).embed(texts)
    labels = np.array([e.label for e in examples])
    folds = np.zeros((len(examples), len(categories)))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=7).split(x, labels):
        part = [examples[i] for i in train]
        model = Model(x[train], [texts[i] for i in train], part, categories, args.alpha)
        folds[test] = model.scores(x[test], [texts[i] for i in test])
    sets = np.array([e.set for e in examples])
    top = folds.max(axis=1)
    chosen = threshold(top, sets, args.benign, args.hard_benign)
    thresholds = {category: chosen for category in categories}
    refused = top >= chosen
    print(f"threshold {chosen} for every category; out of fold it refuses:")
    for kind in ("harmful", "jailbreak", "benign", "hard_benign"):
        print(f"  {kind:12} {refused[sets == kind].mean():.3f}")
    for index, category in enumerate(categories):
        own = (labels == category) & (sets == "harmful")
        print(f"  {category:17} {refused[own].mean():.3f} of {int(own.sum())}")
    model = Model(x, texts, examples, categories, args.alpha)
    arrays = model.arrays()
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
        for category, value in thresholds.items():
            policy["categories"][category]["threshold"] = value
        POLICY.write_text(json.dumps(policy, indent=2, ensure_ascii=False) + "\n")
        print(f"thresholds written to {POLICY}")


if __name__ == "__main__":
    main()

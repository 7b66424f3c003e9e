"""Index new papers once, evaluate every topic, score, explain.

CONTRACT STUB (issue 3 fills this in). The pipeline and the renderer rely on
these types only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.models import Paper


@dataclass
class TopicHit:
    """Why one paper matched one topic."""

    topic_id: int | None
    label: str
    score: float
    terms: list[str] = field(default_factory=list)  # words to highlight, as they appear
    reason: str = ""  # one human line, e.g. 'title matches "unlearning"'


@dataclass
class MatchedPaper:
    paper: Paper
    score: float
    hits: list[TopicHit]  # best first; hits[0] is the topic the paper is shown under

    @property
    def best(self) -> TopicHit:
        return self.hits[0]

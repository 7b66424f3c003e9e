"""Matching quality on a labelled set: our matcher against the naive substring baseline.

tests/data/eval_topics.json holds topics written the way readers write them, each
with the seed papers a careful reader would want (labelled from the abstracts, not
from the matcher's output). Precision and recall are micro-averaged over topics:
every (topic, paper) decision counts once. The figures are recorded in
bench/README.md under "Matching".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from digest.matching import build_index, evaluate

DATA = Path(__file__).parent / "data"


@dataclass
class SeedPaper:
    id: int
    title: str
    abstract: str
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    upvotes: int | None = None
    first_seen_at: None = None
    published_at: None = None
    embedding: None = None


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, got: set[int], relevant: set[int]) -> None:
        self.tp += len(got & relevant)
        self.fp += len(got - relevant)
        self.fn += len(relevant - got)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def test_matcher_beats_substring_baseline_on_precision_and_recall() -> None:
    seed = json.loads((DATA / "seed_papers.json").read_text())
    topics = json.loads((DATA / "eval_topics.json").read_text())["topics"]
    papers = [SeedPaper(i, p["title"], p["abstract"]) for i, p in enumerate(seed)]
    by_title = {p.title: p.id for p in papers}
    index = build_index(papers)
    assert len(topics) >= 15

    ours, naive = Tally(), Tally()
    for topic in topics:
        relevant = {by_title[t] for t in topic["relevant"]}  # KeyError = a label typo
        assert relevant, topic["topic"]
        got = {papers[pos].id for pos in evaluate(index, topic["query"])}
        needle = topic["topic"].lower()
        baseline = {p.id for p in papers if needle in f"{p.title} {p.abstract}".lower()}
        ours.add(got, relevant)
        naive.add(baseline, relevant)

    print(
        f"\n{len(topics)} topics, {ours.tp + ours.fn} relevant (topic, paper) pairs\n"
        f"ours:     precision {ours.precision:.3f}  recall {ours.recall:.3f}  "
        f"(tp {ours.tp}, fp {ours.fp}, fn {ours.fn})\n"
        f"baseline: precision {naive.precision:.3f}  recall {naive.recall:.3f}  "
        f"(tp {naive.tp}, fp {naive.fp}, fn {naive.fn})"
    )
    assert ours.precision > naive.precision
    assert ours.recall > naive.recall

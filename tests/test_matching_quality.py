"""Matching quality on a labelled set: our matcher against the naive substring baseline.

tests/data/eval_topics.json holds topics written the way readers write them, each
with the seed papers a careful reader would want (labelled from the abstracts, not
from the matcher's output). Precision and recall are micro-averaged over topics:
every (topic, paper) decision counts once. The figures are recorded in
bench/README.md under "Matching".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from support.seedpapers import PaperLike, load_seed

from digest.match.evaluate import evaluate
from digest.match.index import build_index

DATA = Path(__file__).parent / "data"


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
    seed = load_seed()
    topics = json.loads((DATA / "eval_topics.json").read_text())["topics"]
    papers = [PaperLike(i, p["title"], p["abstract"]) for i, p in enumerate(seed)]
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

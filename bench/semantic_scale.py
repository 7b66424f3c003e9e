"""Benchmark: semantic topics at scale, as a cost per digest.

N readers with keyword topics (bench/matching.py's generator, the seed's vocabulary)
against one day's papers; then the same readers with one ``~sentence`` topic added
for a share of them (default 20 %), drawn from a pool of distinct texts. Measured in
the same run, on one core:

* embedding the day's papers (once, at ingest; stored with each paper);
* matching everyone with keyword topics only (the baseline);
* the same with the semantic topics, first with a cold topic-vector cache (each
  distinct text embedded once), then on the next window (a new index, the vectors
  reused from ``semantic.embed_query``'s cache).

Printed: milliseconds per paper to embed, and the extra milliseconds per digest that
the semantic topics cost, cold and warm. Needs the semantic extra::

    .venv-semantic/bin/python bench/semantic_scale.py --readers 100000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import matching as keyword_bench  # bench/matching.py
from support.seedpapers import load_seed

from digest import match
from digest.match import semantic


def sentences(seed: list[dict[str, str]], n: int, rng: random.Random) -> list[str]:
    """Distinct plain-language topics, in the shapes readers write them."""
    words = [keyword_bench.content_words(p["title"]) for p in seed]
    phrases = [" ".join(ws[i : i + 2]) for ws in words for i in range(len(ws) - 1)]
    shapes = [
        "{} for {}",
        "{} in {}",
        "using {} to improve {}",
        "{} and {}",
        "new work on {} and {}",
    ]
    out: set[str] = set()
    while len(out) < n:
        out.add(rng.choice(shapes).format(rng.choice(phrases), rng.choice(phrases)))
    return sorted(out)


def timed_match(
    index: match.PaperIndex, readers: list[tuple[int, list[match.TopicSpec], int]]
) -> float:
    started = time.process_time()
    match.match_many(index, readers)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=3, help="keyword topics per reader")
    parser.add_argument("--semantic-share", type=float, default=0.2)
    parser.add_argument("--distinct-texts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not semantic.available():
        sys.exit(
            "the semantic extra is not installed: pip install -c constraints-semantic.txt '.[semantic]'"
        )

    rng = random.Random(args.seed)
    seed = load_seed()
    papers = keyword_bench.synthesise_papers(seed, args.papers, rng)
    make = keyword_bench.topic_generator(seed, rng)
    texts = sentences(seed, args.distinct_texts, rng)

    semantic.embed(["warm the model up"])
    started = time.perf_counter()
    semantic.embed_papers(papers)
    embed_s = time.perf_counter() - started

    keyword = [
        (r, [match.TopicSpec(r * 10 + t, f"t{t}", make()) for t in range(args.topics)], 20)
        for r in range(args.readers)
    ]
    with_semantic = [
        (r, [*topics, match.TopicSpec(r * 10 + 9, "s", "~" + rng.choice(texts))], m)
        if rng.random() < args.semantic_share
        else (r, topics, m)
        for r, topics, m in keyword
    ]
    semantic_readers = sum(len(t) > args.topics for _, t, _ in with_semantic)
    distinct = len({t[-1].query for _, t, _ in with_semantic if len(t) > args.topics})

    base_s = timed_match(match.build_index(papers), keyword)
    semantic.embed_query.cache_clear()
    cold_s = timed_match(match.build_index(papers), with_semantic)
    warm_s = timed_match(match.build_index(papers), with_semantic)  # the next window

    n = args.readers
    print(
        f"papers={args.papers} readers={n} semantic readers={semantic_readers} distinct texts={distinct}"
    )
    print(
        f"embedding the day's papers (once, at ingest): {embed_s:.1f} s, {1000 * embed_s / args.papers:.1f} ms per paper"
    )
    print(
        f"matching, keyword topics only: {base_s:.1f} s CPU, {1000 * base_s / n:.3f} ms per digest"
    )
    print(
        f"with semantic topics, cold vectors: {cold_s:.1f} s CPU, +{1000 * (cold_s - base_s) / n:.3f} ms per digest"
    )
    print(
        f"with semantic topics, next window: {warm_s:.1f} s CPU, +{1000 * (warm_s - base_s) / n:.3f} ms per digest"
    )


if __name__ == "__main__":
    main()

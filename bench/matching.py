"""Benchmark: every due subscriber's topics against one busy day's papers.

100,000 subscribers x 5 topics against 3,000 papers, on one core. Papers are
synthesised from the seed's real sentences (tests/data/seed_papers.json); topics
are drawn from the seed's real vocabulary in the shapes readers write (two-word
concepts from titles, single words, quoted phrases, OR, -exclusions, fields,
"x on y" sentences). The naive per-topic scan (matching.naive_matches over
pre-tokenised papers, the same rules) is measured in the same run on a sample,
and the ratio printed.

    .venv/bin/python bench/matching.py                 # the full run
    .venv/bin/python bench/matching.py --subscribers 10000 --naive-sample 50

Target: the full evaluation in under 60 s on one core, and at least
50x the naive scan's rate. Results are recorded in bench/README.md ("Matching").
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.seedpapers import PaperLike, load_seed

from digest import match as matching
from digest.match import query as q
from digest.match import text as textmod

SURNAMES = ["Bengio", "Lovelace", "Hinton", "Li", "Wang", "Zhang", "Smith", "Garcia", "Kumar",
            "Müller", "Okafor", "Tanaka", "Nguyen", "Rossi", "Novak", "Silva", "Cohen", "Kim"]  # fmt: skip
GIVEN = ["Yoshua", "Ada", "Wei", "Maria", "Priya", "Jonas", "Chen", "Amara", "Kenji", "Lucia"]
CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.CR", "stat.ML", "cs.RO", "eess.SP"]


def content_words(text: str) -> list[str]:
    return [w for w in textmod.query_words(text) if not textmod.is_stop_word(w) and len(w) > 2]


def synthesise_papers(seed: list[dict[str, str]], n: int, rng: random.Random) -> list[PaperLike]:
    sentences = [s for p in seed for s in re.split(r"(?<=[.!?])\s+", p["abstract"]) if len(s) > 30]
    titles = [p["title"] for p in seed]
    start = datetime(2026, 11, 28, tzinfo=UTC)
    papers = []
    for i in range(n):
        # A title: the front of one seed title and the back of another.
        a, b = rng.choice(titles).split(), rng.choice(titles).split()
        title = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :])
        abstract = " ".join(rng.sample(sentences, rng.randint(6, 11)))
        hf = rng.random() < 0.3
        papers.append(
            PaperLike(
                id=i,
                title=title,
                abstract=abstract,
                authors=[
                    f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}" for _ in range(rng.randint(1, 6))
                ],
                categories=rng.sample(CATEGORIES, rng.randint(1, 3)),
                sources=["hf", "arxiv"] if hf else ["arxiv"],
                upvotes=int(rng.paretovariate(1.2)) if hf else None,
                first_seen_at=start + timedelta(seconds=rng.randint(0, 86_400)),
            )
        )
    return papers


def topic_generator(seed: list[dict[str, str]], rng: random.Random):  # type: ignore[no-untyped-def]
    title_words = [content_words(p["title"]) for p in seed]
    bigrams = [(ws[i], ws[i + 1]) for ws in title_words for i in range(len(ws) - 1)]
    singles = [w for ws in title_words for w in ws]
    abstract_words = [textmod.query_words(p["abstract"]) for p in seed]
    trigrams = [
        ws[i : i + 3]
        for ws in abstract_words
        for i in range(len(ws) - 2)
        if not textmod.is_stop_word(ws[i]) and not textmod.is_stop_word(ws[i + 2])
    ]

    def concept() -> str:
        return " ".join(rng.choice(bigrams))

    def make() -> str:
        r = rng.random()
        if r < 0.35:
            return concept()  # "machine unlearning"
        if r < 0.50:
            return rng.choice(singles)  # "guardrails"
        if r < 0.60:
            return '"' + " ".join(rng.choice(trigrams)) + '"'  # "jailbreak attacks on"
        if r < 0.70:
            return f"{concept()} OR {concept()}"
        if r < 0.78:
            words = rng.choice(bigrams)
            # Readers exclude a word they did not ask for ("x -x" is refused as a contradiction).
            asked = {textmod.term(w) for w in words}
            excluded = rng.choice(singles)
            while textmod.term(excluded) in asked:
                excluded = rng.choice(singles)
            return f"{' '.join(words)} -{excluded}"
        if r < 0.84:
            return " ".join(rng.choice(trigrams))  # "attacks on LLMs": words with a stop word
        if r < 0.90:
            return f"title:{rng.choice(singles)} {rng.choice(singles)}"
        if r < 0.94:
            return f"author:{rng.choice(SURNAMES).lower()} {rng.choice(singles)}"
        if r < 0.98:
            return f"{concept()} cat:{rng.choice(['cs.*', 'cs.LG', 'cs.CL', 'stat.ML'])}"
        return f"{rng.choice(singles)} upvotes:>={rng.choice([5, 10, 20])}"

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=3000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=5, help="topics per subscriber")
    parser.add_argument("--max-papers", type=int, default=20)
    parser.add_argument("--naive-sample", type=int, default=100)
    parser.add_argument("--evaluate-sample", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    seed = load_seed()
    papers = synthesise_papers(seed, args.papers, rng)
    make = topic_generator(seed, rng)
    subscribers = []
    for s in range(args.subscribers):
        topics = [matching.TopicSpec(s * 10 + t, f"t{t}", make()) for t in range(args.topics)]
        subscribers.append((s, topics, args.max_papers))
    all_topics = [t.query for _, topics, _ in subscribers for t in topics]
    n_topics = len(all_topics)
    distinct = len(set(all_topics))
    print(
        f"{args.papers} papers, {args.subscribers} subscribers x {args.topics} topics = "
        f"{n_topics} topics ({distinct} distinct)"
    )

    t0 = time.perf_counter()
    index = matching.build_index(papers)
    t_index = time.perf_counter() - t0
    print(f"build_index: {t_index:.2f} s")

    # Every topic text must parse (they are drawn to be valid); parse errors would
    # make the run meaningless.
    for text in set(all_topics):
        q.parse(text)
    q._parse.cache_clear()

    # 1. The pipeline's batch call: parse, evaluate, union, rank, cap. Reasons and
    #    highlighted words are worked out when a digest reads them (see 1b).
    t0 = time.perf_counter()
    results = matching.match_many(index, subscribers)
    t_full = time.perf_counter() - t0
    sent = sum(len(v) for v in results.values())
    print(
        f"match_many (parse + evaluate + rank, {sent} papers kept): "
        f"{t_full:.1f} s = {n_topics / t_full:,.0f} topics/s"
    )
    # 1b. What rendering one digest adds: its reasons and words (lazily computed).
    sample_keys = rng.sample(list(results), min(2000, len(results)))
    t0 = time.perf_counter()
    for key in sample_keys:
        for mp in results[key]:
            _ = mp.reason, mp.terms
    t_explain = (time.perf_counter() - t0) / len(sample_keys)
    print(f"reasons + words for one digest of {args.max_papers}: {t_explain * 1000:.2f} ms")

    # 2. matching.evaluate alone (every match scored and listed, as the backtest
    #    does), on a sample of the topics and a fresh index.
    index2 = matching.build_index(papers)
    parsed = [q.parse(text) for text in rng.sample(all_topics, min(args.evaluate_sample, n_topics))]
    t0 = time.perf_counter()
    matched = 0
    for query in parsed:
        matched += len(matching.evaluate(index2, query))
    t_eval = time.perf_counter() - t0
    rate = len(parsed) / t_eval
    print(
        f"evaluate, {len(parsed)}-topic sample ({matched / len(parsed):.1f} matches/topic "
        f"on average, every one scored): {t_eval:.1f} s = {rate:,.0f} topics/s"
    )

    # 3. The naive per-topic scan on a sample, papers tokenised once beforehand.
    tokenised = matching.tokenise(papers)
    sample = rng.sample(parsed, min(args.naive_sample, len(parsed)))
    t0 = time.perf_counter()
    for query in sample:
        naive = matching.naive_matches(papers, query, tokenised)
        assert naive == set(matching.evaluate(index2, query)), query.text
    t_naive = time.perf_counter() - t0
    naive_rate = len(sample) / t_naive
    print(f"naive scan, {len(sample)}-topic sample: {naive_rate:,.1f} topics/s (same matches)")
    print(
        f"ratio: match_many {n_topics / t_full / naive_rate:,.0f}x the naive scan's rate; "
        f"evaluate {rate / naive_rate:,.0f}x"
    )
    if args.subscribers >= 100_000:
        ok = t_full < 60 and n_topics / t_full / naive_rate >= 50
        print("target (full run < 60 s, >= 50x naive):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()

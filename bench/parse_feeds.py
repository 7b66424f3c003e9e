"""Benchmark: parsing a big arXiv RSS listing, arXiv API page and HF JSON.

Builds each document from the seed papers (the real formats, via
tests/tools/make_sample_feeds.py) with N distinct entries, then times:

- ``digest.sources.arxiv_rss.parse`` (defusedxml ElementTree) against the baseline
  of handing the same bytes to feedparser (what a generic reader would do),
- ``digest.sources.arxiv_api.parse`` against feedparser on the same bytes,
- ``digest.sources.hf_daily.parse``,
- ``digest.sources.rss.parse`` (our feedparser path, with normalisation).

Speeds are reported as entries/s and as a ratio to the feedparser baseline measured
in the same run, so the figure survives a change of machine.

    .venv/bin/python bench/parse_feeds.py [--entries 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import feedparser  # noqa: E402

from digest.ingest.sources import arxiv_api, arxiv_rss, hf_daily, rss  # noqa: E402
from tests.tools import make_sample_feeds as gen  # noqa: E402


def documents(entries: int) -> dict[str, bytes]:
    seed = gen.load_seed()
    papers = []
    for i in range(entries):
        paper = dict(seed[i % len(seed)])
        paper["index"] = i
        paper["id"] = f"25{(i // 90000) % 12 + 1:02d}.{10000 + i % 90000:05d}"
        papers.append(paper)
    types = ["new", "new", "new", "cross", "replace"]
    items = [gen.rss_item(p, types[i % 5], 1 + (i % 5 == 4)) for i, p in enumerate(papers)]
    api = [gen.api_entry(p, 1, gen.DAY - timedelta(days=1), gen.DAY) for p in papers]
    hf = [gen.hf_item(p, i % 200, i % 7, gen.DAY) for i, p in enumerate(papers)]
    return {
        "arxiv-rss": gen.rss_document("cs.LG", items).encode(),
        "arxiv-api": gen.api_document("search_query=all:safety", api, entries).encode(),
        "hf-daily": json.dumps(hf).encode(),
    }


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    docs = documents(args.entries)
    url = "https://example.org/feed"

    def ours(module: object, kind: str) -> Callable[[], int]:
        return lambda: len(module.parse(docs[kind], url).papers)  # type: ignore[attr-defined]

    def feedparser_only(kind: str) -> Callable[[], int]:
        return lambda: len(feedparser.parse(io.BytesIO(docs[kind])).entries)

    rows = []
    for kind, module in (("arxiv-rss", arxiv_rss), ("arxiv-api", arxiv_api)):
        base_t, base_n = best_of(args.repeat, feedparser_only(kind))
        our_t, our_n = best_of(args.repeat, ours(module, kind))
        generic_t, _ = best_of(args.repeat, ours(rss, kind))
        assert our_n == base_n == args.entries, (kind, our_n, base_n)
        rows.append((f"{kind}: feedparser alone (baseline)", base_n / base_t, 1.0))
        rows.append(
            (
                f"{kind}: digest.sources.{module.__name__.rsplit('.', 1)[-1]}",
                our_n / our_t,
                base_t / our_t,
            )
        )
        rows.append(
            (
                f"{kind}: digest.sources.rss (feedparser + normalise)",
                our_n / generic_t,
                base_t / generic_t,
            )
        )
    hf_t, hf_n = best_of(args.repeat, ours(hf_daily, "hf-daily"))
    rows.append(("hf-daily: digest.sources.hf_daily", hf_n / hf_t, float("nan")))

    sizes = ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in docs.items())
    print(f"{args.entries} entries per document ({sizes}); best of {args.repeat}")
    print(f"{'parser':<62} {'entries/s':>12} {'x baseline':>11}")
    for name, rate, ratio in rows:
        print(f"{name:<62} {rate:>12,.0f} {ratio:>11.1f}")


if __name__ == "__main__":
    main()

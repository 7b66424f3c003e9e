"""Benchmark: hostile feed bodies must cost time linear in their size.

Each case builds a hostile body of N bytes and of 2N bytes and times the whole parse
(``digest.ingest.sources.parse_feed`` for the kind, errors included, as a fetch would
run it). Linear work gives a ratio near 2; quadratic work near 4. The cases are the
ones a hostile review found (``<`` after ``<`` inside feed text, ``<!DOCTYPE``
repeated, a Hugging Face JSON whose abstracts are ``<`` repetitions) plus the other
regex-fed fields (authors, links, identifiers, whitespace runs).

    .venv/bin/python bench/parse_hostile.py [--size 1000000] [--repeat 3] [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.errors import FeedFormatError  # noqa: E402
from digest.ingest.sources import parse_feed  # noqa: E402
from digest.store.models import FeedKind  # noqa: E402


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def _rss(description: bytes, title: bytes = b"A title", extra: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
        b"<title>" + title + b"</title><link>https://example.org/a</link>"
        b"<description>" + description + b"</description>" + extra + b"</item></channel></rss>"
    )


def _arxiv_rss(description: bytes, creator: bytes = b"A. Author") -> bytes:
    return (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom"'
        b' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>cs.LG</title><item>'
        b"<title>A title</title><link>https://arxiv.org/abs/2509.00001</link>"
        b"<description>arXiv:2509.00001v1 Announce Type: new \nAbstract: "
        + description
        + b"</description>"
        b"<guid>oai:arXiv.org:2509.00001v1</guid><arxiv:announce_type>new</arxiv:announce_type>"
        b"<dc:creator>" + creator + b"</dc:creator></item></channel></rss>"
    )


def _hf(summary: str, papers: int = 50) -> bytes:
    per = summary[: max(1, len(summary) // papers)]
    return json.dumps(
        [
            {
                "paper": {
                    "id": f"2509.{10000 + i}",
                    "title": f"Paper {i}",
                    "summary": per,
                    "authors": [{"name": "A. Author"}],
                    "upvotes": i,
                }
            }
            for i in range(papers)
        ]
    ).encode()


#: name -> (feed kind, body of about ``size`` bytes)
CASES: dict[str, tuple[FeedKind, Callable[[int], bytes]]] = {
    "rss: raw '<' repetition": (FeedKind.RSS, lambda n: _repeat(b"<", n)),
    "rss: '<script ' in a description": (FeedKind.RSS, lambda n: _rss(_repeat(b"&lt;script ", n))),
    "rss: '<a ' in a title": (FeedKind.RSS, lambda n: _rss(b"x", _repeat(b"&lt;a ", n))),
    "rss: '<!DOCTYPE ' repetition": (FeedKind.RSS, lambda n: _repeat(b"<!DOCTYPE ", n)),
    "rss: '<!DOCTYPE [' repetition": (FeedKind.RSS, lambda n: _repeat(b"<!DOCTYPE [", n)),
    "arxiv-rss: '<!DOCTYPE ' repetition": (FeedKind.ARXIV_RSS, lambda n: _repeat(b"<!DOCTYPE ", n)),
    "arxiv-rss: '<script ' in an abstract": (
        FeedKind.ARXIV_RSS,
        lambda n: _arxiv_rss(_repeat(b"&lt;script ", n)),
    ),
    "arxiv-rss: '<!--' in an abstract": (
        FeedKind.ARXIV_RSS,
        lambda n: _arxiv_rss(_repeat(b"&lt;!--&lt;", n)),
    ),
    "arxiv-rss: spaces in the authors": (
        FeedKind.ARXIV_RSS,
        lambda n: _arxiv_rss(b"x", b"A" + _repeat(b" ", n) + b"B"),
    ),
    "arxiv-api: '<script ' in a summary": (
        FeedKind.ARXIV_API,
        lambda n: (
            b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry>'
            b"<id>http://arxiv.org/abs/2509.00001v1</id><title>t</title><summary>"
            + _repeat(b"&lt;script ", n)
            + b"</summary></entry></feed>"
        ),
    ),
    "hf-daily: '<script ' in the abstracts": (
        FeedKind.HF_DAILY,
        lambda n: _hf("<script " * (n // 8)),
    ),
    "hf-daily: '<' in the abstracts": (FeedKind.HF_DAILY, lambda n: _hf("<" * n)),
    "rss: 'arXiv:' in a guid": (
        FeedKind.RSS,
        lambda n: _rss(b"x", extra=b"<guid>" + _repeat(b"arXiv: ", n) + b"</guid>"),
    ),
    "rss: '10.1101/' in a link": (
        FeedKind.RSS,
        lambda n: _rss(b"x", extra=b"<guid>10.1101/" + _repeat(b"a", n) + b"</guid>"),
    ),
}


def run(kind: FeedKind, body: bytes) -> str:
    try:
        result = parse_feed(kind, body, "https://example.org/feed", None)
    except FeedFormatError as exc:
        return f"refused ({str(exc)[:40]})"
    return f"{len(result.papers)} papers"


def best_of(repeat: int, fn: Callable[[], str]) -> tuple[float, str]:
    best, what = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        what = fn()
        best = min(best, time.perf_counter() - start)
    return best, what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="bytes of the 1x body")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", help="run only cases whose name contains this")
    args = parser.parse_args()
    print(f"{'case':<42} {'1x s':>8} {'2x s':>8} {'ratio':>6}  outcome")
    for name, (kind, make) in CASES.items():
        if args.case and args.case not in name:
            continue
        small, large = make(args.size), make(2 * args.size)
        one, what = best_of(args.repeat, lambda: run(kind, small))  # noqa: B023 - called at once
        two, _ = best_of(args.repeat, lambda: run(kind, large))  # noqa: B023
        ratio = two / one if one > 0 else float("nan")
        print(f"{name:<42} {one:8.3f} {two:8.3f} {ratio:6.2f}  {what}", flush=True)


if __name__ == "__main__":
    main()

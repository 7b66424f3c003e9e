"""Cards rendered once and reused across readers: the same bytes as rendering each whole.

The digests below (the seed papers, for readers with different topics, orders, numbers,
links and options, plus the hostile papers, a day too big for one email and the quiet
days) were rendered by the renderer as it was before cards were reused (commit
34e853a, where every card was laid out inside the whole template for every reader);
``tests/data/render_golden.json`` holds the SHA-256 of each subject, HTML and text
part. The renderer must still give exactly those bytes, on a cold cache and on a warm
one filled by other readers' digests of the same papers.

Regenerate (only when a template is changed on purpose):
``DIGEST_WRITE_GOLDEN=1 .venv/bin/pytest tests/test_render_reuse.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.emailkit import (
    LABELS,
    context,
    email_settings,
    hostile_papers,
    matched,
    paper,
    seed_papers,
)

from digest.core import caches
from digest.match.rank import MatchedPaper, TopicHit
from digest.render.emails import DigestContext, RenderedEmail, render_digest

GOLDEN = Path(__file__).resolve().parent / "data" / "render_golden.json"


def _rehit(m: MatchedPaper, label: str, terms: list[str], reason: str, topic: int) -> MatchedPaper:
    return MatchedPaper(m.paper, m.score, [TopicHit(topic, label, 1.0, terms, reason)])


def cases() -> dict[str, Callable[[], DigestContext]]:
    plain = email_settings(inbound=False)
    inbound = email_settings()
    seed = seed_papers(30)
    other_labels = ["agents", "safety", "unlearning", "reasoning"]
    other_terms = [["agent"], ["safety", "jailbreak"], ["unlearning"], ["reasoning", "model"]]

    def reader(n: int) -> list[MatchedPaper]:
        # Another reader of the same day: other topics, so other terms and reasons for
        # some of the same papers, in another order.
        picked = [seed[(n * 7 + j * 5) % len(seed)] for j in range(8 + n % 9)]
        return [
            _rehit(m, other_labels[(n + j) % 4], other_terms[(n + j) % 4], f"matches {n}", j % 4)
            for j, m in enumerate(picked)
        ]

    long = "This is a rather long sentence about language models and their safety. " * 40
    big = [
        matched(
            paper(i, title="A very long title about large language models " * 5, abstract=long),
            LABELS[i % 3],
            ["models", "safety", "language"],
            'title matches "models"; abstract matches "safety"',
        )
        for i in range(200)
    ]
    bare = [
        matched(paper(500, title="No links", url="", pdf_url="", hf_url="", authors=[]), "x"),
        matched(paper(501, abstract="", categories=[], upvotes=12), "agents", ["paper"]),
    ]
    near = [matched(paper(9, title="Almost <relevant>"), "agents", ["agent"])]
    stop = "https://digest.example.org/stop/tok"
    web = "https://digest.example.org/d/42"
    out: dict[str, Callable[[], DigestContext]] = {
        "seed15_web": lambda: context(plain, seed_papers(15), web_url=web),
        "seed30_inbound_stop": lambda: context(inbound, seed, stop_url=stop, web_url=web),
        "seed12_weekly_beyond": lambda: context(
            plain, seed_papers(12), weekly=True, beyond_limit=7
        ),
        "hostile": lambda: context(plain, hostile_papers(), topic_labels=["agents"]),
        "hostile_inbound": lambda: context(inbound, hostile_papers(), stop_url=stop),
        "too_big": lambda: context(plain, big),
        "too_big_inbound": lambda: context(inbound, big, stop_url=stop, web_url=web),
        "bare": lambda: context(inbound, bare, topic_labels=["x", "agents"], stop_url=stop),
        "quiet_nothing_new": lambda: context(plain, [], papers_arrived=0),
        "quiet_near_misses": lambda: context(plain, [], papers_arrived=17, near_misses=near),
        "quiet_weekly_inbound": lambda: context(inbound, [], papers_arrived=3, weekly=True),
    }
    for n in range(8):
        out[f"reader{n}"] = lambda n=n: context(
            inbound if n % 2 else plain,
            reader(n),
            email=f"reader{n}@example.org",
            topic_labels=other_labels[n % 4 :] + other_labels[: n % 4],
            stop_url=stop if n % 3 else None,
            web_url=web if n % 2 else None,
            beyond_limit=n % 3,
        )
    return out


def digests(rendered: RenderedEmail) -> dict[str, object]:
    return {
        "subject": hashlib.sha256(rendered.subject.encode()).hexdigest(),
        "html": hashlib.sha256(rendered.html.encode()).hexdigest(),
        "text": hashlib.sha256(rendered.text.encode()).hexdigest(),
        "shown": rendered.shown,
        "paper_ids": list(rendered.paper_ids),
    }


def test_every_digest_is_the_bytes_the_whole_template_gave() -> None:
    made = cases()
    if os.environ.get("DIGEST_WRITE_GOLDEN"):
        GOLDEN.write_text(
            json.dumps({k: digests(render_digest(f())) for k, f in made.items()}, indent=1) + "\n"
        )
    golden = json.loads(GOLDEN.read_text())
    assert sorted(golden) == sorted(made)
    # Cold: each digest on empty caches.
    for name, make in made.items():
        caches.clear_all()
        assert digests(render_digest(make())) == golden[name], name
    # Warm: every reader's digest after everybody else's, twice, in two orders, so
    # every card comes from another reader's digest.
    caches.clear_all()
    for name in [*made, *reversed(made)]:
        assert digests(render_digest(made[name]())) == golden[name], name


@pytest.mark.parametrize("budget", [None, 40_000])
def test_budgets_other_than_the_default_are_the_same_bytes_warm_and_cold(
    budget: int | None,
) -> None:
    make = cases()["seed30_inbound_stop"]
    caches.clear_all()
    cold = render_digest(make(), html_budget=budget)
    for other in cases().values():
        render_digest(other())
    assert render_digest(make(), html_budget=budget) == cold

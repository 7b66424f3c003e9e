"""Papers and digest contexts for the email tests (and the render benchmark)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from types import SimpleNamespace

from digest.config import Settings
from digest.match.rank import MatchedPaper, TopicHit
from digest.render.emails import DigestContext

SEED = Path(__file__).resolve().parent.parent / "data" / "seed_papers.json"
LABELS = ["machine unlearning", "jailbreaks", "agents"]
AUTHORS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Chen Wei", "Yuki Tanaka", "Ola Nordmann"]


def paper(i: int = 0, **fields: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "id": i,
        "title": f"Paper {i}",
        "abstract": "An abstract.",
        "authors": AUTHORS[: 1 + i % len(AUTHORS)],
        "categories": ["cs.LG", "cs.CL"],
        "url": f"https://arxiv.org/abs/2411.{i:05d}",
        "pdf_url": f"https://arxiv.org/pdf/2411.{i:05d}",
        "hf_url": f"https://huggingface.co/papers/2411.{i:05d}",
        "upvotes": None,
    }
    values.update(fields)
    return SimpleNamespace(**values)


def matched(
    p: object, label: str, terms: list[str] | None = None, reason: str = ""
) -> MatchedPaper:
    terms = terms or []
    reason = reason or (f'abstract matches "{terms[0]}"' if terms else "trending")
    return MatchedPaper(p, 1.0, [TopicHit(1, label, 1.0, terms, reason)])  # type: ignore[arg-type]


def seed_papers(n: int = 12) -> list[MatchedPaper]:
    """Real titles and abstracts from tests/data/seed_papers.json, spread over topics."""
    seed = json.loads(SEED.read_text())
    terms = [["unlearning", "forget"], ["jailbreak", "safety"], ["agent", "agents"]]
    out = []
    for i, item in enumerate(seed[:n]):
        k = i % 3
        p = paper(i, title=item["title"], abstract=item["abstract"], upvotes=(i * 7) % 40 or None)
        out.append(matched(p, LABELS[k], terms[k], f'abstract matches "{terms[k][0]}"'))
    return out


def context(settings: Settings, papers: list[MatchedPaper], **overrides: object) -> DigestContext:
    values: dict[str, object] = {
        "settings": settings,
        "email": "ada@example.org",
        "timezone": "Europe/London",
        "date": date(2026, 11, 29),
        "papers": papers,
        "topic_labels": LABELS,
        "manage_url": "https://digest.example.org/manage/tok",
        "unsubscribe_url": "https://digest.example.org/unsubscribe/tok",
        "papers_arrived": len(papers),
    }
    values.update(overrides)
    return DigestContext(**values)  # type: ignore[arg-type]


def email_settings(tmp_path: Path | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "base_url": "https://digest.example.org",
        "from_addr": "Paper Digest <digest@digest.example.org>",
        "postal_address": "1 Example Street, Testville",
    }
    if tmp_path is not None:
        values["outbox"] = tmp_path / "outbox"
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "/relative/path",
    'https://ok.example/"onmouseover="alert(1)',
    "https://ok.example/<script>",
    "https://ok.example/\r\nBcc: x@evil.example",
    "file:///etc/passwd",
]


def hostile_papers() -> list[MatchedPaper]:
    items = [
        paper(
            100,
            title="<script>alert('t')</script> Scripted title",
            abstract="<img src=x onerror=alert(1)> an <b>abstract</b> with <form action=x><input></form>",
            url="javascript:alert(1)",
            pdf_url="data:text/html;base64,PHNjcmlwdD4=",
            hf_url="&#106;avascript:alert(1)",
        ),
        paper(
            101,
            title="Innocent title\r\nBcc: victim@evil.example\r\nX-Evil: 1",
            authors=[
                "Eve\r\nBcc: eve@evil.example",
                "Mallory\x00 Null",
                "<img src=x onerror=alert(2)>",
            ],
            abstract="NUL\x00 byte and \x1b[31mterminal escapes\x07 and a\u202egnp.exe override.",
            url="https://arxiv.org/abs/2411.00101",
            categories=["cs.CR", "<b>x</b>", "a\r\nb"],
        ),
        paper(
            102,
            title="🚀 大型语言模型的安全性研究 — ÜBER «Sicherheit» 🔒",
            abstract="长摘要。" * 5000,  # 20,000 characters, no ASCII sentence ends
            url="https://huggingface.co/papers/2411.00102",
            upvotes=321,
        ),
        paper(103, title="Long abstract", abstract=("word " * 4000).strip()),
    ]
    for i, u in enumerate(HOSTILE_URLS):
        items.append(paper(200 + i, title=f"Hostile link {i}", url=u, pdf_url=u, hf_url=u))
    out = [
        matched(
            items[0], "<script>alert('label')</script>", ["<b>", 'a"b', "script"], "<iframe src=x>"
        ),
        matched(items[1], "jailbreaks\r\nBcc: x@evil.example", ["Bcc"], "title matches\r\nBcc"),
        matched(items[2], "安全 🔒", ["安全性研究", "Sicherheit"]),
        matched(items[3], "agents", ["word"]),
    ]
    out += [matched(p, "agents", ["link"]) for p in items[4:]]
    return out

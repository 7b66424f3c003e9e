"""Benchmark: digest emails rendered per second, MJML compiled once vs. per email.

Both ways run in the same process on the same digests (20 papers per reader,
drawn from a day's pool of 300 built from the real titles and abstracts in
tests/data/seed_papers.json, over 3 topics, varied per reader), so the ratio is
meaningful on any machine. "Compiled once" is digest.render.render_digest with
its per-process template cache; "MJML per email" clears that cache before each
email, so every email pays mjml2html plus parsing the compiled template, which
is what rendering without the cache would cost.

Message building is measured the same way: digest.message.build_message (bytes
assembled by hand with binascii) against email.message.EmailMessage +
as_bytes() for the same subject, text and HTML, and build_message with DKIM
signing (a fresh RSA-2048 key from openssl; dkimpy signs in pure Python).

    .venv/bin/python bench/render.py               # 2,000 emails compiled-once, 200 per-email
    .venv/bin/python bench/render.py --emails 500 --papers 50

Results are recorded in bench/README.md ("Render").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest import render
from digest.config import Settings
from digest.core.clock import utcnow
from digest.deliver.message import build_message, make_message_id
from digest.match.rank import MatchedPaper, TopicHit
from digest.render import emails as render_emails
from digest.render import templates as render_templates

SEED = Path(__file__).resolve().parent.parent / "tests" / "data" / "seed_papers.json"
LABELS = ["machine unlearning", "jailbreaks", "agents"]
TERMS = [["unlearning", "forget"], ["jailbreak", "safety"], ["agent", "agents"]]
AUTHORS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Chen Wei", "Yuki Tanaka", "Ola Nordmann"]


def contexts(
    settings: Settings, n: int, papers: int, pool_size: int = 300
) -> list[render.DigestContext]:
    """``n`` readers' digests drawn from one day's pool of papers, as in a real batch."""
    seed = json.loads(SEED.read_text())
    pool = [
        SimpleNamespace(
            id=j,
            title=seed[j % len(seed)]["title"]
            + ("" if j < len(seed) else f" (part {j // len(seed) + 1})"),
            abstract=seed[j % len(seed)]["abstract"],
            authors=AUTHORS[: 1 + j % len(AUTHORS)],
            categories=["cs.LG", "cs.CL"],
            url=f"https://arxiv.org/abs/2411.{j:05d}",
            pdf_url=f"https://arxiv.org/pdf/2411.{j:05d}",
            hf_url=f"https://huggingface.co/papers/2411.{j:05d}",
            upvotes=(j * 7) % 40 or None,
        )
        for j in range(pool_size)
    ]
    out = []
    for e in range(n):
        matched = []
        for j in range(papers):
            paper = pool[(e * 13 + j * 7) % pool_size]
            k = (e + j) % 3
            hit = TopicHit(k, LABELS[k], 1.0, TERMS[k], f'abstract matches "{TERMS[k][0]}"')
            matched.append(MatchedPaper(paper, 1.0, [hit]))  # type: ignore[arg-type]
        out.append(
            render.DigestContext(
                settings=settings,
                email=f"reader{e}@example.org",
                timezone="UTC",
                date=date(2026, 11, 29),
                papers=matched,
                topic_labels=LABELS,
                manage_url=f"https://digest.example.org/manage/{e}.1.1.abc",
                unsubscribe_url=f"https://digest.example.org/unsubscribe/{e}.1.1.abc",
                papers_arrived=pool_size,
            )
        )
    return out


def whole_templates() -> render_templates.CompiledTemplates:
    """The digest's templates with the card fragments put back inline: every card laid
    out again in every reader's digest, as the renderer did before cards were reused."""
    text_of = render_templates._template_text
    card_html = text_of("digest", "card.html")
    title, body = re.findall(r"{% macro \w+\(card\) %}(.*?){% endmacro %}", card_html, re.S)
    card_text = text_of("digest", "card.txt").split("-#}\n", 1)[1]
    html = text_of("digest", "body.mjml")
    html = html.replace("{{ card.html_title }}", title).replace("{{ card.html_body }}", body)
    text = text_of("digest", "body.txt").replace("{{ card.text_body }}", card_text)
    return render_templates.CompiledTemplates(
        subject=render_templates._TEXT_ENV.from_string(text_of("digest", "subject.txt")),
        html=render_templates._HTML_ENV.from_string(render_templates.compile_mjml(html)),
        text=render_templates._TEXT_ENV.from_string(text),
    )


class NoReuse:
    """Stands in for render.fragments.CARDS: no card is laid out ahead of the template."""

    def fill(self, cards: object) -> None:
        pass


def render_whole(ctx: render.DigestContext) -> render.RenderedEmail:
    """One digest with every card laid out inside the whole template (the old way)."""
    reused, compiled = render_emails.CARDS, render_templates.compiled_templates
    whole = whole_templates_once()
    render_emails.CARDS = NoReuse()  # type: ignore[assignment]
    render_emails.compiled_templates = lambda kind: whole  # type: ignore[assignment]
    try:
        return render.render_digest(ctx)
    finally:
        render_emails.CARDS, render_emails.compiled_templates = reused, compiled


_WHOLE: list[render_templates.CompiledTemplates] = []


def whole_templates_once() -> render_templates.CompiledTemplates:
    if not _WHOLE:
        _WHOLE.append(whole_templates())
    return _WHOLE[0]


def rate(fn, items) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Items per second and median ms per item."""
    times = []
    start = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return len(items) / total, statistics.median(times) * 1000


def email_message(settings: Settings, rendered: render.RenderedEmail, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = settings.from_addr
    msg["To"] = to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_message_id(1, settings.from_domain)
    msg["List-Unsubscribe"] = "<https://digest.example.org/unsubscribe/x>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=2000, help="emails for the fast paths")
    parser.add_argument("--baseline", type=int, default=200, help="emails for the slow paths")
    parser.add_argument("--papers", type=int, default=20, help="papers per digest")
    args = parser.parse_args()

    settings = Settings(
        base_url="https://digest.example.org",
        from_addr="Paper Digest <digest@digest.example.org>",
        postal_address="1 Example Street, Testville",
    )
    items = contexts(settings, args.emails, args.papers)
    render.render_digest(items[0])  # warm: compile once, import mjml

    render_whole(items[0])
    # The two ways in alternating slices, so a noisy neighbour hurts both alike.
    whole_t: list[float] = []
    reuse_t: list[float] = []
    for start in range(0, len(items), 100):
        part = items[start : start + 100]
        whole_t.append(len(part) / rate(render_whole, part)[0])
        reuse_t.append(len(part) / rate(render.render_digest, part)[0])
    whole_rate, reuse_rate = len(items) / sum(whole_t), len(items) / sum(reuse_t)
    for ctx in items[:200]:
        assert render_whole(ctx) == render.render_digest(ctx), "reused cards changed a digest"
    once_rate, once_ms = rate(render.render_digest, items)

    def per_email(ctx: render.DigestContext) -> render.RenderedEmail:
        render.compiled_templates.cache_clear()
        return render.render_digest(ctx)

    per_rate, per_ms = rate(per_email, items[: args.baseline])
    render.compiled_templates.cache_clear()

    # Same output either way (the point of protecting Jinja through MJML).
    a = render.render_digest(items[1])
    render.compiled_templates.cache_clear()
    b = per_email(items[1])
    assert a == b, "compiled-once and per-email output differ"

    rendered = [render.render_digest(c) for c in items]
    sizes = [len(r.html.encode()) for r in rendered]

    def build(i: int) -> bytes:
        return build_message(
            settings,
            rendered[i],
            to=items[i].email,
            message_id=make_message_id(i, settings.from_domain),
            unsubscribe_url=items[i].unsubscribe_url,
        ).data

    build_rate, build_ms = rate(build, range(len(items)))
    stdlib_rate, stdlib_ms = rate(
        lambda i: email_message(settings, rendered[i], items[i].email), range(args.baseline)
    )
    message_kb = statistics.median(len(build(i)) for i in range(20)) / 1024

    dkim_rate = dkim_ms = float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "dkim.pem"
        made = subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True, check=False
        )
        if made.returncode == 0:
            signing = replace(settings, dkim_key_file=str(key), dkim_selector="bench")

            def build_signed(i: int) -> bytes:
                return build_message(
                    signing,
                    rendered[i],
                    to=items[i].email,
                    message_id=make_message_id(i, settings.from_domain),
                    unsubscribe_url=items[i].unsubscribe_url,
                ).data

            dkim_rate, dkim_ms = rate(build_signed, range(args.baseline))

    cpu = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"digests: {args.papers} papers each; HTML median {statistics.median(sizes) / 1024:.1f} KB, "
          f"max {max(sizes) / 1024:.1f} KB; message median {message_kb:.1f} KB")  # fmt: skip
    print(f"machine: {cpu} CPUs, load average {load:.2f}")
    print()
    print(f"{'what':40} {'per second':>12} {'median ms':>10}")
    print(f"{'render, cards laid out per reader':40} {whole_rate:12.0f} {1000 / whole_rate:10.3f}")
    print(
        f"{'render, cards laid out once, reused':40} {reuse_rate:12.0f} {1000 / reuse_rate:10.3f}"
    )
    print(f"{'  ratio':40} {reuse_rate / whole_rate:11.1f}x")
    print(f"{'render, MJML compiled once (cached)':40} {once_rate:12.0f} {once_ms:10.3f}")
    print(f"{'render, MJML compiled per email':40} {per_rate:12.0f} {per_ms:10.3f}")
    print(f"{'  ratio':40} {once_rate / per_rate:11.1f}x")
    print(f"{'build message, hand-assembled bytes':40} {build_rate:12.0f} {build_ms:10.3f}")
    print(f"{'build message, EmailMessage.as_bytes':40} {stdlib_rate:12.0f} {stdlib_ms:10.3f}")
    print(f"{'  ratio':40} {build_rate / stdlib_rate:11.1f}x")
    print(f"{'build message + DKIM (RSA-2048, dkimpy)':40} {dkim_rate:12.0f} {dkim_ms:10.3f}")
    both = 1 / (1 / once_rate + 1 / build_rate)
    print(f"{'render + build, per email':40} {both:12.0f} {1000 / both:10.3f}")


if __name__ == "__main__":
    main()

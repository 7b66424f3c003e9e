"""`digest papers …`: look at what has been ingested."""

from __future__ import annotations

from datetime import datetime

import click

from digest import ingest
from digest.cli.common import Moment, echo_json, echo_table, open_session
from digest.store.models import Paper


@click.group("papers")
def group() -> None:
    """Inspect stored papers."""


@group.command("list")
@click.option(
    "--since",
    type=Moment(),
    help="Only papers first seen at or after this date/time (ISO 8601, UTC if no offset).",
)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(since: datetime | None, limit: int, as_json: bool) -> None:
    """List papers, newest first.

    Example: digest papers list --since 2026-11-28 --json
    """
    with open_session() as session:
        papers = ingest.list_papers(session, since, limit)
        if as_json:
            echo_json([paper_dict(p) for p in papers])
            return
        echo_table(
            ["id", "key", "first seen", "sources", "upvotes", "title"],
            [
                (p.id, p.key, p.first_seen_at, ",".join(p.sources), p.upvotes, p.title)
                for p in papers
            ],
            empty=(
                f"no papers first seen since {since:%Y-%m-%d %H:%M} UTC"
                if since is not None
                else "no papers yet: run `digest fetch`"
            ),
        )


@group.command("show")
@click.argument("ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(ref: str, as_json: bool) -> None:
    """Show one paper: every field, and which feed set it.

    ID is the paper's id (`digest papers list`), its key or its arXiv id. A source
    is authoritative only for what it owns: arXiv for text, authors, categories and
    versions, Hugging Face for upvotes; other feeds only fill empty fields.

    Example: digest papers show 2507.10753
    """
    with open_session() as session:
        paper = ingest.get_paper(session, ref)
        rows = ingest.field_sources(session, paper)
        record = paper_dict(paper)
    if as_json:
        record["field_sources"] = {r.field: r.label for r in rows}
        echo_json(record)
        return
    click.echo(f"paper {paper.id}: {paper.key}")
    click.echo(f"  first seen  {paper.first_seen_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  last seen   {paper.last_seen_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  seen in     {', '.join(paper.sources) or '-'}")
    for row in rows:
        value = _shown(row.value)
        click.echo(f"  {row.field:<16} {value}")
        click.echo(f"  {'':<16} set by {row.described}")


def _shown(value: object) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return "; ".join(map(str, value))
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return str(value)


def paper_dict(paper: Paper) -> dict[str, object]:
    return {
        "id": paper.id,
        "key": paper.key,
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "doi": paper.doi,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": paper.authors,
        "categories": paper.categories,
        "url": paper.url,
        "pdf_url": paper.pdf_url,
        "hf_url": paper.hf_url,
        "upvotes": paper.upvotes,
        "comments": paper.comments,
        "sources": paper.sources,
        "published_at": paper.published_at,
        "first_seen_at": paper.first_seen_at,
    }


commands = [group]

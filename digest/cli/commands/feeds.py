"""`digest feeds …` and `digest fetch`: manage feeds and ingest papers."""

from __future__ import annotations

import io

import click

from digest import ingest
from digest.cli.common import ROW_ID, echo_json, echo_table, get_settings, open_session
from digest.errors import FeedError
from digest.store.models import Feed, FeedKind

KIND_CHOICES = ["auto", *(k.value for k in FeedKind)]


@click.group("feeds")
def group() -> None:
    """Manage the feeds papers come from."""


@group.command("add")
@click.argument("url")
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="auto", show_default=True)
@click.option(
    "--name",
    help="Display name (default: the feed's own title; arXiv and Hugging Face by what they are).",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Fetch the feed once to make sure it works (and detect its kind).",
)
def add(url: str, kind: str, name: str | None, check: bool) -> None:
    """Add a feed (fetched once to check it, unless --no-check).

    A generic RSS/Atom feed is named after its own <title> (or its host, with
    --no-check, until its first fetch) and gets a source tag from that name, unique
    among the feeds: its papers carry the tag, and `source:TAG` topics match them.
    `digest feeds list` shows every feed's tag.

    Example: digest feeds add https://rss.arxiv.org/rss/cs.LG+cs.CL
    """
    settings = get_settings()
    with open_session(settings) as session:
        try:
            feed = ingest.add_feed(session, url, kind, name, settings=settings if check else None)
        except FeedError as exc:  # fetching and parsing errors are FeedErrors too
            raise click.ClickException(f"{url}: {exc}") from exc
        click.echo(
            f"added feed {feed.id}: {feed.name} ({feed.kind.value}) {feed.url}; "
            f"its papers are source:{feed.source}"
        )


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(as_json: bool) -> None:
    """List feeds with the outcome of their last fetch.

    Example: digest feeds list --json
    """
    with open_session() as session:
        feeds = ingest.list_feeds(session)
        if as_json:
            echo_json([_feed_dict(f) for f in feeds])
            return
        echo_table(
            ["id", "name", "source", "kind", "enabled", "last fetch", "status", "new", "error"],
            [
                (
                    f.id,
                    f.name,
                    f.source,
                    f.kind,
                    "yes" if f.enabled else "no",
                    f.last_fetched_at,
                    f.last_status,
                    f.last_new,
                    f.last_error,
                )
                for f in feeds
            ],
            empty="no feeds yet: add one with `digest feeds add URL`",
        )


def _feed_dict(feed: Feed) -> dict[str, object]:
    return {
        "id": feed.id,
        "url": feed.url,
        "name": feed.name,
        "source": feed.source,
        "kind": feed.kind.value,
        "enabled": feed.enabled,
        "last_fetched_at": feed.last_fetched_at,
        "last_ok_at": feed.last_ok_at,
        "last_status": feed.last_status,
        "last_error": feed.last_error,
        "consecutive_errors": feed.consecutive_errors,
        "last_new": feed.last_new,
        "last_updated": feed.last_updated,
        "last_unchanged": feed.last_unchanged,
    }


@group.command("rename")
@click.argument("feed_id", type=ROW_ID)
@click.argument("name", required=False)
@click.option(
    "--source",
    "source",
    metavar="TAG",
    help="Also change the source tag: on the feed, its stored papers and saved topics.",
)
def rename(feed_id: int, name: str | None, source: str | None) -> None:
    """Rename a feed (the name shown in `feeds list`, `stats` and fetch tables).

    The feed's source tag (what its papers carry and `source:TAG` topics match)
    stays as it is, so no saved topic changes meaning. With --source TAG it changes
    too, everywhere at once: stored papers with the old tag get the new one, and
    saved topics saying source:OLD now say source:TAG. If another feed carries the
    old tag as well, their papers cannot be told apart: stored papers and topics
    keep the old tag and only this feed's new papers carry TAG. arXiv (arxiv) and
    Hugging Face (hf) tags cannot change.

    Example: digest feeds rename 3 "Lab blog" --source lab-blog
    """
    if name is None and source is None:
        raise click.UsageError("give a NAME, --source TAG, or both")
    with open_session() as session:
        done = ingest.rename_feed(session, feed_id, name, source)
        feed = done.feed
        if name is not None:
            verb = "renamed" if feed.name != done.old_name else "already named"
            click.echo(f"feed {feed.id} {verb}: {feed.name}")
        if source is None or feed.source == done.old_source:
            click.echo(f"its papers are source:{feed.source}")
            return
        if done.shared_with:
            others = ", ".join(map(str, done.shared_with))
            click.echo(
                f"feed {feed.id} is now source:{feed.source} for the papers it brings from now "
                f"on; stored papers and saved topics keep source:{done.old_source}, which feed "
                f"{others} also carries (their papers cannot be told apart)"
            )
            return
        papers = done.papers_retagged
        topics = done.topics_rewritten
        click.echo(
            f"source:{done.old_source} is now source:{feed.source}: {papers} stored "
            f"paper{'' if papers == 1 else 's'} re-tagged, {topics} saved "
            f"topic{'' if topics == 1 else 's'} rewritten"
        )


@group.command("remove")
@click.argument("feed_id", type=ROW_ID)
def remove(feed_id: int) -> None:
    """Remove a feed (the papers it brought are kept).

    Example: digest feeds remove 3
    """
    with open_session() as session:
        feed = ingest.remove_feed(session, feed_id)
        click.echo(f"removed feed {feed.id}: {feed.name}")


@group.command("enable")
@click.argument("feed_id", type=ROW_ID)
def enable(feed_id: int) -> None:
    """Fetch this feed again on `digest fetch`."""
    _set_enabled(feed_id, True)


@group.command("disable")
@click.argument("feed_id", type=ROW_ID)
def disable(feed_id: int) -> None:
    """Keep the feed but stop fetching it."""
    _set_enabled(feed_id, False)


def _set_enabled(feed_id: int, enabled: bool) -> None:
    with open_session() as session:
        feed = ingest.get_feed(session, feed_id)
        feed.enabled = enabled
        click.echo(f"feed {feed.id} {'enabled' if enabled else 'disabled'}: {feed.name}")


@group.command("check")
@click.argument("url")
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def check(url: str, kind: str, as_json: bool) -> None:
    """Fetch and parse a feed without storing anything: what would we get?

    Example: digest feeds check https://huggingface.co/api/daily_papers
    """
    try:
        feed_kind, result = ingest.check_feed(get_settings(), url, kind)
    except FeedError as exc:  # fetching and parsing errors are FeedErrors too
        raise click.ClickException(f"{url}: {exc}") from exc
    if as_json:
        echo_json(
            {
                "kind": feed_kind.value,
                "papers": [
                    {"key": p.key, "title": p.title, "authors": p.authors, "url": p.url}
                    for p in result.papers
                ],
                "skipped": result.skipped,
            }
        )
        return
    click.echo(f"{url}: {feed_kind.value} feed, {len(result.papers)} papers")
    for paper in result.papers[:20]:
        click.echo(f"  {paper.key}  {paper.title[:90]}")
    if len(result.papers) > 20:
        click.echo(f"  … and {len(result.papers) - 20} more")
    for reason in result.skipped:
        click.echo(f"  skipped: {reason}")


@click.command("fetch")
@click.option("--feed", "feed_ids", type=ROW_ID, multiple=True, help="Only this feed (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def fetch_command(feed_ids: tuple[int, ...], as_json: bool) -> None:
    """Fetch all enabled feeds (or --feed ID) and store new papers.

    Ends with a table per feed: new, updated, unchanged, error. Exits 1 if every
    feed failed.

    Example: digest fetch --feed 2
    """
    settings = get_settings()
    with open_session(settings) as session:
        missing = [i for i in feed_ids if session.get(Feed, i) is None]
        total = len(feed_ids) or ingest.count_enabled(session)
    if missing:
        raise click.ClickException(f"no feed with id {', '.join(map(str, missing))}")
    if total == 0:
        raise click.ClickException("no enabled feeds: add one with `digest feeds add URL`")
    with click.progressbar(
        length=total, label="fetching", file=None if not as_json else _null(), show_pos=True
    ) as bar:
        outcomes = ingest.ingest_all(
            settings, feed_ids or None, on_feed_done=lambda _: bar.update(1)
        )
    if as_json:
        echo_json([o.__dict__ for o in outcomes])
    else:
        echo_table(
            ["feed", "name", "status", "new", "updated", "unchanged", "error"],
            [
                (o.feed_id, o.name, o.status, o.new, o.updated, o.unchanged, o.error or "")
                for o in outcomes
            ],
        )
    if outcomes and all(o.status == "error" for o in outcomes):
        raise SystemExit(1)


def _null() -> io.StringIO:
    return io.StringIO()


commands = [group, fetch_command]

"""`digest topics …`: a subscriber's saved topics, and the backtest to tune one."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.cli.common import echo_json, echo_table, open_session
from digest.match import Backtest
from digest.store.models import Subscriber


@click.group("topics")
def group() -> None:
    """Saved topics: add, list, remove, and test a query on recent papers.

    Query syntax (try one with `digest topics test QUERY`): words (all must
    appear, one more than in passing; model matches models, fine-tuning matches
    finetuning), "exact phrase",
    OR, NOT or -word (title:-word too), (groups), title: abstract: author: cat:cs.LG cat:cs.*
    source:hf upvotes:>=10, the built-in topic `trending`, and with the semantic
    extra ~a plain-language description or like:2401.00001.
    """


class QueryCommand(click.Command):
    """A command whose QUERY may start with '-' ('-survey agents' excludes surveys).

    click would read such an argument as options (-s -u -r ... and -h is help), so
    before it parses, an argument that starts with a single '-' and is none of the
    command's options is moved after a '--', where click takes it as it is, in
    order with the other arguments. Real options still work anywhere; an unknown
    '--option' still fails as click says.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names: set[str] = set()
        valued: set[str] = set()  # options that take the next argument as their value
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                names.update(param.opts, param.secondary_opts)
                if not param.is_flag and not param.count:
                    valued.update(param.opts)
        front: list[str] = []
        moved: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                moved.extend(args[i + 1 :])
                break
            if arg in valued and i + 1 < len(args):
                front += [arg, args[i + 1]]
                i += 2
                continue
            if (
                arg.startswith("-")
                and not arg.startswith("--")
                and len(arg) > 1
                and arg not in names
            ):
                moved.append(arg)
            else:
                front.append(arg)
            i += 1
        if moved:
            args = [*front, "--", *moved]
        return super().parse_args(ctx, args)


def _subscriber(session: Session, email: str) -> Subscriber:
    found = subs.get_subscriber(session, email)
    if found is None:
        raise click.ClickException(f"no subscriber with address {email}")
    return found


@group.command("add", cls=QueryCommand)
@click.argument("email")
@click.argument("query")
@click.option(
    "--label",
    help="A name for the topic in emails (default: the query in plain words, e.g. "
    "'cs.CR jailbreak' for 'cat:cs.CR AND jailbreak').",
)
def add(email: str, query: str, label: str | None) -> None:
    """Save a topic for a subscriber.

    A topic that can never match here (cat:cs.ZZ is not an arXiv category,
    source:TAG that no feed has, like:ID of a paper not stored) is saved with a
    warning on stderr.

    Example: digest topics add ada@example.org '"machine unlearning" OR title:forgetting' --label Unlearning

    A query may start with '-': digest topics add ada@example.org '-survey agents'
    """
    with open_session() as session:
        subscriber = _subscriber(session, email)
        topic = subs.add_topic(session, subscriber, " ".join(query.split()), label)
        click.echo(f'added topic {topic.id} "{topic.label}" for {subscriber.email}')
        for warning in subs.TopicChecker(session).warnings(topic.query):
            click.echo(f"warning: {warning}", err=True)


@group.command("list")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(email: str, as_json: bool) -> None:
    """List a subscriber's topics.

    Example: digest topics list ada@example.org --json
    """
    with open_session() as session:
        subscriber = _subscriber(session, email)
        rows = [{"id": t.id, "label": t.label, "query": t.query} for t in subscriber.topics]
        if as_json:
            echo_json(rows)
            return
        echo_table(
            ["id", "label", "query"],
            [(r["id"], r["label"], r["query"]) for r in rows],
            empty=f"{subscriber.email} has no topics: they get the trending papers",
        )


@group.command("remove")
@click.argument("email")
@click.argument("topic_id", type=int)
def remove(email: str, topic_id: int) -> None:
    """Remove one topic (ids are in `digest topics list EMAIL`).

    Example: digest topics remove ada@example.org 12
    """
    with open_session() as session:
        subscriber = _subscriber(session, email)
        topic = subs.remove_topic(session, subscriber, topic_id)
        click.echo(f'removed topic {topic_id} "{topic.label}" from {subscriber.email}')


@group.command("test", cls=QueryCommand)
@click.argument("query")
@click.option(
    "--days",
    type=click.IntRange(min=1, max=3650),
    default=7,
    show_default=True,
    help="Look at papers first seen in the last N days.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def test(query: str, days: int, limit: int, as_json: bool) -> None:
    """Backtest a query: the stored papers it would have sent, best first, and why.

    Use it to tune a topic before saving it.

    Example: digest topics test 'jailbreak attacks on LLMs -survey' --days 30

    It also says how many papers mention the words only in passing (once in
    the abstract), which a topic leaves out unless a word is quoted, and warns
    (on stderr) about parts that can never match here: cat:cs.ZZ, a source: tag
    no feed has, like: a paper not stored.
    """
    text = subs.validate_query(" ".join(query.split()))
    with open_session() as session:
        warnings = list(subs.TopicChecker(session).warnings(text))
        result = Backtest(session, days).run(text, limit, label=subs.default_label(text))
        matched = result.best
        if as_json:
            echo_json(
                {
                    "query": text,
                    "warnings": warnings,
                    "days": days,
                    "papers_considered": result.papers_considered,
                    "matched": result.matched,
                    "in_passing": result.in_passing,
                    "hint": result.hint,
                    "papers": [
                        {
                            "id": mp.paper.id,
                            "key": mp.paper.key,
                            "title": mp.paper.title,
                            "url": mp.paper.url,
                            "first_seen_at": mp.paper.first_seen_at,
                            "upvotes": mp.paper.upvotes,
                            "score": mp.score,
                            "reason": mp.reason,
                            "terms": mp.terms,
                        }
                        for mp in matched
                    ],
                }
            )
            return
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        total = result.matched
        click.echo(
            f"{total} of {result.papers_considered} papers first seen in the last {days} days match"
            + (
                f"; the best {len(matched)}:"
                if matched and total > len(matched)
                else ":"
                if matched
                else "."
            )
        )
        echo_table(
            ["#", "score", "paper", "title", "why"],
            [
                (i, f"{mp.score:.1f}", mp.paper.key, mp.paper.title, mp.reason)
                for i, mp in enumerate(matched, 1)
            ],
        )
        if matched:
            words = sorted({t.lower() for mp in matched for t in mp.terms})
            if words:
                click.echo("matched words: " + ", ".join(words))
        if result.hint:
            click.echo(result.hint)


commands = [group]

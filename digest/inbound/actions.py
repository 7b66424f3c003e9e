"""Carrying out commands by email, and saying what each did (read by
:mod:`digest.inbound.commands`).

Each command changes the reader's subscription through :mod:`digest.subscriptions`
(whose checks and messages it shares with the web pages and the CLI), or, in a
reply to a digest, their steering (:mod:`digest.match.steer`): "more N" adds a
topic, "less N" and "mute author NAME" store a signal the next ranking applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.text import clean_text
from digest.errors import QueryError, SubscriptionError
from digest.inbound.commands import Line, Result
from digest.match import semantic, steer
from digest.store.models import (
    Digest,
    Frequency,
    Paper,
    ReaderSignal,
    Subscriber,
    SubscriberStatus,
)

#: Recent papers a "more N" keyword topic is checked against (they must find others).
KEYWORD_CORPUS = 1000


@dataclass
class Request:
    """Who asks, through which address, about which digest."""

    settings: Settings
    session: Session
    address: str  # the From address, already checked
    via: str  # request | reply | confirm
    subscriber: Subscriber | None
    digest: Digest | None = None
    message_id: str | None = None
    now: datetime = field(default_factory=utcnow)


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    subscriber: Subscriber | None = None
    help: bool = False
    needs_confirm: bool = False  # a subscription waits for confirmation: send the link
    changed: bool = False


class _Stop(Exception):
    """Unsubscribed: the remaining commands are not carried out."""


def execute(request: Request, lines: list[Line]) -> Outcome:
    outcome = Outcome(subscriber=request.subscriber)
    for index, line in enumerate(lines):
        if line.problem:
            outcome.results.append(Result(line.shown, False, line.problem))
            continue
        handler = _HANDLERS[line.word]
        try:
            ok, text = handler(request, outcome, line.arg)
        except SubscriptionError as exc:
            ok, text = False, str(exc)
        except _Stop as stop:
            outcome.results.append(Result(line.shown, True, str(stop)))
            rest = len([x for x in lines[index + 1 :] if not x.problem])
            if rest:
                outcome.results.append(
                    Result("…", False, f"{rest} more command(s) not carried out: you unsubscribed")
                )
            break
        outcome.results.append(Result(line.shown, ok, text))
        if ok and line.word not in ("help", "list"):
            outcome.changed = True
    return outcome


Handler = Callable[[Request, Outcome, str], tuple[bool, str]]


def _need(outcome: Outcome) -> Subscriber:
    subscriber = outcome.subscriber
    if subscriber is None or subscriber.status in (
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED,
    ):
        raise SubscriptionError('you are not subscribed: send "subscribe" first')
    return subscriber


def _subscribe(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    session, settings = request.session, request.settings
    detail = f"subscribe command by email to {settings.request_addr}"
    if request.message_id:
        detail += f", Message-ID {request.message_id}"
    topics = [arg] if arg else []
    subscriber = outcome.subscriber
    if subscriber is None:
        subscriber = subs.add_subscriber(
            session,
            request.address,
            topics=topics,
            consent_source="email",
            consent_detail=detail,
            now=request.now,
        )
        outcome.subscriber = subscriber
        outcome.needs_confirm = True
        return True, "subscription started: confirm it with the link below, or reply to this email"
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        subs.resubscribe(
            session, subscriber, consent_source="email", consent_detail=detail, topics=topics
        )
        outcome.needs_confirm = True
        return True, "welcome back: confirm it with the link below, or reply to this email"
    if subscriber.status is SubscriberStatus.PENDING:
        if arg:
            subs.add_topic(session, subscriber, arg)
        outcome.needs_confirm = True
        return True, "you still need to confirm: the link below, or reply to this email"
    if subscriber.status is SubscriberStatus.BOUNCED:
        return False, "mail to this address bounced; ask the operator to lift the suppression"
    if arg:
        topic = subs.add_topic(session, subscriber, arg)
        return True, f'you are already subscribed; added topic "{topic.query}"'
    return True, f"you are already subscribed ({subscriber.status.value})"


def _add(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    if not arg:
        return False, 'add what? e.g. add "machine unlearning"'
    topic = subs.add_topic(request.session, subscriber, arg)
    return True, f'added topic {len(subscriber.topics)}: "{topic.query}"'


def _topic_number(subscriber: Subscriber, arg: str, verb: str) -> int:
    words = arg.split()
    if words and words[0].lower() == "topic":
        words = words[1:]
    if len(words) == 1 and words[0].isdigit() and len(words[0]) <= 4:
        number = int(words[0])
        if 1 <= number <= len(subscriber.topics):
            return number
        count = len(subscriber.topics)
        raise SubscriptionError(
            f"there is no topic {number}: you have {count} topic{'' if count == 1 else 's'}"
        )
    wanted = subs.topic_key(" ".join(words))
    for number, topic in enumerate(subscriber.topics, 1):
        if wanted and wanted in (subs.topic_key(topic.query), subs.topic_key(topic.label)):
            return number
    raise SubscriptionError(f"{verb} which topic? give its number from the list, e.g. {verb} 2")


def _remove(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    number = _topic_number(subscriber, arg, "remove")
    topic = subscriber.topics[number - 1]
    subs.remove_topic(request.session, subscriber, topic.id)
    return True, f'removed topic {number}: "{topic.query}"'


def _list(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    if outcome.subscriber is None:
        return True, "you are not subscribed"
    return True, "your subscription is below"


def _frequency(value: str) -> Handler:
    def handler(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
        subscriber = _need(outcome)
        weekday = arg.split()[0] if value == "weekly" and arg.split() else None
        subs.update_subscriber(request.session, subscriber, frequency=value, weekday=weekday)
        if value == "weekly":
            return True, f"one digest a week, on {_WEEKDAY[subscriber.weekday]}"
        return True, "one digest a day"

    return handler


def _hour(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    subs.update_subscriber(request.session, subscriber, hour=arg or "none")  # type: ignore[arg-type]
    return True, f"digests at {subscriber.send_hour:02d}:00 {subscriber.timezone}"


def _timezone(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    subs.update_subscriber(request.session, subscriber, timezone=arg)
    return True, f"time zone {subscriber.timezone}"


def _max(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    subs.update_subscriber(request.session, subscriber, max_papers=arg or "none")  # type: ignore[arg-type]
    return True, f"at most {subscriber.max_papers} papers per digest"


def _pause(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    changed = subs.pause(request.session, _need(outcome))
    return True, "paused: no digests until you send resume" if changed else "already paused"


def _resume(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    changed = subs.resume(request.session, _need(outcome))
    return True, "resumed: digests start again" if changed else "already active"


def _unsubscribe(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = outcome.subscriber
    if subscriber is None:
        return True, "you are not subscribed"
    if subs.unsubscribe(request.session, subscriber):
        raise _Stop("unsubscribed: you will get no more digests")
    raise _Stop("you were already unsubscribed")


def _stop(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    if arg:  # "stop 2", "stop topic 2": that topic only
        return _remove(request, outcome, arg)
    return _unsubscribe(request, outcome, arg)


def _help(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    outcome.help = True
    return True, "the commands are listed below"


def _end(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:  # pragma: no cover
    return True, ""  # read_lines stops at "end"; never carried out


def _confirm(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    if request.via == "confirm":
        return True, "confirmed (replying was enough)"
    if outcome.subscriber is not None and outcome.subscriber.status is SubscriberStatus.PENDING:
        outcome.needs_confirm = True
        return False, "reply to the confirmation email itself, or open its link"
    return False, "there is nothing to confirm"


# --- steering, in a reply to a digest ----------------------------------------------------


def _paper(request: Request, arg: str, verb: str) -> Paper:
    if request.digest is None:
        raise SubscriptionError(
            f"{verb} N works in a reply to a digest: reply to the one with paper N"
        )
    shown = list(request.digest.paper_ids or [])
    text = arg.strip().lstrip("#")
    if not text.isdigit() or len(text) > 4:
        raise SubscriptionError(f"{verb} which paper? give the number on its card, e.g. {verb} 3")
    number = int(text)
    if not 1 <= number <= len(shown):
        raise SubscriptionError(
            f"that digest has no paper {number}: its papers are numbered 1 to {len(shown)}"
        )
    paper = request.session.get(Paper, shown[number - 1])
    if paper is None:
        raise SubscriptionError(f"paper {number} is no longer stored")
    return paper


def _more(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    paper = _paper(request, arg, "more")
    title = clean_text(paper.title, 60)
    if semantic.available() and paper.arxiv_id and paper.embedding:
        query = f"like:{paper.arxiv_id}"
    else:
        others = list(
            request.session.scalars(
                select(Paper).order_by(Paper.first_seen_at.desc()).limit(KEYWORD_CORPUS)
            )
        )
        try:
            query = steer.keyword_query(paper, others, [t.query for t in subscriber.topics])
        except QueryError as exc:
            return False, str(exc)
    topic = subs.add_topic(request.session, subscriber, query, label=f"More like: {title}")
    return True, f'added topic {len(subscriber.topics)}: "{topic.query}" (more like "{title}")'


def _less(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    paper = _paper(request, arg, "less")
    title = clean_text(paper.title, 60)
    _signal(
        request,
        subscriber,
        steer.LESS,
        paper.key[:300],
        paper,
        sorted(steer.title_terms(paper.title)),
    )
    return True, f'papers like "{title}" will rank lower'


def _mute(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    name = _author_arg(arg, "mute")
    _signal(request, subscriber, steer.MUTE, name, None, [])
    return True, f"muted: no more papers by {name}"


def _unmute(request: Request, outcome: Outcome, arg: str) -> tuple[bool, str]:
    subscriber = _need(outcome)
    name = _author_arg(arg, "unmute")
    result = request.session.execute(
        delete(ReaderSignal).where(
            ReaderSignal.subscriber_id == subscriber.id,
            ReaderSignal.kind == steer.MUTE,
            func.lower(ReaderSignal.value) == name.lower(),
        )
    )
    if not getattr(result, "rowcount", 0):
        return False, f"{name} was not muted"
    return True, f"unmuted: papers by {name} can come back"


def _author_arg(arg: str, verb: str) -> str:
    words = arg.split()
    if words and words[0].lower() == "author":
        words = words[1:]
    name = steer.clean_author(" ".join(words))
    if not name or steer.author_node(name) is None:
        raise SubscriptionError(f"{verb} whom? e.g. {verb} author Yoshua Bengio")
    return name


def _signal(
    request: Request,
    subscriber: Subscriber,
    kind: str,
    value: str,
    paper: Paper | None,
    terms: list[str],
) -> None:
    session = request.session
    existing = session.scalar(
        select(ReaderSignal).where(
            ReaderSignal.subscriber_id == subscriber.id,
            ReaderSignal.kind == kind,
            func.lower(ReaderSignal.value) == value.lower(),
        )
    )
    if existing is not None:
        return
    session.add(
        ReaderSignal(
            subscriber_id=subscriber.id,
            kind=kind,
            value=value,
            terms=terms,
            paper_id=paper.id if paper is not None else None,
            digest_id=request.digest.id if request.digest is not None else None,
            created_at=request.now,
        )
    )
    session.flush()
    ids = list(
        session.scalars(
            select(ReaderSignal.id)
            .where(ReaderSignal.subscriber_id == subscriber.id, ReaderSignal.kind == kind)
            .order_by(ReaderSignal.id.desc())
            .offset(steer.MAX_SIGNALS)
        )
    )
    if ids:  # the oldest beyond the cap make room for the newest
        session.execute(delete(ReaderSignal).where(ReaderSignal.id.in_(ids[:1000])))


_HANDLERS: dict[str, Handler] = {
    "subscribe": _subscribe,
    "add": _add,
    "remove": _remove,
    "list": _list,
    "daily": _frequency("daily"),
    "weekly": _frequency("weekly"),
    "hour": _hour,
    "timezone": _timezone,
    "tz": _timezone,
    "max": _max,
    "pause": _pause,
    "resume": _resume,
    "unsubscribe": _unsubscribe,
    "cancel": _unsubscribe,
    "stop": _stop,
    "help": _help,
    "more": _more,
    "less": _less,
    "mute": _mute,
    "unmute": _unmute,
    "end": _end,
    "confirm": _confirm,
}

_WEEKDAY = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def schedule_text(subscriber: Subscriber) -> str:
    at = f"{subscriber.send_hour:02d}:00 ({subscriber.timezone})"
    if subscriber.frequency is Frequency.WEEKLY:
        return f"every {_WEEKDAY[subscriber.weekday]} at {at}"
    return f"every day at {at}"


def signals(session: Session, subscriber: Subscriber) -> tuple[list[str], int]:
    """(muted authors, how many "less" signals) for the reply's summary."""
    rows = session.execute(
        select(ReaderSignal.kind, ReaderSignal.value)
        .where(ReaderSignal.subscriber_id == subscriber.id)
        .order_by(ReaderSignal.id)
    ).all()
    muted = [value for kind, value in rows if kind == steer.MUTE]
    return muted, sum(1 for kind, _v in rows if kind == steer.LESS)


__all__ = ["KEYWORD_CORPUS", "Outcome", "Request", "execute", "schedule_text", "signals"]

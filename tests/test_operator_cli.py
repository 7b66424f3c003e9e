"""The operator's day through the real `digest` command, on SQLite and PostgreSQL.

Changing what exists (`subscribers set`, `subscribers import --update`, `feeds rename`,
generic feeds named after their own <title>) and the warnings for topics that can
never match (at `topics add/test`, `subscribers add`, `subscribers import`, `stats`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import TEST_SECRET
from sqlalchemy import select
from support.clikit import cli_env, one_line_error
from support.feedserver import FeedServer

from digest import subscriptions as subs
from digest.cli import cli
from digest.config import Settings
from digest.core.clock import utcnow
from digest.core.schedule import next_send
from digest.match import semantic
from digest.store.db import session_scope
from digest.store.models import Feed, FeedKind, Paper, Subscriber, SubscriberStatus, Topic

pytestmark = pytest.mark.integration

HF_URL = "https://huggingface.co/api/daily_papers"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, secret_key=TEST_SECRET)


@pytest.fixture
def digest(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = cli_env(
        db_url,
        tmp_path,
        DIGEST_BASE_URL="https://digest.example.org",
        DIGEST_ALLOW_PRIVATE_FEEDS="1",
        DIGEST_FETCH_DELAY="0",
    )

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def _hf_feed(digest) -> None:  # type: ignore[no-untyped-def]
    result = digest("feeds", "add", HF_URL, "--no-check")
    assert result.exit_code == 0, result.output


def _subscriber(settings: Settings, email: str) -> Subscriber:
    with session_scope(settings) as session:
        found = subs.get_subscriber(session, email)
        assert found is not None
        found.topics  # noqa: B018 - loaded before the session closes
        return found


# --- subscribers set ---------------------------------------------------------------------


def test_set_changes_only_what_is_given_and_says_what_changed(digest, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    _hf_feed(digest)
    added = digest(
        "subscribers", "add", "ada@example.org", "--confirmed", "--topic", "cat:cs.CR AND jailbreak",
        "--topic", "machine unlearning",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    before = _subscriber(settings, "ada@example.org")
    jail, unlearning = before.topics
    assert jail.label == "cs.CR jailbreak"  # the query in plain words, not raw syntax
    result = digest(
        "subscribers", "set", "ADA@example.org", "--tz", "asia/tokyo", "--weekly", "--weekday",
        "fri", "--hour", "8", "--label", f"{jail.id}=Jailbreaks",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ada@example.org: timezone UTC -> Asia/Tokyo",
        "ada@example.org: frequency daily -> weekly",
        "ada@example.org: weekday mon -> fri",
        "ada@example.org: hour 07:00 -> 08:00",
        f'ada@example.org: label of topic {jail.id} "cs.CR jailbreak" -> "Jailbreaks"',
        "now weekly on fri at 08:00 Asia/Tokyo, up to 20 papers; next digest "
        + next_send(utcnow(), "Asia/Tokyo", "weekly", 8, 4).strftime("%a %d %b %H:%M")
        + " Asia/Tokyo",
    ]
    after = _subscriber(settings, "ada@example.org")
    assert (after.timezone, after.frequency.value, after.weekday, after.send_hour) == (
        "Asia/Tokyo",
        "weekly",
        4,
        8,
    )
    assert after.max_papers == 20 and after.status is SubscriberStatus.ACTIVE
    # Consent and topics are untouched; the other topic keeps its label.
    assert (after.consent_source, after.consent_at) == (before.consent_source, before.consent_at)
    assert [(t.id, t.label) for t in after.topics] == [
        (jail.id, "Jailbreaks"),
        (unlearning.id, "machine unlearning"),
    ]
    # The same again: nothing changes. A label reset: back to the default.
    same = digest("subscribers", "set", "ada@example.org", "--tz", "Asia/Tokyo", "--hour", "8")
    assert same.stdout.strip() == "ada@example.org: nothing changed, the settings were already so"
    reset = digest("subscribers", "set", "ada@example.org", "--label", f"{jail.id}=", "--max", "5")
    assert reset.exit_code == 0, reset.output
    assert f'label of topic {jail.id} "Jailbreaks" -> "cs.CR jailbreak"' in reset.stdout
    assert "max papers 20 -> 5" in reset.stdout
    back = digest("subscribers", "set", "ada@example.org", "--daily")
    assert "frequency weekly -> daily" in back.stdout and "now daily at 08:00" in back.stdout
    assert digest("subscribers", "pause", "ada@example.org").exit_code == 0
    paused = digest("subscribers", "set", "ada@example.org", "--hour", "9")
    assert paused.stdout.splitlines()[-1].endswith("; no digest while paused")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["nobody@example.org", "--hour", "8"],
            "no subscriber with the address nobody@example.org",
        ),
        (["ada@example.org", "--tz", "Mars/Base"], 'unknown time zone "Mars/Base"'),
        (["ada@example.org", "--tz", "UTC+2"], "is a fixed offset or an abbreviation"),
        (["ada@example.org", "--hour", "24"], 'the send hour "24" is not a whole hour'),
        (["ada@example.org", "--max", "0"], "is not a number from 1 to 100"),
        (["ada@example.org", "--label", "999999=X"], "has no topic with id 999999"),
    ],
)
def test_set_errors_are_one_line_and_change_nothing(  # type: ignore[no-untyped-def]
    digest, settings: Settings, args: list[str], message: str
) -> None:
    assert digest("subscribers", "add", "ada@example.org", "--confirmed").exit_code == 0
    before = _subscriber(settings, "ada@example.org")
    assert message in one_line_error(digest("subscribers", "set", *args))
    after = _subscriber(settings, "ada@example.org")
    assert (after.timezone, after.send_hour, after.max_papers) == (
        before.timezone,
        before.send_hour,
        before.max_papers,
    )


def test_set_usage_errors(digest) -> None:  # type: ignore[no-untyped-def]
    assert digest("subscribers", "add", "ada@example.org", "--confirmed").exit_code == 0
    nothing = digest("subscribers", "set", "ada@example.org")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    bad = digest("subscribers", "set", "ada@example.org", "--label", "Unlearning")
    assert bad.exit_code == 2 and "give a topic id and its label" in bad.stderr
    help_text = digest("subscribers", "set", "--help").stdout
    assert "--label" in help_text and "topic's id" in help_text


# --- subscribers import --update -----------------------------------------------------------


def test_import_update_changes_existing_rows_counted_per_field(  # type: ignore[no-untyped-def]
    digest, settings: Settings, tmp_path: Path
) -> None:
    _hf_feed(digest)
    for args in (
        ["ada@example.org", "--topic", "machine unlearning", "--topic", "agents", "--tz", "Europe/London"],
        ["bob@example.org", "--hour", "9"],
        ["carol@example.org"],
        ["gone@example.org"],
    ):  # fmt: skip
        assert digest("subscribers", "add", *args, "--confirmed").exit_code == 0
    assert digest("subscribers", "add", "pending@example.org").exit_code == 0
    assert digest("subscribers", "remove", "gone@example.org", "--keep-record").exit_code == 0
    ada_before = _subscriber(settings, "ada@example.org")
    kept = next(t for t in ada_before.topics if t.query == "machine unlearning")
    path = tmp_path / "changes.csv"
    path.write_text(
        "email,topics,timezone,hour,max,status,labels\n"
        # topics replaced (agents removed, diffusion added, unlearning kept with a label)
        'ada@example.org,"machine unlearning; diffusion",Asia/Tokyo,,,,Unlearning\n'
        # blank cells change nothing; status pauses
        "BOB@example.org,,,,5,paused,\n"
        # exactly as stored: unchanged
        "carol@example.org,,UTC,7,20,active,\n"
        "gone@example.org,,Europe/Paris,,,,\n"
        "pending@example.org,,,,,active,\n"
        "pending@example.org,,,,,,\n"
        "new@example.org,llm,,,,,\n",
        encoding="utf-8",
    )
    dry = digest("subscribers", "import", str(path), "--update", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    dry_report = json.loads(dry.stdout)
    assert (dry_report["imported"], dry_report["updated"], dry_report["unchanged"]) == (1, 2, 1)
    assert _subscriber(settings, "ada@example.org").timezone == "Europe/London"  # nothing written

    result = digest("subscribers", "import", str(path), "--update")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    report = json.loads(
        digest("subscribers", "import", str(path), "--update", "--dry-run", "--json").stdout
    )
    # Applied: every stored row is now as the file says (new@ included).
    assert (report["imported"], report["updated"], report["unchanged"]) == (0, 0, 4)
    assert lines[0] == (
        "imported 1 of 7 rows (1 topic); updated 2 (labels 1, max 1, status 1, timezone 1, "
        "topics 1), 1 unchanged; 3 bad rows"
    )
    assert dry_report["changes"] == {
        "labels": 1,
        "max": 1,
        "status": 1,
        "timezone": 1,
        "topics": 1,
    }
    errors = "\n".join(lines[1:])
    assert 'line 5: "gone@example.org": unsubscribed on' in errors
    assert "an import cannot subscribe them again" in errors
    assert 'line 6: "pending@example.org": has not confirmed the subscription yet' in errors
    assert "the address appears twice: first on line 6" in errors

    ada = _subscriber(settings, "ada@example.org")
    assert ada.timezone == "Asia/Tokyo" and ada.send_hour == 7  # blank hour: as it was
    assert [(t.query, t.label) for t in ada.topics] == [
        ("machine unlearning", "Unlearning"),
        ("diffusion", "diffusion"),
    ]
    assert ada.topics[0].id == kept.id  # a kept topic keeps its id
    # Consent untouched.
    assert (ada.consent_source, ada.consent_at, ada.consent_detail) == (
        ada_before.consent_source,
        ada_before.consent_at,
        ada_before.consent_detail,
    )
    bob = _subscriber(settings, "bob@example.org")
    assert (bob.status, bob.max_papers, bob.send_hour) == (SubscriberStatus.PAUSED, 5, 9)
    assert _subscriber(settings, "gone@example.org").status is SubscriberStatus.UNSUBSCRIBED
    assert _subscriber(settings, "pending@example.org").status is SubscriberStatus.PENDING
    new = _subscriber(settings, "new@example.org")
    assert new.status is SubscriberStatus.ACTIVE and new.consent_source == "import"


def test_import_without_update_still_refuses_existing_rows(digest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert digest("subscribers", "add", "ada@example.org", "--confirmed").exit_code == 0
    path = tmp_path / "again.csv"
    path.write_text("email,timezone\nada@example.org,Asia/Tokyo\n", encoding="utf-8")
    result = digest("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "already subscribed (status: active); an import with --update" in result.stdout
    updated = digest("subscribers", "import", str(path), "--update")
    assert updated.exit_code == 0, updated.output
    assert "updated 1 (timezone 1), 0 unchanged; 0 bad rows" in updated.stdout


# --- feeds: names from <title>, source tags, rename ---------------------------------------


def _add_generic_feeds(digest, feed_server: FeedServer) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    ids = []
    for name in ("blog_atom.xml", "biorxiv.rdf"):
        result = digest("feeds", "add", feed_server.feed_url(name))
        assert result.exit_code == 0, result.output
        ids.append(int(result.stdout.split()[2].rstrip(":")))
    return ids[0], ids[1]


def test_generic_feeds_are_named_after_their_title_with_a_tag_each(  # type: ignore[no-untyped-def]
    digest, settings: Settings, feed_server: FeedServer
) -> None:
    blog, biorxiv = _add_generic_feeds(digest, feed_server)
    feeds = {f["id"]: f for f in json.loads(digest("feeds", "list", "--json").stdout)}
    # Both are on 127.0.0.1: two names and two tags, not "127.0.0.1" twice.
    assert (feeds[blog]["name"], feeds[blog]["source"]) == (
        "Safety Reading Group",
        "safety-reading-group",
    )
    assert (feeds[biorxiv]["name"], feeds[biorxiv]["source"]) == (
        "bioRxiv Subject Collection: Bioinformatics",
        "biorxiv-subject-collection",  # at most 40 characters, cut at a word
    )
    table = digest("feeds", "list").stdout
    assert "safety-reading-group" in table and "127.0.0.1" not in table.split("\n", 2)[2][:40]
    assert digest("fetch").exit_code == 0
    with session_scope(settings) as session:
        sources = {tuple(p.sources) for p in session.scalars(select(Paper))}
    assert sources == {("safety-reading-group",), ("biorxiv-subject-collection",)}
    papers = digest("papers", "list").stdout
    assert "safety-reading-group" in papers and "127.0.0.1" not in papers
    # `source:TAG` matches that feed's papers and no other's.
    found = json.loads(digest("topics", "test", "source:safety-reading-group", "--json").stdout)
    assert found["matched"] >= 1 and found["warnings"] == []
    assert all(
        "blog.example.org" in (p["url"] or "") or "arxiv" in p["key"] for p in found["papers"]
    )
    # A second feed with the same title gets its own tag.
    body = feed_server_fixture("blog_atom.xml").replace("post-41", "post-99")
    feed_server.put("/same-title.xml", body)
    again = digest("feeds", "add", feed_server.url("/same-title.xml"))
    assert again.exit_code == 0, again.output
    assert "source:safety-reading-group-2" in again.stdout


def feed_server_fixture(name: str) -> str:
    return (Path(__file__).parent / "fixtures" / "feeds" / name).read_text(encoding="utf-8")


def test_a_feed_added_without_a_check_is_named_by_its_first_fetch(  # type: ignore[no-untyped-def]
    digest, feed_server: FeedServer
) -> None:
    added = digest("feeds", "add", feed_server.feed_url("blog_atom.xml"), "--no-check")
    assert added.exit_code == 0, added.output
    assert "added feed 1: 127.0.0.1 (rss)" in added.stdout and "source:127.0.0.1" in added.stdout
    assert digest("fetch").exit_code == 0
    (feed,) = json.loads(digest("feeds", "list", "--json").stdout)
    # Named by its title now; the tag it was given stays (saved topics may name it).
    assert (feed["name"], feed["source"]) == ("Safety Reading Group", "127.0.0.1")
    assert digest("feeds", "rename", "1", "My blog").exit_code == 0
    assert digest("fetch").exit_code == 0
    assert json.loads(digest("feeds", "list", "--json").stdout)[0]["name"] == "My blog"


def test_rename_keeps_the_tag_unless_asked_and_then_changes_it_everywhere(  # type: ignore[no-untyped-def]
    digest, settings: Settings, feed_server: FeedServer
) -> None:
    blog, _ = _add_generic_feeds(digest, feed_server)
    assert digest("fetch").exit_code == 0
    for query in ("source:safety-reading-group", "guardrails SRC:Safety-Reading-Group", "llm"):
        added = digest("subscribers", "add", f"r{len(query)}@example.org", "--topic", query)
        assert added.exit_code == 0, added.output
    renamed = digest("feeds", "rename", str(blog), "Reading group notes")
    assert renamed.exit_code == 0, renamed.output
    assert renamed.stdout.splitlines() == [
        f"feed {blog} renamed: Reading group notes",
        "its papers are source:safety-reading-group",
    ]
    retag = digest("feeds", "rename", str(blog), "--source", "reading-group")
    assert retag.exit_code == 0, retag.output
    with session_scope(settings) as session:
        tags = sorted(tuple(p.sources) for p in session.scalars(select(Paper)))
        queries = sorted(session.scalars(select(Topic.query)))
    assert ("reading-group",) in tags and ("safety-reading-group",) not in tags
    assert queries == ["guardrails source:reading-group", "llm", "source:reading-group"]
    count = sum(1 for t in tags if t == ("reading-group",))
    assert retag.stdout.strip() == (
        f"source:safety-reading-group is now source:reading-group: {count} stored "
        f"paper{'' if count == 1 else 's'} re-tagged, 2 saved topics rewritten"
    )
    matched = json.loads(digest("topics", "test", "source:reading-group", "--json").stdout)
    assert matched["matched"] == count and matched["warnings"] == []
    # New papers of the feed carry the new tag.
    assert digest("fetch").exit_code == 0
    # The refusals are one line each.
    assert "already has the source tag" in one_line_error(
        digest("feeds", "rename", "2", "--source", "reading-group")
    )
    assert "built-in tag" in one_line_error(digest("feeds", "rename", "2", "--source", "hf"))
    assert "not usable in a topic" in one_line_error(
        digest("feeds", "rename", "2", "--source", "two words")
    )
    assert "no feed with id 99" in one_line_error(digest("feeds", "rename", "99", "X"))
    assert digest("feeds", "rename", "2").exit_code == 2
    _hf_feed(digest)
    hf_id = max(f["id"] for f in json.loads(digest("feeds", "list", "--json").stdout))
    assert "its tag cannot change" in one_line_error(
        digest("feeds", "rename", str(hf_id), "--source", "huggingface")
    )


def test_feeds_sharing_an_old_host_tag_keep_it_for_stored_papers(  # type: ignore[no-untyped-def]
    digest, settings: Settings
) -> None:
    """Feeds stored before tags existed carry their host; two on one host share it."""
    with session_scope(settings) as session:
        for n in (1, 2):
            session.add(
                Feed(
                    url=f"http://127.0.0.1:9/{n}.xml",
                    name="127.0.0.1",
                    kind=FeedKind.RSS,
                    source="127.0.0.1",
                )
            )
        session.add(Paper(key="url:http://127.0.0.1:9/p", title="P", sources=["127.0.0.1"]))
    result = digest("feeds", "rename", "1", "Lab A", "--source", "lab-a")
    assert result.exit_code == 0, result.output
    assert "stored papers and saved topics keep source:127.0.0.1, which feed 2 also" in (
        result.stdout
    )
    with session_scope(settings) as session:
        assert session.scalars(select(Paper.sources)).one() == ["127.0.0.1"]
        assert [f.source for f in session.scalars(select(Feed).order_by(Feed.id))] == [
            "lab-a",
            "127.0.0.1",
        ]


# --- warnings for topics that can never match ---------------------------------------------


def test_topics_that_can_never_match_are_saved_with_a_warning(  # type: ignore[no-untyped-def]
    digest, feed_server: FeedServer
) -> None:
    assert digest("subscribers", "add", "ada@example.org", "--confirmed").exit_code == 0
    _add_generic_feeds(digest, feed_server)
    cases = {
        "cat:cs.ZZ unlearning": "cat:cs.zz is not an arXiv category",
        "cat:cs.LGG agents": "did you mean cs.LG?",
        "source:nowhere": "source:nowhere: no feed has that source tag",
        "trending": "trending: only Hugging Face papers have upvotes",
    }
    for query, warning in cases.items():
        result = digest("topics", "add", "ada@example.org", query)
        assert result.exit_code == 0, result.output  # a warning, not a refusal
        assert result.stderr.startswith("warning: ") and warning in result.stderr, result.stderr
        tested = digest("topics", "test", query)
        assert tested.exit_code == 0 and warning in tested.stderr
        assert warning in " ".join(
            json.loads(digest("topics", "test", query, "--json").stdout)["warnings"]
        )
    for fine in ("cat:cs.CR jailbreak", "cat:cs.*", "cat:math-ph", "source:safety-reading-group"):
        result = digest("topics", "add", "ada@example.org", fine)
        assert result.exit_code == 0 and result.stderr == "", (fine, result.stderr)
    # With a Hugging Face feed, trending papers can come.
    _hf_feed(digest)
    assert digest("topics", "test", "trending").stderr == ""


def test_like_of_a_paper_not_stored_warns(  # type: ignore[no-untyped-def]
    digest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semantic, "available", lambda: True)  # like: parses; nothing embeds
    with session_scope(settings) as session:
        session.add(Paper(key="arxiv:2401.00001", arxiv_id="2401.00001", title="Stored"))
    assert digest("subscribers", "add", "ada@example.org", "--confirmed").exit_code == 0
    missing = digest("topics", "add", "ada@example.org", "like:9999.99999")
    assert missing.exit_code == 0
    assert "like:9999.99999: no stored paper has that arXiv id" in missing.stderr
    stored = digest("topics", "add", "ada@example.org", "like:2401.00001 -cat:cs.CV")
    assert stored.exit_code == 0 and stored.stderr == ""


def test_a_reader_without_topics_and_no_hugging_face_feed_is_warned_about(digest) -> None:  # type: ignore[no-untyped-def]
    added = digest("subscribers", "add", "alan@example.org", "--confirmed")
    assert added.exit_code == 0
    assert "warning: alan@example.org has no topics" in added.stderr
    assert "there is no Hugging Face feed: nothing will be sent" in added.stderr
    stats = digest("stats")
    assert "warning: 1 active reader has no topics" in stats.stderr
    assert json.loads(digest("stats", "--json").stdout)["warnings"]
    disabled = digest("feeds", "add", HF_URL, "--no-check")
    assert disabled.exit_code == 0
    assert digest("feeds", "disable", "1").exit_code == 0
    assert "feed 1 is disabled" in digest("stats").stderr
    assert digest("feeds", "enable", "1").exit_code == 0
    assert digest("stats").stderr == ""
    assert json.loads(digest("stats", "--json").stdout)["warnings"] == []
    quiet = digest("subscribers", "add", "grace@example.org", "--confirmed")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_import_warns_about_topics_that_can_never_match_with_their_lines(  # type: ignore[no-untyped-def]
    digest, tmp_path: Path
) -> None:
    path = tmp_path / "readers.csv"
    rows = ["email,topics"] + [f"r{i}@example.org,cat:cs.ZZ" for i in range(5)]
    rows += ["s@example.org,source:nowhere; llm", "t@example.org,"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = digest("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: lines 2, 3, 4 and 2 more: cat:cs.zz is not an arXiv category: arXiv papers "
        "never have it, so it matches only papers another feed tags that way (categories: "
        "https://arxiv.org/category_taxonomy)",
        "warning: line 7: source:nowhere: no feed has that source tag, so it matches no new "
        "paper (the feeds' tags: none yet; see `digest feeds list`)",
        "warning: 1 imported reader has no topics, which means the trending Hugging Face "
        "papers, and there is no Hugging Face feed: nothing will be sent; add topics, or the "
        f"feed: digest feeds add {HF_URL}",
    ]
    assert "imported 7 of 7 rows" in result.stdout

"""Merging normalised records into papers: dedup, versions, sources, first-seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.ingest.merge import merge_records
from digest.ingest.sources.base import PaperRecord
from digest.store.models import Paper

T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def arxiv(arxiv_id: str, version: int = 1, **kw: object) -> PaperRecord:
    values: dict[str, object] = {
        "key": f"arxiv:{arxiv_id}",
        "arxiv_id": arxiv_id,
        "version": version,
        "title": f"Paper {arxiv_id} v{version}",
        "abstract": f"Abstract of {arxiv_id} v{version}.",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "categories": ["cs.LG"],
        "url": f"https://arxiv.org/abs/{arxiv_id}v{version}",
        "source": "arxiv",
        "announce_type": "new",
    }
    values.update(kw)
    return PaperRecord(**values)  # type: ignore[arg-type]


def hf(arxiv_id: str, upvotes: int, **kw: object) -> PaperRecord:
    values: dict[str, object] = {
        "key": f"arxiv:{arxiv_id}",
        "arxiv_id": arxiv_id,
        "title": f"Paper {arxiv_id} (HF)",
        "abstract": "HF summary.",
        "authors": ["Ada Lovelace"],
        "hf_url": f"https://huggingface.co/papers/{arxiv_id}",
        "upvotes": upvotes,
        "comments": 2,
        "source": "hf",
    }
    values.update(kw)
    return PaperRecord(**values)  # type: ignore[arg-type]


def papers(session: Session) -> dict[str, Paper]:
    return {p.key: p for p in session.scalars(select(Paper))}


def test_new_papers_are_stored_once_with_first_seen(session: Session) -> None:
    counts = merge_records(session, [arxiv("2401.00001"), arxiv("2401.00002")], T0)
    session.commit()
    assert (counts.new, counts.updated, counts.unchanged) == (2, 0, 0)
    assert len(counts.new_paper_ids) == 2
    again = merge_records(session, [arxiv("2401.00001")], T0 + timedelta(hours=1))
    session.commit()
    assert (again.new, again.updated, again.unchanged) == (0, 0, 1)
    stored = papers(session)
    assert stored["arxiv:2401.00001"].first_seen_at == T0
    assert stored["arxiv:2401.00001"].last_seen_at == T0 + timedelta(hours=1)


def test_the_same_paper_from_arxiv_and_hugging_face_is_one_paper(session: Session) -> None:
    merge_records(session, [arxiv("2401.00001", categories=["cs.LG", "cs.CL"])], T0)
    counts = merge_records(session, [hf("2401.00001", upvotes=42)], T0 + timedelta(hours=2))
    session.commit()
    assert counts.updated == 1
    assert session.scalar(select(func.count()).select_from(Paper)) == 1
    paper = papers(session)["arxiv:2401.00001"]
    # arXiv's text is kept (same version), HF adds what only it knows.
    assert paper.title == "Paper 2401.00001 v1"
    assert paper.authors == ["Ada Lovelace", "Alan Turing"]
    assert paper.upvotes == 42
    assert paper.hf_url == "https://huggingface.co/papers/2401.00001"
    assert paper.sources == ["arxiv", "hf"]
    assert paper.categories == ["cs.LG", "cs.CL"]
    assert paper.first_seen_at == T0


def test_hf_first_then_arxiv_fills_in(session: Session) -> None:
    merge_records(session, [hf("2401.00003", upvotes=3, authors=[])], T0)
    merge_records(session, [arxiv("2401.00003")], T0 + timedelta(hours=1))
    session.commit()
    paper = papers(session)["arxiv:2401.00003"]
    assert paper.authors == ["Ada Lovelace", "Alan Turing"]
    assert paper.categories == ["cs.LG"]
    assert paper.upvotes == 3
    assert paper.first_seen_at == T0


def test_v2_updates_v1_but_is_not_new(session: Session) -> None:
    merge_records(session, [arxiv("2401.00001")], T0)
    counts = merge_records(
        session,
        [arxiv("2401.00001", version=2, announce_type="replace", title="Better title")],
        T0 + timedelta(days=3),
    )
    session.commit()
    assert (counts.new, counts.updated) == (0, 1)
    paper = papers(session)["arxiv:2401.00001"]
    assert paper.version == 2
    assert paper.title == "Better title"
    assert paper.first_seen_at == T0
    # An older version seen later changes nothing.
    merge_records(session, [arxiv("2401.00001", version=1)], T0 + timedelta(days=4))
    session.commit()
    assert papers(session)["arxiv:2401.00001"].title == "Better title"


def test_a_replacement_of_an_unknown_paper_is_not_a_new_paper(session: Session) -> None:
    counts = merge_records(session, [arxiv("2301.00009", version=3, announce_type="replace")], T0)
    session.commit()
    assert counts.new == 0
    assert papers(session) == {}


def test_duplicates_inside_one_feed_merge(session: Session) -> None:
    counts = merge_records(
        session,
        [arxiv("2401.00001"), arxiv("2401.00001", version=2, title="v2"), hf("2401.00001", 5)],
        T0,
    )
    session.commit()
    assert counts.new == 1
    paper = papers(session)["arxiv:2401.00001"]
    assert (paper.version, paper.title, paper.upvotes) == (2, "v2", 5)


def test_doi_papers_merge_by_doi(session: Session) -> None:
    doi = "10.1101/2024.01.01.123456"
    merge_records(
        session,
        [PaperRecord(key=f"doi:{doi}", doi=doi, title="A bioRxiv paper", source="biorxiv.org")],
        T0,
    )
    counts = merge_records(
        session,
        [
            PaperRecord(
                key=f"doi:{doi}", doi=doi, title="A bioRxiv paper", abstract="Now with text."
            )
        ],
        T0 + timedelta(hours=1),
    )
    session.commit()
    assert (counts.new, counts.updated) == (0, 1)
    assert papers(session)[f"doi:{doi}"].abstract == "Now with text."


def journal(doi: str, **kw: object) -> PaperRecord:
    values: dict[str, object] = {
        "key": f"doi:{doi.lower()}",
        "doi": doi.lower(),
        "title": "A journal version",
        "abstract": "From the journal.",
        "url": f"https://journal.example.org/{doi}",
        "source": "rss",
    }
    values.update(kw)
    return PaperRecord(**values)  # type: ignore[arg-type]


def test_a_doi_and_its_arxiv_record_are_one_paper_in_either_order(session: Session) -> None:
    first = merge_records(session, [journal("10.1234/J.5678")], T0)
    second = merge_records(
        session, [arxiv("2509.00002", version=2, doi="10.1234/j.5678")], T0 + timedelta(hours=1)
    )
    session.commit()
    assert (first.new, second.new, second.updated) == (1, 0, 1)
    [paper] = papers(session).values()
    assert paper.key == "arxiv:2509.00002" and paper.arxiv_id == "2509.00002"
    assert paper.first_seen_at == T0 and set(paper.sources) == {"rss", "arxiv"}
    # The journal's next sighting finds it by DOI under its new key.
    again = merge_records(session, [journal("10.1234/j.5678")], T0 + timedelta(hours=2))
    assert (again.new, len(papers(session))) == (0, 1)


def test_a_doi_shared_by_another_arxiv_paper_is_not_merged(session: Session) -> None:
    merge_records(session, [arxiv("2509.00001", doi="10.1234/x")], T0)
    merge_records(session, [arxiv("2509.00003", doi="10.1234/x")], T0)
    session.commit()
    assert set(papers(session)) == {"arxiv:2509.00001", "arxiv:2509.00003"}


def test_a_replacement_keeps_the_first_publication_date(session: Session) -> None:
    merge_records(session, [arxiv("2509.00004", published_at=datetime(2025, 9, 1, tzinfo=UTC))], T0)
    later = datetime(2025, 9, 17, tzinfo=UTC)
    merge_records(
        session,
        [arxiv("2509.00004", version=3, published_at=later, announce_type="replace")],
        T0 + timedelta(days=16),
    )
    session.commit()
    [paper] = papers(session).values()
    assert paper.version == 3
    assert paper.published_at.replace(tzinfo=UTC) == datetime(2025, 9, 1, tzinfo=UTC)

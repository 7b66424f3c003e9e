"""The topic query language: what parses to what, and every error says what and where."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import QueryError
from digest.match import query as q
from digest.match import semantic
from digest.match.query import parse


def texts(node: q.Node) -> list[q.Text]:
    return [leaf for leaf in q.leaves(node) if isinstance(leaf, q.Text)]


# --- words -----------------------------------------------------------------------------


def test_words_are_an_implicit_and_of_stemmed_terms() -> None:
    root = parse("Machine Unlearning").root
    assert isinstance(root, q.And)
    # each word, or both written as one word ("machineunlearning")
    assert [t.seqs for t in texts(root)] == [
        (("machin",), ("machineunlearn",)),
        (("unlearn",), ("machineunlearn",)),
    ]
    assert [t.display for t in texts(root)] == ["Machine", "Unlearning"]


@pytest.mark.parametrize(
    ("a", "b"),
    [("model", "models"), ("LLM", "LLMs"), ("study", "studies"), ("tuning", "tuned")],
)
def test_simple_inflections_fold_to_one_term(a: str, b: str) -> None:
    assert parse(a).root == q.Text(None, parse(b).root.seqs, a)  # type: ignore[union-attr]


def test_hyphenated_word_has_both_spellings() -> None:
    (leaf,) = texts(parse("fine-tuning").root)
    assert leaf.seqs == (("fine", "tune"), ("finetun",))
    # and the spellings without a hyphen are the same terms
    assert texts(parse("finetuning").root)[0].seqs == (("finetun",),)


def test_common_words_are_dropped_outside_quotes_and_kept_inside() -> None:
    root = parse("jailbreak attacks on LLMs").root
    assert [t.display for t in texts(root)] == ["jailbreak", "attacks", "LLMs"]
    (phrase,) = texts(parse('"out of distribution"').root)
    assert phrase.seqs == (("out", "of", "distribution"),)
    assert phrase.quoted


def test_quoted_phrase_is_one_leaf_in_order() -> None:
    (leaf,) = texts(parse('"safety fine-tuning"').root)
    assert leaf.seqs == (("safeti", "fine", "tune"), ("safeti", "finetun"))


# --- operators -------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    root = parse("diffusion models OR unlearning").root
    assert isinstance(root, q.Or)
    assert isinstance(root.children[0], q.And)
    assert root.children[1] == q.Text(None, (("unlearn",),), "unlearning")


def test_not_and_minus_are_the_same() -> None:
    assert parse("safety NOT survey").root == parse("safety -survey").root
    root = parse("safety -survey").root
    assert isinstance(root, q.And)
    assert isinstance(root.children[1], q.Not)


def test_explicit_and_and_parentheses() -> None:
    root = parse("(fraud OR anomaly) AND detection").root
    assert isinstance(root, q.And)
    assert isinstance(root.children[0], q.Or)


def test_lower_case_operators_are_just_common_words() -> None:
    assert parse("fraud or anomaly").root == parse("fraud anomaly").root


# --- fields ----------------------------------------------------------------------------


def test_title_and_abstract_fields_scope_words_phrases_and_groups() -> None:
    assert parse("title:unlearning").root == q.Text("title", (("unlearn",),), "unlearning")
    assert texts(parse('ti:"machine unlearning"').root)[0].field == "title"
    root = parse("abstract:(guardrails OR moderation)").root
    assert {t.field for t in texts(root)} == {"abstract"}


@pytest.mark.parametrize(
    ("text", "surname", "given"),
    [
        ("author:bengio", "bengio", ()),
        ('author:"yoshua bengio"', "bengio", ("yoshua",)),
        ('author:"Bengio, Yoshua"', "bengio", ("yoshua",)),
        ('au:"Y. Bengio"', "bengio", ("y",)),
        ("author:Müller", "muller", ()),
    ],
)
def test_author_forms(text: str, surname: str, given: tuple[str, ...]) -> None:
    root = parse(text).root
    assert isinstance(root, q.Author)
    assert (root.surname, root.given) == (surname, given)


def test_category_source_and_upvotes() -> None:
    assert parse("cat:cs.LG").root == q.Category("cs.lg")
    assert parse("cat:cs.*").root == q.Category("cs.", prefix=True)  # keeps the "."
    assert parse("source:HF").root == q.Source("hf")
    for op in (">", ">=", "<", "<=", "="):
        assert parse(f"upvotes:{op}10").root == q.Upvotes(op, 10)
    assert parse("upvotes:10").root == q.Upvotes(">=", 10)


def test_trending_alone_is_the_builtin_topic_and_a_word_elsewhere() -> None:
    assert parse(" Trending ").is_trending
    assert not parse("trending diffusion").is_trending


def test_colon_as_punctuation_is_not_a_field() -> None:
    root = parse("AEGIS: content moderation").root
    assert [t.display for t in texts(root)] == ["AEGIS", "content", "moderation"]


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('safety title:"machine unlearning', "unclosed quote at column 14"),
        ("(a OR b", "unbalanced parenthesis: '(' is never closed at column 1"),
        ("x (a OR b", "unbalanced parenthesis: '(' is never closed at column 3"),
        ("fraud) detection", "unbalanced parenthesis: ')' without '(' at column 6"),
        ("tilte:unlearning", "unknown field 'tilte:' at column 1 (did you mean title:?)"),
        ("safety autor:bengio", "unknown field 'autor:' at column 8 (did you mean author:?)"),
        ("upvotes:lots", "upvotes: expects a number like upvotes:>=10, got 'lots' at column 1"),
        ("upvotes: 10", "upvotes: expects a number like upvotes:>=10"),
        ("-safety", "query matches nothing: only NOT terms"),
        ("NOT survey -review", "query matches nothing: only NOT terms"),
        ("the of and", "query has only common words ('the', 'of', 'and')"),
        ("fraud OR", "OR needs a term on its right at column 7"),
        ("OR fraud", "OR needs a term on its left at column 1"),
        ("fraud ()", "empty parentheses at column 7"),
        ("cat:cs.LG!", "cat: expects a category like cat:cs.LG or cat:cs.*"),
        ("", "empty query"),
        ("   ", "empty query"),
        ("!!!", "query has no words to match"),
        ("like:banana", "like: expects an arXiv id like like:2401.00001"),
    ],
)
def test_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert message in str(info.value)


def test_error_carries_the_column() -> None:
    with pytest.raises(QueryError) as info:
        parse('diffusion "unclosed')
    assert info.value.column == 11


def test_limits_refuse_abusive_queries() -> None:
    with pytest.raises(QueryError, match="too long"):
        parse("a" * 5000)
    with pytest.raises(QueryError, match="nested deeper"):
        parse("(" * 40 + "x" + ")" * 40)
    with pytest.raises(QueryError, match="too many terms"):
        parse(" ".join(f"word{i}" for i in range(100)))


def test_semantic_topics_refused_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "available", lambda: False)
    for text in ("~safety of reasoning models under fine-tuning", "like:2401.00001"):
        with pytest.raises(QueryError) as caught:
            parse(text)
        # The command that works from a checkout, and the real distribution's name.
        assert "pip install -c constraints-semantic.txt '.[semantic]'" in str(caught.value)
        assert "'digest-papers[semantic]'" in str(caught.value)
        assert "'digest[semantic]'" not in str(caught.value)


def test_semantic_syntax_parses_when_the_extra_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "available", lambda: True)
    assert parse("~safety of  reasoning models").root == q.Semantic("safety of reasoning models")
    root = parse("like:2401.00001v2 -cat:cs.CV").root
    assert isinstance(root, q.And)
    assert root.children[0] == q.Like("2401.00001")
    with pytest.raises(QueryError, match="~ needs a sentence"):
        parse("~ the of")


def test_check_returns_the_message_or_none() -> None:
    assert q.check("diffusion models") is None
    assert q.check('"open') == "unclosed quote at column 1"


# --- property: anything parses or raises QueryError -------------------------------------

_PIECES = st.sampled_from(
    [
        "(",
        ")",
        '"',
        "-",
        "~",
        ":",
        "OR",
        "AND",
        "NOT",
        "title:",
        "ti:",
        "author:",
        "cat:",
        "cs.*",
        "upvotes:>=",
        "source:",
        "like:",
        "fine-tuning",
        "the",
        "LLMs",
        "x",
        "10",
        " ",
        "  ",
        "é",
        "\t",
        "*",
        ">",
        "tilte:",
        "model's",
        "“",
        "”",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_query_error(text: str) -> None:
    try:
        result = parse(text)
    except QueryError as exc:
        assert str(exc)
    else:
        assert isinstance(result, q.Query)


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=25).map("".join))
def test_query_shaped_text_parses_or_raises_query_error(text: str) -> None:
    try:
        result = parse(text)
    except QueryError as exc:
        assert str(exc)
    else:
        assert q.leaves(result.root)


# --- audit fixes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("safety title:-unlearning", "safety -title:unlearning"),
        ("safety abstract:-safety", "safety -abstract:safety"),
        ("safety author:-lopez", "safety -author:lopez"),
        ("safety cat:-cs.CV", "safety -cat:cs.CV"),
        ('safety title:-"machine unlearning"', 'safety -title:"machine unlearning"'),
        ("safety title:-(a OR b)", "safety -title:(a OR b)"),
    ],
)
def test_minus_after_a_field_colon_negates_the_term(written: str, meant: str) -> None:
    assert parse(written).root == parse(meant).root


def test_minus_after_a_field_colon_needs_a_value() -> None:
    with pytest.raises(QueryError, match="title:- needs a value after the minus at column 8"):
        parse("safety title:-")
    with pytest.raises(QueryError, match="only NOT terms"):
        parse("title:-unlearning")


def test_category_wildcard_after_a_dot_is_the_archive_and_a_bare_star_a_prefix() -> None:
    assert parse("cat:math.*").root == q.Category("math.", prefix=True)
    assert parse("cat:cs.L*").root == q.Category("cs.l", prefix=True)


def test_quoted_phrase_also_tries_neighbours_written_as_one_word() -> None:
    (leaf,) = texts(parse('"fine tuning"').root)
    assert leaf.seqs == (("fine", "tune"), ("finetun",))
    (leaf,) = texts(parse('"pre training data"').root)
    assert leaf.seqs == (("pre", "train", "data"), ("pretrain", "data"), ("pre", "trainingdata"))
    # common words are not glued to their neighbours
    (leaf,) = texts(parse('"out of distribution"').root)
    assert leaf.seqs == (("out", "of", "distribution"),)


def test_words_side_by_side_also_match_written_as_one() -> None:
    fine, tuning, llms = texts(parse("fine tuning LLMs").root)
    assert fine.seqs == (("fine",), ("finetun",))
    assert tuning.seqs == (("tune",), ("finetun",), ("tuningllm",))
    assert llms.seqs == (("llm",), ("tuningllm",))
    # quoted words and words in different fields keep to themselves
    assert [t.seqs for t in texts(parse('"fine" tuning title:x').root)] == [
        (("fine",),),
        (("tune",),),
        (("x",),),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"the of"', "query has only common words ('the', 'of') that would match almost "
         "every paper, quoted or not; add a more specific word"),
        ("the of", "query has only common words ('the', 'of') that would match almost "
         "every paper; add a more specific word"),
        ("x -x", "query matches nothing: -x excludes x, which it also asks for at column 3"),
        ("Graph models NOT graph", "NOT graph excludes Graph, which it also asks for at column 14"),
        ('fraud "x" -title:y -x', "-x excludes \"x\", which it also asks for at column 20"),
        ("(a OR b) c -(a OR b)", "-(a OR b) excludes (a OR b)"),
        ("upvotes:>50 upvotes:<10", "query matches nothing: no upvote count is upvotes:>50 "
         "and upvotes:<10 at column 13"),
        ("llm upvotes:=5 upvotes:>=6", "no upvote count is upvotes:=5 and upvotes:>=6"),
        ("llm upvotes:<0", "upvotes:<0 never matches: counts start at 0 at column 5"),
    ],
)  # fmt: skip
def test_queries_that_can_never_match_are_refused(text: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert message in str(info.value)
    assert "put a phrase in quotes" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["x -title:x", "x -(x y)", "upvotes:>=10 upvotes:<=10", "x OR -x y", "(x) -y x2"],
)
def test_only_obvious_contradictions_are_refused(text: str) -> None:
    assert parse(text)

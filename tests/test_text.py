"""The shared tokeniser, normaliser and stemmer: the query side and the paper side
must turn the same word into the same term."""

from __future__ import annotations

import pytest

from digest.match import text as textmod


def paper_terms(text: str) -> set[str]:
    return {tok.term for tok in textmod.tokens(text)}


def query_terms(word: str) -> set[str]:
    return {seq[0] for seq in textmod.alternatives(word) if len(seq) == 1}


@pytest.mark.parametrize(
    "forms",
    [
        ("GPU", "GPUs"),
        ("TPU", "TPUs"),
        ("ReLU", "ReLUs"),
        ("API", "APIs"),
        ("LLM", "LLMs", "llms"),
        ("embed", "embeds", "embedded", "embedding", "embeddings"),
        ("focus", "focused", "focuses", "focusing"),
        ("model", "models", "modeling", "modelled"),
    ],
)
def test_inflections_fold_to_one_term_on_both_sides(forms: tuple[str, ...]) -> None:
    wanted = textmod.term(forms[0])
    for form in forms:
        assert textmod.term(form) == wanted, form
        assert paper_terms(f"We use {form} here.") & {wanted}, form
        assert wanted in query_terms(form), form


def test_a_lower_case_query_word_may_be_an_acronym_plural() -> None:
    # "gpus" cannot show it is "GPUs"; both readings are tried on the query side only
    assert query_terms("gpus") == {"gpus", "gpu"}
    assert query_terms("relus") == {"relus", "relu"}
    assert paper_terms("GPUs and ReLUs") >= {"gpu", "relu"}
    # an English word keeps its s (and only gains a reading no paper word has)
    assert textmod.term("analysis") == "analysis" and textmod.term("bias") == "bias"
    assert query_terms("models") == {"model"}
    assert query_terms("process") == {"process"}


def test_derivations_stay_apart() -> None:
    assert textmod.term("fair") != textmod.term("fairness")
    assert textmod.term("safe") != textmod.term("safety")


@pytest.mark.parametrize(
    ("written", "ascii"),
    [
        ("Yılmaz", "yilmaz"),
        ("Łukasz", "lukasz"),
        ("Łódź", "lodz"),
        ("Søren", "soren"),
        ("Đorđević", "dordevic"),
        ("Straße", "strasse"),
        ("Æsir", "aesir"),
        ("Œuvre", "oeuvre"),
        ("Þór", "thor"),
        ("Müller", "muller"),
        ("O’Brien", "o'brien"),
    ],
)
def test_letters_without_a_decomposition_fold_to_ascii(written: str, ascii: str) -> None:
    assert textmod.normalise(written) == ascii
    assert textmod.term(written) == textmod.term(ascii)


def test_splits_and_joins_of_two_words() -> None:
    assert ("fine", "tune") in textmod.splits("finetuning")
    assert ("data", "set") in textmod.splits("dataset")
    # never into a common word: "notable" is not "not able", "online" not "on line"
    assert all("not" not in pair for pair in textmod.splits("notable"))
    assert all("on" not in pair for pair in textmod.splits("online"))
    assert textmod.splits("fine-tuning") == () and textmod.splits("GPT4") == ()
    assert textmod.joined("fine", "tuning") == textmod.term("finetuning")
    assert textmod.joined("out", "distribution") is None
    assert textmod.joined("fine-grained", "tuning") is None

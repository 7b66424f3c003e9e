"""One tokeniser, normaliser and stemmer, shared by the query parser and the matcher.

Both sides must cut text into the same terms, or a query word could never meet
the paper word it names. The rules:

- Text is NFKC-normalised, case-folded and stripped of accents ("Müller" ->
  "muller"); letters that are not a base letter plus an accent, and so survive
  that, are spelled the way an ASCII keyboard writes them ("Łódź" -> "lodz",
  "Yılmaz" -> "yilmaz", ø, đ, ß -> ss, æ -> ae, œ -> oe, þ -> th; ’ -> ').
  A possessive "'s" is dropped.
- A word is a run of letters and digits. A hyphenated compound ("fine-tuning",
  "GPT-4") yields its parts at consecutive positions *and* the joined word
  ("finetuning") spanning them, so "fine-tuning", "fine tuning" and
  "finetuning" all meet.
- Words are reduced by a light inflectional stemmer: Porter's steps 1a-1c and
  5 (plurals, -ed, -ing, a trailing -e, a doubled final consonant). That folds
  model/models/modeling, LLM/LLMs, study/studies, tune/tuning, attack/attacked,
  but keeps derivations apart (fair/fairness, safe/safety, detect/detection),
  which full stemmers (Porter, Snowball) merge, at a cost in precision a
  reader notices ("fairness" matching "a fair comparison"). "embed" keeps its
  -ed (it is the root of "embedded" and "embeddings", not an inflection).
- A final s after a vowel is not a plural in English stems (focus, analysis,
  bias), but it is after an acronym: written after a capital ("GPUs", "ReLUs",
  "APIs") it goes, so GPU/GPUs and ReLU/ReLUs meet. A lower-case query word
  cannot show that, so the query side tries both readings of it ("gpus" finds
  "GPU" and "GPUs"); the paper side needs no guess.
- Two words written side by side may be one word written apart, or the other
  way round: a query word also matches as two words in a row ("finetuning"
  finds "fine tuning", see :func:`splits`), and query words side by side also
  match written as one word (:func:`joined`), so fine-tuning, finetuning and
  "fine tuning" all meet whichever the reader types.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from digest.core import caches
from digest.core.caches import memoize

# Function words dropped from unquoted queries: they would make an AND of them
# match nearly every abstract. They are still indexed, so a quoted phrase
# ("out of distribution") keeps its exact word order.
STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "towards",
        "toward",
        "using",
        "use",
        "used",
        "based",
        "new",
    ]
)

_WORD = re.compile(r"[^\W_]+(?:[-‐‑–][^\W_]+)*")
_PART = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"(?<=[^\W_])['’]s\b")
_VOWELS = frozenset("aeiou")
# Letters NFKD leaves whole (they are letters of their own, not a letter plus an
# accent), spelled as a reader without them types; applied after case-folding
# (which already makes ß "ss").
_FOLD = str.maketrans(
    {
        "ı": "i",
        "ł": "l",
        "ŀ": "l",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "ŧ": "t",
        "ŋ": "n",
        "ĸ": "k",
        "þ": "th",
        "æ": "ae",
        "œ": "oe",
        "’": "'",
        "‘": "'",
        "ʼ": "'",
    }
)
# Roots that end in -ed: stripping it would part "embed" from "embedded"/"embedding"
# (which lose a doubled d instead). No spelling rule tells these from "opened".
_ED_ROOTS = ("embed", "imbed")


class Token(NamedTuple):
    """One term of a text: its stem, the positions it spans, and the words as written."""

    term: str
    start: int
    end: int  # inclusive; equals start except for a joined hyphenated compound
    surface: str


_norm_cache: dict[str, str] = {}
caches.register(_norm_cache.clear)


def normalise(word: str) -> str:
    """Case-fold and strip accents: the form both sides compare before stemming."""
    cached = _norm_cache.get(word)
    if cached is not None:
        return cached
    decomposed = unicodedata.normalize("NFKD", word.casefold().translate(_FOLD))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    if len(_norm_cache) < 500_000:
        _norm_cache[word] = folded
    return folded


def _is_consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in _VOWELS:
        return False
    if ch == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in ``stem``."""
    m = 0
    prev_vowel = False
    for i in range(len(stem)):
        vowel = not _is_consonant(stem, i)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _is_consonant(stem, i) for i in range(len(stem)))


def _ends_double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    if len(word) < 3:
        return False
    return (
        _is_consonant(word, len(word) - 3)
        and not _is_consonant(word, len(word) - 2)
        and _is_consonant(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


def _stem(word: str) -> str:
    # Step 1a: plurals.
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif (
        word.endswith("s")
        and not word.endswith(("ss", "us", "is"))
        # "bias" is no plural (but "ideas" is).
        and not (len(word) <= 4 and word.endswith("as"))
    ):
        word = word[:-1]
    # Step 1b: -eed, -ed, -ing.
    if word.endswith(_ED_ROOTS):
        pass
    elif word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    else:
        for suffix in ("ed", "ing"):
            if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
                word = word[: -len(suffix)]
                if word.endswith(("at", "bl", "iz")):
                    word += "e"
                elif _ends_double_consonant(word) and word[-1] not in "lsz":
                    word = word[:-1]
                elif _measure(word) == 1 and _ends_cvc(word):
                    word += "e"
                break
    # Step 1c: a final y after a vowel-bearing stem.
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    # Step 5: a trailing e, a doubled l.
    if word.endswith("e"):
        m = _measure(word[:-1])
        if m > 1 or (m == 1 and not _ends_cvc(word[:-1])):
            word = word[:-1]
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


_stem_cache: dict[str, str] = {}
caches.register(_stem_cache.clear)


def stem(word: str) -> str:
    """The light stem of one already-normalised word (see the module docstring)."""
    cached = _stem_cache.get(word)
    if cached is not None:
        return cached
    # Short words, words with digits and acronyms of three letters stay as they are:
    # "gas" is not a plural, "R1" not an inflection.
    result = word if len(word) <= 3 or not word.isalpha() else _stem(word)
    if len(_stem_cache) < 500_000:
        _stem_cache[word] = result
    return result


def term(word: str) -> str:
    """normalise + stem: the indexed form of one written word."""
    # A capital before a final lower-case s marks an acronym's plural (GPUs, ReLUs,
    # APIs), which the stemmer would keep after a vowel (focus, analysis).
    if len(word) > 2 and word[-1] == "s" and word[-2].isupper():
        word = word[:-1]
    return stem(normalise(word))


def tokens(text: str) -> list[Token]:
    """Every term of ``text`` with its positions (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = _POSSESSIVE.sub("", text)
    out: list[Token] = []
    pos = 0
    for match in _WORD.finditer(text):
        surface = match.group()
        parts = _PART.findall(surface)
        if len(parts) == 1:
            out.append(Token(term(surface), pos, pos, surface))
            pos += 1
            continue
        start = pos
        for part in parts:
            out.append(Token(term(part), pos, pos, part))
            pos += 1
        out.append(Token(term("".join(parts)), start, pos - 1, surface))
    return out


def alternatives(written: str) -> tuple[tuple[str, ...], ...]:
    """The ways one written word can appear in a paper, as term sequences.

    "models" -> (("model",),); "fine-tuning" -> (("fine", "tune"), ("finetun",)).
    """
    parts = _PART.findall(written)
    if not parts:
        return ()
    if len(parts) == 1:
        word = parts[0]
        single = term(word)
        # "gpus" may be "GPUs", whose s the paper side drops (see term()).
        if len(word) > 3 and word[-1] in "sS" and single[-1:] == "s" and single[-2] in _VOWELS:
            acronym = term(word[:-1])
            if acronym != single:
                return ((single,), (acronym,))
        return ((single,),)
    return (tuple(term(p) for p in parts), (term("".join(parts)),))


@memoize(maxsize=65536)
def joined(first: str, second: str) -> str | None:
    """The term of two written words written as one ("fine", "tuning" -> "finetun"),
    or None unless both are plain words (no hyphen or dot parts, not common words)."""
    if is_stop_word(first) or is_stop_word(second):
        return None
    a, b = _PART.findall(first), _PART.findall(second)
    if len(a) != 1 or len(b) != 1:
        return None
    return term(a[0] + b[0])


_MIN_PART = 2


@memoize(maxsize=65536)
def splits(written: str) -> tuple[tuple[str, str], ...]:
    """The term pairs one written word would be if written as two words in a row:
    "finetuning" -> (..., ("fine", "tune"), ...).

    Every split into two parts of two letters or more, except into a common word
    ("notable" is not "not able", "online" not "on line"). Most pairs never occur
    in a paper; looking them up costs one dictionary probe each.
    """
    parts = _PART.findall(written)
    if len(parts) != 1 or not parts[0].isalpha():
        return ()
    word = parts[0]
    out: list[tuple[str, str]] = []
    for cut in range(_MIN_PART, len(word) - _MIN_PART + 1):
        left, right = word[:cut], word[cut:]
        if is_stop_word(left) or is_stop_word(right):
            continue
        out.append((term(left), term(right)))
    return tuple(dict.fromkeys(out))


def query_words(text: str) -> list[str]:
    """The written words of a query fragment, compounds kept whole."""
    text = unicodedata.normalize("NFKC", text)
    text = _POSSESSIVE.sub("", text)
    return [m.group() for m in _WORD.finditer(text)]


def is_stop_word(written: str) -> bool:
    return normalise(written) in STOP_WORDS

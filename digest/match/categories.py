"""The arXiv category taxonomy (https://arxiv.org/category_taxonomy), for warnings.

``cat:`` topics are checked against it when a reader saves them: a code that is not
here (``cat:cs.ZZ``) can never match an arXiv paper. It is a warning, never a
refusal: arXiv adds categories now and then, and other feeds put their own tags in
``categories`` too. The retired archives (``cmp-lg``, ``solv-int``, …) are listed
because old papers still carry them.
"""

from __future__ import annotations

import difflib

from digest.core.caches import memoize

_ARCHIVES: dict[str, tuple[str, ...]] = {
    "astro-ph": ("CO", "EP", "GA", "HE", "IM", "SR"),
    "cond-mat": (
        "dis-nn", "mes-hall", "mtrl-sci", "other", "quant-gas", "soft", "stat-mech",
        "str-el", "supr-con",
    ),
    "cs": (
        "AI", "AR", "CC", "CE", "CG", "CL", "CR", "CV", "CY", "DB", "DC", "DL", "DM", "DS",
        "ET", "FL", "GL", "GR", "GT", "HC", "IR", "IT", "LG", "LO", "MA", "MM", "MS", "NA",
        "NE", "NI", "OH", "OS", "PF", "PL", "RO", "SC", "SD", "SE", "SI", "SY",
    ),
    "econ": ("EM", "GN", "TH"),
    "eess": ("AS", "IV", "SP", "SY"),
    "math": (
        "AC", "AG", "AP", "AT", "CA", "CO", "CT", "CV", "DG", "DS", "FA", "GM", "GN", "GR",
        "GT", "HO", "IT", "KT", "LO", "MG", "MP", "NA", "NT", "OA", "OC", "PR", "QA", "RA",
        "RT", "SG", "SP", "ST",
    ),
    "nlin": ("AO", "CD", "CG", "PS", "SI"),
    "physics": (
        "acc-ph", "ao-ph", "app-ph", "atm-clus", "atom-ph", "bio-ph", "chem-ph", "class-ph",
        "comp-ph", "data-an", "ed-ph", "flu-dyn", "gen-ph", "geo-ph", "hist-ph", "ins-det",
        "med-ph", "optics", "plasm-ph", "pop-ph", "soc-ph", "space-ph",
    ),
    "q-bio": ("BM", "CB", "GN", "MN", "NC", "OT", "PE", "QM", "SC", "TO"),
    "q-fin": ("CP", "EC", "GN", "MF", "PM", "PR", "RM", "ST", "TR"),
    "stat": ("AP", "CO", "ME", "ML", "OT", "TH"),
}  # fmt: skip

#: Archives without subcategories, and retired ones old papers still carry.
_PLAIN = (
    "astro-ph", "cond-mat", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math-ph",
    "nucl-ex", "nucl-th", "quant-ph",
    # retired, folded into the archives above
    "acc-phys", "adap-org", "alg-geom", "ao-sci", "atom-ph", "bayes-an", "chao-dyn",
    "chem-ph", "cmp-lg", "comp-gas", "dg-ga", "funct-an", "mtrl-th", "patt-sol",
    "plasm-ph", "q-alg", "solv-int", "supr-con",
)  # fmt: skip

#: Every category code, in arXiv's spelling (``cs.CR``, ``cond-mat.mes-hall``).
ARXIV_CATEGORIES: tuple[str, ...] = tuple(
    sorted({f"{a}.{s}" for a, subs in _ARCHIVES.items() for s in subs} | set(_PLAIN))
)
#: arXiv's spelling by lower-cased code: the query language lower-cases ``cat:`` values.
_BY_FOLDED = {code.lower(): code for code in ARXIV_CATEGORIES}
#: The archive names (``cs``, ``math``, ``hep-th``…): ``cat:cs`` and ``cat:cs.*`` name them.
ARCHIVES: frozenset[str] = frozenset(
    {*(a.lower() for a in _ARCHIVES), *(p.lower() for p in _PLAIN)}
)


def canonical(code: str) -> str | None:
    """arXiv's spelling of a category (``cs.cr`` → ``cs.CR``), or None if it is not one."""
    return _BY_FOLDED.get(code.strip().lower())


def is_known(value: str, prefix: bool = False) -> bool:
    """Does ``cat:VALUE`` (or the wildcard ``cat:VALUE*``) name any arXiv category?

    Values are as the query parser keeps them: lower-cased, and for a wildcard the
    text before the ``*`` (``cs.`` for ``cs.*``, ``cs.l`` for ``cs.L*``).
    """
    folded = value.strip().lower()
    if not prefix:
        return folded in _BY_FOLDED or folded in ARCHIVES
    if folded.rstrip(".") in ARCHIVES and folded.endswith("."):
        return True
    return any(code.startswith(folded) for code in _BY_FOLDED)


@memoize(maxsize=1024)
def suggest(value: str) -> tuple[str, ...]:
    """Up to three real categories close to a mistyped one (``cs.ZZ`` → ``cs.SD``…)."""
    folded = value.strip().lower()
    archive = folded.split(".", 1)[0]
    pool = [code for code in _BY_FOLDED if code.split(".", 1)[0] == archive] or list(_BY_FOLDED)
    close = difflib.get_close_matches(folded, pool, n=3, cutoff=0.75)
    return tuple(_BY_FOLDED[c] for c in close)


__all__ = ["ARCHIVES", "ARXIV_CATEGORIES", "canonical", "is_known", "suggest"]

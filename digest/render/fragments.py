"""Each paper's card laid out once and reused in every reader's digest.

A day's run sends the same couple of thousand papers to every reader: laying out
(highlighting, escaping, wrapping) a paper's card again for each of them was most
of the cost of rendering a digest. A card's parts that are the same for every
reader who gets it with the same highlighted terms (title, authors, categories,
abstract, links, upvotes: ``templates/email/digest/card.html`` and ``card.txt``)
are rendered once per (paper, terms) and kept in :data:`CARDS`; what is the reader's
own (the card's number, the reason, the stop link, counts, the greeting, the links
naming the reader) stays in ``body.mjml`` and ``body.txt`` around them. The result
is the same bytes as laying every card out in the whole template
(``tests/test_render_reuse.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from digest.core import caches
from digest.core.caches import memoize
from digest.render.cards import Card
from digest.render.templates import html_fragment, text_fragment


@dataclass(frozen=True)
class CardParts:
    """The reader-independent parts of one card, ready to be put in a digest."""

    html_title: Markup  # the linked, highlighted title (after the reader's number)
    html_body: Markup  # authors and categories, abstract, the links row
    text_body: str  # the text part's lines below the title line


@memoize(maxsize=None)
def _card_macros() -> tuple[Any, Any]:
    module = html_fragment("digest", "card.html").module
    return module.title, module.body  # type: ignore[attr-defined]  # the template's macros


class CardCache:
    """Card parts by (paper, highlighted terms), the least recently used dropped first.

    Keyed by the card's own content (not a paper id: ids are per database and a
    paper's text or upvotes can change), so a hit is always the same bytes.
    ``size`` bounds memory: a part is ~4 KB, so the default is ~30 MB at most.
    """

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._parts: OrderedDict[Hashable, CardParts] = OrderedDict()
        self.hits = 0
        self.misses = 0
        caches.register(self.clear)

    def clear(self) -> None:
        self._parts.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._parts)

    def parts(self, card: Card) -> CardParts:
        key = card.content_key()
        found = self._parts.get(key)
        if found is not None:
            self.hits += 1
            self._parts.move_to_end(key)
            return found
        self.misses += 1
        title, body = _card_macros()
        made = CardParts(
            html_title=Markup(title(card)),
            html_body=Markup(body(card)),
            text_body=text_fragment("digest", "card.txt").render(card=card),
        )
        self._parts[key] = made
        while len(self._parts) > self.size:
            self._parts.popitem(last=False)
        return made

    def fill(self, cards: Iterable[Card]) -> None:
        """Give each card its parts (laid out now, or by an earlier digest)."""
        for card in cards:
            parts = self.parts(card)
            card.html_title = parts.html_title
            card.html_body = parts.html_body
            card.text_body = parts.text_body


CARDS = CardCache()

__all__ = ["CARDS", "CardCache", "CardParts"]

"""Render: the digest's view model (``cards``), the compiled templates (``templates``),
and whole emails (``emails``): a digest with its size budget, and the short ones."""

from digest.render.cards import Card, Group, cut_abstract, highlight, make_card, short_authors
from digest.render.emails import (
    HTML_BUDGET,
    DigestContext,
    RenderedEmail,
    digest_view,
    render_digest,
    render_simple,
)
from digest.render.templates import SIMPLE_KINDS, compile_mjml, compiled_templates

__all__ = [
    "HTML_BUDGET",
    "SIMPLE_KINDS",
    "Card",
    "DigestContext",
    "Group",
    "RenderedEmail",
    "compile_mjml",
    "compiled_templates",
    "cut_abstract",
    "digest_view",
    "highlight",
    "make_card",
    "render_digest",
    "render_simple",
    "short_authors",
]

"""Email templates: MJML compiled once per kind per process, then Jinja per email.

Each email kind has a folder in ``templates/email/<kind>/`` (shipped in the wheel
as ``digest.templates``) with ``subject.txt``, ``body.mjml`` and ``body.txt``.
``body.mjml`` is compiled to HTML by mjml-python the first time it is needed;
the Jinja placeholders and loops survive compilation (loops around MJML
sections sit inside ``<mj-raw>``, everything else inside ``<mj-text>``, whose
content MJML copies verbatim). Per email only Jinja runs on the compiled HTML:
about four times faster than MJML per email, with byte-identical output.

Everything reaches the HTML through Jinja with autoescape on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
import mjml

from digest.core.caches import memoize
from digest.core.text import clean_text, safe_url
from digest.render.cards import highlight, wrap_once

SIMPLE_KINDS = ("confirm", "welcome", "link", "unsubscribed")
#: Every kind with a template folder: the digest, the simple ones, and the answer to mail
#: received (digest.render.replies).
KINDS = ("digest", *SIMPLE_KINDS, "reply")

_INCLUDE = re.compile(r'<mj-include path="\.\./_shared/([a-z_]+\.mjml)"\s*/>')


def _template_text(kind: str, name: str) -> str:
    """A template file; ``<mj-include path="../_shared/x.mjml" />`` lines are inlined.

    Read through importlib.resources so an installed wheel works without a checkout.
    """
    root = resources.files("digest.templates").joinpath("email")
    text = root.joinpath(kind, name).read_text("utf-8")
    return _INCLUDE.sub(lambda m: root.joinpath("_shared", m.group(1)).read_text("utf-8"), text)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_url"] = safe_url
    env.filters["highlight"] = highlight
    env.filters["clean"] = clean_text
    return env


def _text_env() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["safe_url"] = safe_url
    env.filters["clean"] = clean_text
    env.filters["wrap"] = wrap_once
    return env


_HTML_ENV = _html_env()
_TEXT_ENV = _text_env()

_HEAD_EXTRA = (
    '<meta name="color-scheme" content="light dark">'
    '<meta name="supported-color-schemes" content="light dark">'
    '<meta name="format-detection" content="telephone=no,address=no,email=no,date=no">'
)


def compile_mjml(source: str) -> str:
    """MJML → HTML with the Jinja syntax left intact (no web fonts, nothing fetched)."""
    result = mjml.mjml2html(source, fonts={}, disable_comments=True)
    html = result if isinstance(result, str) else result.html
    # The color-scheme metas make Apple Mail and others honour our dark-mode rules
    # instead of inverting colours themselves.
    return html.replace("<head>", "<head>" + _HEAD_EXTRA, 1)


@dataclass(frozen=True)
class CompiledTemplates:
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template


@memoize(maxsize=None)
def compiled_templates(kind: str) -> CompiledTemplates:
    """The kind's templates, MJML compiled once per process (cached)."""
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}; use one of {KINDS}")
    return CompiledTemplates(
        subject=_TEXT_ENV.from_string(_template_text(kind, "subject.txt")),
        html=_HTML_ENV.from_string(compile_mjml(_template_text(kind, "body.mjml"))),
        text=_TEXT_ENV.from_string(_template_text(kind, "body.txt")),
    )


@memoize(maxsize=None)
def html_fragment(kind: str, name: str) -> jinja2.Template:
    """A piece of a kind's HTML that is not MJML (a card), parsed once per process.

    It goes inside an ``<mj-text>``, whose content MJML copies verbatim, so rendering
    it on its own gives the bytes it would have given inside the compiled template.
    """
    return _HTML_ENV.from_string(_template_text(kind, name))


@memoize(maxsize=None)
def text_fragment(kind: str, name: str) -> jinja2.Template:
    """A piece of a kind's text part (a card), parsed once per process."""
    return _TEXT_ENV.from_string(_template_text(kind, name))

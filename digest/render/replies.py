"""Render the answer to a message received by `digest inbound` (commands, confirm, unsubscribe).

The view is plain data (it is stored with the message until the answer is sent,
so a restart can still send it); everything in it came from the reader or from
our own results and is cleaned here, whatever it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.config import Settings
from digest.core.text import clean_text, header_safe, safe_url
from digest.render.emails import RenderedEmail, _common
from digest.render.templates import compiled_templates

_TEXT_LIMIT = 1200


def _results(items: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            out.append(
                {
                    "command": clean_text(item.get("command", ""), 120),
                    "ok": bool(item.get("ok")),
                    "text": clean_text(item.get("text", ""), _TEXT_LIMIT),
                }
            )
    return out[:100]


def _topics(items: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            out.append(
                {
                    "n": int(item.get("n", 0) or 0),
                    "query": clean_text(item.get("query", ""), 1000),
                    "label": clean_text(item.get("label", ""), 200),
                }
            )
    return out[:100]


def _strings(items: object, limit: int) -> list[str]:
    return [clean_text(x, limit) for x in (items if isinstance(items, list) else [])][:100]


def render_reply(
    settings: Settings, email: str, view: Mapping[str, Any], help_lines: Any = ()
) -> RenderedEmail:
    """The answer email: ``view`` holds subject, heading, intro, results, notes, the
    subscription summary (status, schedule, max, topics, muted, less), ``help`` and
    the links (confirm_url, manage_url, unsubscribe_url)."""
    values: dict[str, Any] = {
        **_common(settings, email),
        "subject": header_safe(view.get("subject") or f"Your message to {settings.brand}"),
        "preheader": "",
        "heading": clean_text(view.get("heading") or "Your commands", 120),
        "intro": clean_text(view.get("intro", ""), _TEXT_LIMIT),
        "results": _results(view.get("results")),
        "notes": _strings(view.get("notes"), 300),
        "status": clean_text(view.get("status", ""), 40),
        "schedule": clean_text(view.get("schedule", ""), 120),
        "max": clean_text(view.get("max", ""), 10),
        "topics": _topics(view.get("topics")),
        "muted": _strings(view.get("muted"), 120),
        "less": int(view.get("less", 0) or 0),
        "help": bool(view.get("help")),
        "help_lines": [(clean_text(a, 60), clean_text(b, 200)) for a, b in help_lines],
        "request_address": clean_text(settings.request_addr, 320),
        "confirm_url": safe_url(view.get("confirm_url", "")),
        "confirm_by_reply": bool(view.get("confirm_by_reply")),
        "manage_url": safe_url(view.get("manage_url", "")),
        "unsubscribe_url": safe_url(view.get("unsubscribe_url", "")),
    }
    compiled = compiled_templates("reply")
    return RenderedEmail(
        subject=header_safe(compiled.subject.render(values)),
        html=compiled.html.render(values),
        text=compiled.text.render(values),
    )


__all__ = ["render_reply"]

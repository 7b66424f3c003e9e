"""Commands by email: reading them from a message (:mod:`digest.inbound.actions` carries
them out).

One command per line, in the subject or the body, in any case::

    subscribe [QUERY]      add QUERY        remove N        list       help
    daily   weekly [DAY]   hour 0-23        timezone ZONE   max N
    pause   resume         unsubscribe (also cancel, stop)   end

and in a reply to a digest (the numbers are those printed on its cards and topics)::

    more N    less N    mute author NAME    unmute author NAME    stop N

Reading is bounded and linear: quoted lines (``>``) are skipped; a signature
(``--``), a quoted-reply header ("On … wrote:", "-----Original Message-----",
"From: …") or ``end`` ends the commands; at most :data:`MAX_COMMANDS` commands
and :data:`MAX_LINES` lines are read, and after :data:`MAX_UNKNOWN` lines in a
row that are not commands the rest is ignored (a letter, not a list of commands).
A line over :data:`MAX_LINE` characters is refused, not parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from digest.core.text import clean_text

MAX_LINES = 100
MAX_LINE = 1000
MAX_COMMANDS = 20
MAX_UNKNOWN = 3

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|antw)\s*:|\[[^\]]{0,60}\])\s*", re.I
)
_STOP_LINE = re.compile(
    r"^(?:--\s*|_{8,}|-{3,}\s*original message\s*-{3,}|-{3,}\s*forwarded message\s*-{3,}"
    r"|(?:from|von|de|van)\s*:\s.*|on\s.{0,200}\swrote:|le\s.{0,200}\sa\s+écrit\s*:"
    r"|am\s.{0,200}\sschrieb\s.{0,100}:)$",
    re.IGNORECASE,
)

HELP = (
    (
        "subscribe [query]",
        "start a subscription (you confirm it by replying); with a query, its first topic",
    ),
    ("add QUERY", 'add a topic, e.g. add "machine unlearning" or add author:bengio'),
    ("remove N", "remove topic N (see the numbered list)"),
    ("list", "show your topics and schedule"),
    ("daily / weekly [day]", "one digest a day, or one a week (on Monday, or the day given)"),
    ("hour H", "send at H o'clock (0-23) in your time zone"),
    ("timezone ZONE", "your time zone, e.g. Europe/Paris"),
    ("max N", "at most N papers per digest (1-100)"),
    ("pause / resume", "stop the digests for a while, then start them again"),
    ("unsubscribe", "stop everything (also: cancel, stop)"),
    ("more N", "in a reply to a digest: more papers like paper N"),
    ("less N", "in a reply to a digest: fewer papers like paper N"),
    ("mute author NAME", "no papers by that author; unmute author NAME undoes it"),
    ("stop N", "in a reply to a digest: drop topic N"),
    ("help", "this list"),
)


@dataclass(frozen=True)
class Line:
    """One command line as read: its words, or why it is not a command."""

    shown: str  # as written, cleaned and cut, for the reply
    word: str = ""  # the command, lower case ("" when not a command)
    arg: str = ""
    problem: str = ""


@dataclass
class Result:
    command: str
    ok: bool
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"command": self.command, "ok": self.ok, "text": self.text}


WORDS = frozenset(
    {
        "subscribe", "add", "remove", "list", "daily", "weekly", "hour", "timezone", "tz",
        "max", "pause", "resume", "unsubscribe", "cancel", "stop", "help", "more", "less",
        "mute", "unmute", "end", "confirm",
    }
)  # fmt: skip


def subject_command(subject: str) -> str:
    """The subject as a command line, if its first word is a command ("Re: help")."""
    text = subject or ""
    for _ in range(10):  # "Re: Fwd: [list] Re: …", bounded
        stripped = _SUBJECT_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    text = clean_text(text, MAX_LINE)
    first = text.split(" ", 1)[0].lower() if text else ""
    return text if first in WORDS else ""


def read_lines(subject: str, body: str) -> tuple[list[Line], list[str]]:
    """The command lines of a message, and notes on what was not read (see the module)."""
    lines: list[Line] = []
    notes: list[str] = []
    first = subject_command(subject)
    if first:
        lines.append(_line(first))
    unknown = 0
    scanned = 0
    for raw in body.splitlines():
        scanned += 1
        if scanned > MAX_LINES:
            notes.append(f"only the first {MAX_LINES} lines were read")
            break
        if len(raw) > MAX_LINE:
            shown = clean_text(raw[:60], 60) + "…"
            lines.append(
                Line(shown, problem=f"the line is over {MAX_LINE} characters long: not read")
            )
            unknown += 1
        else:
            text = raw.strip()
            if not text or text.startswith(">"):
                continue
            if _STOP_LINE.match(text) or raw.rstrip("\r\n") == "-- ":
                break
            line = _line(text)
            if line.word == "end":
                break
            lines.append(line)
            unknown = unknown + 1 if line.problem else 0
        if unknown >= MAX_UNKNOWN:
            notes.append(f"{MAX_UNKNOWN} lines in a row were not commands: the rest was not read")
            break
    positions = [i for i, line in enumerate(lines) if not line.problem]
    if len(positions) > MAX_COMMANDS:
        lines = lines[: positions[MAX_COMMANDS - 1] + 1]
        notes.append(f"only the first {MAX_COMMANDS} commands were carried out")
    if not any(not line.problem for line in lines) and not notes:
        notes.append('no commands found: send "help" for the list')
    return lines, notes


def _line(text: str) -> Line:
    text = clean_text(text, MAX_LINE)
    word, _sep, arg = text.partition(" ")
    word = word.lower().rstrip(":,.!")
    shown = clean_text(text, 120)
    if word not in WORDS:
        return Line(shown, problem='not a command (send "help" for the list)')
    return Line(shown, word, arg.strip())


__all__ = [
    "HELP",
    "MAX_COMMANDS",
    "MAX_LINE",
    "MAX_LINES",
    "WORDS",
    "Line",
    "Result",
    "read_lines",
    "subject_command",
]

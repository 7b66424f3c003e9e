"""Benchmark: our render, MIME and SMTP per digest, against the raw rate of the same sink.

The sink is ``bench/smtp_sink.py``, a minimal asyncio SMTP server in its own process
(an aiosmtpd sink in the sending process is slower than we are and hides the gap).
Every way of sending runs in this run, over the same number of connections (one
sending process per connection, as workers are), into the same sink, with real
digests of ours (seed papers, 20 per reader, the render benchmark's readers):

- **raw smtplib**: ``smtplib.sendmail`` of pre-built messages (the issue's "limit");
- **raw socket**: pre-stuffed bytes, MAIL/RCPT/DATA in one write: the wire itself;
- **ours, before**: ``SmtpTransport`` one command at a time with the regex
  dot-stuffing, sending the quoted-printable messages;
- **ours, after**: ``SmtpTransport`` as it is (PIPELINING when offered, no regex over
  CRLF-normalised bytes), sending the base64 messages.

It also times, per digest in this process, rendering (every card laid out in every
reader's digest vs. each card once, reused) and building the MIME bytes
(quoted-printable vs. base64 HTML), the way ``bench/render.py`` does.

    .venv/bin/python bench/send_wire.py                        # 4,000 messages, 2 connections
    .venv/bin/python bench/send_wire.py --messages 10000 --connections 4 --rounds 3

Results are recorded in bench/README.md ("Send over the wire").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import render as bench_render  # noqa: E402  (bench/render.py: its readers and old renderer)

from digest import render  # noqa: E402
from digest.config import Settings  # noqa: E402
from digest.deliver import Envelope, smtp  # noqa: E402
from digest.deliver import message as mime  # noqa: E402
from digest.deliver.message import build_message, make_message_id  # noqa: E402
from digest.deliver.smtp import SmtpTransport  # noqa: E402

SENDER = "digest@digest.example.org"


def old_dot_stuff(data: bytes) -> bytes:
    """deliver.smtp._dot_stuff before: a regex over every line end, always."""
    data = re.sub(rb"(?:\r\n|\n|\r)", b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class OneCommandAtATime(SmtpTransport):
    """The transport as before: PIPELINING ignored even when the server offers it."""

    def _connect(self) -> smtplib.SMTP:
        conn = super()._connect()
        conn.esmtp_features.pop("pipelining", None)
        return conn


def timed(fn: Callable[[int], object], n: int) -> float:
    """Milliseconds per call of ``fn(i)`` for i in range(n)."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1000


# --- the senders (each runs in its own process, one connection each) ----------------------


def raw_smtplib(port: int, messages: list[bytes], count: int, offset: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(count):
            conn.sendmail(SENDER, [f"r{offset + i}@example.org"], messages[i % len(messages)])


def raw_socket(port: int, messages: list[bytes], count: int, offset: int) -> None:
    stuffed = [old_dot_stuff(m) for m in messages]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")

        def replies(n: int) -> None:
            for _ in range(n):
                line = reader.readline()
                while line[3:4] == b"-":
                    line = reader.readline()
                if line[:1] not in (b"2", b"3"):
                    raise RuntimeError(line)

        replies(1)
        sock.sendall(b"EHLO bench\r\n")
        replies(1)
        for i in range(count):
            sock.sendall(
                f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r{offset + i}@example.org>\r\nDATA\r\n".encode()
            )
            replies(3)
            sock.sendall(stuffed[i % len(stuffed)])
            replies(1)
        sock.sendall(b"QUIT\r\n")


def ours(port: int, messages: list[bytes], count: int, offset: int, before: bool) -> None:
    if before:
        smtp._dot_stuff = old_dot_stuff  # type: ignore[assignment]  # this process only
    kind = OneCommandAtATime if before else SmtpTransport
    with kind(f"smtp://127.0.0.1:{port}") as transport:
        for i in range(count):
            outcome = transport.send(
                SENDER, f"r{offset + i}@example.org", messages[i % len(messages)], f"<{i}@x>"
            )
            if not outcome.ok:
                raise RuntimeError(outcome.describe())


#: The digests the full senders render and build (set before the senders fork).
ITEMS: list[render.DigestContext] = []
SETTINGS: list[Settings] = []


def full(port: int, messages: list[bytes], count: int, offset: int, way: str) -> None:
    """Render, build and send each digest: as before (every card laid out per reader,
    quoted-printable, one command at a time, the regex), or as now with ``send`` per
    message or with ``send_many`` building each message while the last is stored."""
    settings = SETTINGS[0]

    def envelope(i: int) -> Envelope:
        ctx = ITEMS[i % len(ITEMS)]
        rendered = bench_render.render_whole(ctx) if way == "before" else render.render_digest(ctx)
        built = build_message(
            settings,
            rendered,
            to=f"r{offset + i}@example.org",
            message_id=make_message_id(offset + i, settings.from_domain),
            unsubscribe_url=ctx.unsubscribe_url,
        )
        return Envelope(built.envelope_from, built.to, built.data, built.message_id)

    if way == "before":
        smtp._dot_stuff = old_dot_stuff  # type: ignore[assignment]  # this process only
        mime._part = QP_PART[1]  # type: ignore[assignment]
    kind = OneCommandAtATime if way == "before" else SmtpTransport
    with kind(f"smtp://127.0.0.1:{port}") as transport:
        if way == "many":
            outcomes = (o for _, o in transport.send_many((i, envelope(i)) for i in range(count)))
        else:
            outcomes = (
                transport.send(e.envelope_from, e.to, e.data, e.message_id)
                for e in map(envelope, range(count))
            )
        for outcome in outcomes:
            if not outcome.ok:
                raise RuntimeError(outcome.describe())


QP_PART = [mime._part]


def _qp_only(content_type: str, text: str, encoding: str = "") -> bytes:
    return QP_PART[0](content_type, text)  # quoted-printable whatever is asked, as before


QP_PART.append(_qp_only)


def stages(port: int, total: int, slice_size: int = 50) -> dict[str, dict[str, list[float]]]:
    """Per digest, in this one process: render, MIME and SMTP, before and after, each
    over its own connection to the sink, alternating in slices so load hits both alike.

    Returns way -> stage -> [CPU seconds, wall seconds] summed over the digests."""
    settings = SETTINGS[0]
    part, stuff = mime._part, smtp._dot_stuff
    sums = {w: {st: [0.0, 0.0] for st in ("render", "MIME", "SMTP")} for w in ("before", "after")}
    with (
        OneCommandAtATime(f"smtp://127.0.0.1:{port}") as old,
        SmtpTransport(f"smtp://127.0.0.1:{port}") as new,
    ):
        for start in range(0, total, slice_size):
            for way in ("before", "after"):
                before = way == "before"
                mime._part = QP_PART[1] if before else part  # type: ignore[assignment]
                smtp._dot_stuff = old_dot_stuff if before else stuff  # type: ignore[assignment]
                transport = old if before else new
                got = sums[way]
                for i in range(start, min(total, start + slice_size)):
                    ctx = ITEMS[i % len(ITEMS)]
                    c0, w0 = time.process_time(), time.perf_counter()
                    rendered = (
                        bench_render.render_whole(ctx) if before else render.render_digest(ctx)
                    )
                    c1, w1 = time.process_time(), time.perf_counter()
                    built = build_message(
                        settings,
                        rendered,
                        to=f"s{i}@example.org",
                        message_id=make_message_id(i, settings.from_domain),
                        unsubscribe_url=ctx.unsubscribe_url,
                    )
                    c2, w2 = time.process_time(), time.perf_counter()
                    outcome = transport.send(
                        built.envelope_from, built.to, built.data, built.message_id
                    )
                    c3, w3 = time.process_time(), time.perf_counter()
                    assert outcome.ok, outcome.describe()
                    for stage, c, w in (
                        ("render", c1 - c0, w1 - w0),
                        ("MIME", c2 - c1, w2 - w1),
                        ("SMTP", c3 - c2, w3 - w2),
                    ):
                        got[stage][0] += c
                        got[stage][1] += w
    mime._part, smtp._dot_stuff = part, stuff  # type: ignore[assignment]
    return sums


def _child(target: Callable[..., None], args: tuple[object, ...], results: object) -> None:
    cpu, start = time.process_time(), time.monotonic()
    target(*args)
    results.put((start, time.monotonic(), time.process_time() - cpu))  # type: ignore[attr-defined]


def run_mode(
    target: Callable[..., None], extra: tuple[object, ...], port: int, messages: list[bytes],
    total: int, connections: int,
) -> tuple[float, float]:  # fmt: skip
    """(messages per second, sender CPU ms per message) over ``connections`` processes."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    per = total // connections
    procs = [
        ctx.Process(target=_child, args=(target, (port, messages, per, c * per, *extra), results))
        for c in range(connections)
    ]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a sender failed ({target.__name__})")
    wall = max(g[1] for g in got) - min(g[0] for g in got)
    return per * connections / wall, sum(g[2] for g in got) / (per * connections) * 1000


def sink_stat(port: int) -> tuple[int, int, float]:
    """Messages and bytes the sink took so far, and its CPU seconds."""
    with smtplib.SMTP("127.0.0.1", port) as conn:
        _code, reply = conn.docmd("XSTAT")
    messages, size, cpu = reply.split()
    return int(messages), int(size), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="per way of sending")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="each way this many times")
    parser.add_argument("--digests", type=int, default=400, help="distinct digests built")
    parser.add_argument("--stages", type=int, default=2000, help="digests timed stage by stage")
    args = parser.parse_args()

    settings = Settings(
        base_url="https://digest.example.org",
        from_addr="Paper Digest <digest@digest.example.org>",
        postal_address="1 Example Street, Testville",
        inbound=False,
    )
    items = bench_render.contexts(settings, args.digests, 20)
    ITEMS.extend(items)
    SETTINGS.append(settings)
    render.render_digest(items[0])
    bench_render.render_whole(items[0])
    ms_whole = timed(lambda i: bench_render.render_whole(items[i]), len(items))
    ms_reuse = timed(lambda i: render.render_digest(items[i]), len(items))
    rendered = [render.render_digest(c) for c in items]

    def build(i: int) -> bytes:
        return build_message(
            settings,
            rendered[i],
            to=items[i].email,
            message_id=make_message_id(i, settings.from_domain),
            unsubscribe_url=items[i].unsubscribe_url,
        ).data

    part = mime._part

    def qp_part(content_type: str, text: str, encoding: str = "") -> bytes:
        return part(content_type, text)  # quoted-printable, as before

    ms_b64 = timed(build, len(items))
    after = [build(i) for i in range(len(items))]
    mime._part = qp_part  # type: ignore[assignment]
    ms_qp = timed(build, len(items))
    before = [build(i) for i in range(len(items))]
    mime._part = part  # type: ignore[assignment]

    sink = subprocess.Popen(
        [sys.executable, str(BENCH / "smtp_sink.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(sink.stdout.readline())  # type: ignore[union-attr]
        modes: list[tuple[str, Callable[..., None], tuple[object, ...], list[bytes]]] = [
            ("raw smtplib (the limit), base64 msgs", raw_smtplib, (), after),
            ("raw socket, pipelined, base64 msgs", raw_socket, (), after),
            ("ours before: one command at a time, QP", ours, (True,), before),
            ("ours after: pipelined, base64", ours, (False,), after),
            ("ours after: pipelined, QP msgs", ours, (False,), before),
            ("render+MIME+SMTP before", full, ("before",), before),
            ("render+MIME+SMTP after, send()", full, ("send",), after),
            ("render+MIME+SMTP after, send_many()", full, ("many",), after),
        ]
        rates: dict[str, list[tuple[float, float]]] = {m[0]: [] for m in modes}
        sink_ms: dict[str, list[float]] = {m[0]: [] for m in modes}
        for _ in range(args.rounds):
            for name, target, extra, messages in modes:
                took, _size, cpu = sink_stat(port)
                rates[name].append(
                    run_mode(target, extra, port, messages, args.messages, args.connections)
                )
                now_took, _size, now_cpu = sink_stat(port)
                sink_ms[name].append((now_cpu - cpu) / (now_took - took) * 1000)
        staged = stages(port, args.stages)
        received, _size, _cpu = sink_stat(port)
    finally:
        sink.terminate()
        sink.wait()
    expected = args.rounds * len(modes) * (args.messages // args.connections) * args.connections
    expected += 2 * args.stages
    assert received == expected, f"the sink took {received} messages of {expected}"

    kb_before = statistics.mean(map(len, before)) / 1024
    kb_after = statistics.mean(map(len, after)) / 1024
    load = os.getloadavg()[0]
    print(f"{args.messages} messages per way x {args.rounds} rounds, {args.connections} "
          f"connections (one process each), sink in its own process; load {load:.2f}")  # fmt: skip
    print(f"message size: QP {kb_before:.1f} KB, base64 {kb_after:.1f} KB")
    print(f"render per digest: cards per reader {ms_whole:.3f} ms, reused {ms_reuse:.3f} ms")
    print(f"MIME per digest:   quoted-printable {ms_qp:.3f} ms, base64 {ms_b64:.3f} ms")
    print()
    print(f"per digest, one process, one connection each way, {args.stages} digests each:")
    print(
        f"{'stage':8} {'CPU before':>11} {'CPU after':>10} {'wall before':>12} {'wall after':>11}  (ms)"
    )
    for stage in ("render", "MIME", "SMTP"):
        b, a = staged["before"][stage], staged["after"][stage]
        n = args.stages
        print(
            f"{stage:8} {b[0] / n * 1000:11.3f} {a[0] / n * 1000:10.3f} {b[1] / n * 1000:12.3f} {a[1] / n * 1000:11.3f}"
        )
    b_all = [sum(staged["before"][st][k] for st in staged["before"]) for k in (0, 1)]
    a_all = [sum(staged["after"][st][k] for st in staged["after"]) for k in (0, 1)]
    n = args.stages
    print(
        f"{'total':8} {b_all[0] / n * 1000:11.3f} {a_all[0] / n * 1000:10.3f} {b_all[1] / n * 1000:12.3f} {a_all[1] / n * 1000:11.3f}"
    )
    print()
    limit = max(r for r, _ in rates[modes[0][0]])
    print(f"{'way':42} {'msg/s':>8} {'÷ limit':>8} {'sender CPU':>11} {'sink CPU':>9}")
    print(f"{'':42} {'':>8} {'':>8} {'ms/msg':>11} {'ms/msg':>9}")
    for name, got in rates.items():
        best = max(got)
        cpu = min(c for _, c in got)
        print(
            f"{name:42} {best[0]:8.0f} {best[0] / limit:8.2f} {cpu:11.3f} {min(sink_ms[name]):9.3f}"
        )


if __name__ == "__main__":
    main()

"""Benchmark: CPU and wall time per digest for render, MIME and SMTP, in one process.

Runs against whichever source tree ``--tree`` names (default: this checkout), so an
older commit can be measured the same way, alternating with this one on a noisy
machine. The digests are bench/render.py's (20 seed papers each, a pool of 300, three
topics); each is rendered (``render_digest``), built (``build_message``) and sent over
one ``SmtpTransport`` connection into ``bench/smtp_sink.py`` in its own process
(offering PIPELINING; a tree that does not use it ignores it).

    git archive 34e853a | (mkdir -p /tmp/old && tar -x -C /tmp/old)
    ln -s ../templates /tmp/old/digest/templates      # the old tree finds its templates
    .venv/bin/python bench/stages.py --tree /tmp/old; .venv/bin/python bench/stages.py

Results are recorded in bench/README.md ("Send over the wire").
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(BENCH.parent), help="the source tree to measure")
    parser.add_argument("--digests", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=300, help="digests sent before timing")
    args = parser.parse_args()
    sys.path.insert(0, args.tree)

    from digest import render
    from digest.config import Settings
    from digest.deliver.message import build_message, make_message_id
    from digest.deliver.smtp import SmtpTransport

    spec = importlib.util.spec_from_file_location("bench_render", BENCH / "render.py")
    assert spec and spec.loader
    bench_render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_render)

    settings = Settings(
        base_url="https://digest.example.org",
        from_addr="Paper Digest <digest@digest.example.org>",
        postal_address="1 Example Street, Testville",
        inbound=False,
    )
    items = bench_render.contexts(settings, args.digests + args.warm, 20)
    sink = subprocess.Popen(
        [sys.executable, str(BENCH / "smtp_sink.py")], stdout=subprocess.PIPE, text=True
    )
    sums = {"render": [0.0, 0.0], "MIME": [0.0, 0.0], "SMTP": [0.0, 0.0]}
    size = 0
    try:
        port = int(sink.stdout.readline())  # type: ignore[union-attr]
        with SmtpTransport(f"smtp://127.0.0.1:{port}") as transport:
            for i, ctx in enumerate(items):
                c0, w0 = time.process_time(), time.perf_counter()
                rendered = render.render_digest(ctx)
                c1, w1 = time.process_time(), time.perf_counter()
                built = build_message(
                    settings,
                    rendered,
                    to=ctx.email,
                    message_id=make_message_id(i, settings.from_domain),
                    unsubscribe_url=ctx.unsubscribe_url,
                )
                c2, w2 = time.process_time(), time.perf_counter()
                outcome = transport.send(
                    built.envelope_from, built.to, built.data, built.message_id
                )
                c3, w3 = time.process_time(), time.perf_counter()
                assert outcome.ok, outcome.describe()
                if i < args.warm:
                    continue
                size += len(built.data)
                for stage, c, w in (
                    ("render", c1 - c0, w1 - w0),
                    ("MIME", c2 - c1, w2 - w1),
                    ("SMTP", c3 - c2, w3 - w2),
                ):
                    sums[stage][0] += c
                    sums[stage][1] += w
    finally:
        sink.terminate()
        sink.wait()
    n = args.digests
    print(f"tree {args.tree}: {n} digests, message {size / n / 1024:.1f} KB")
    print(f"{'stage':8} {'CPU ms':>8} {'wall ms':>8}")
    for stage, (cpu, wall) in sums.items():
        print(f"{stage:8} {cpu / n * 1000:8.3f} {wall / n * 1000:8.3f}")
    cpu = sum(v[0] for v in sums.values())
    wall = sum(v[1] for v in sums.values())
    print(f"{'total':8} {cpu / n * 1000:8.3f} {wall / n * 1000:8.3f}")


if __name__ == "__main__":
    main()

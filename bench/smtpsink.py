"""A minimal asyncio SMTP sink, run in its own process, that records what it was given.

Why not aiosmtpd: running in a thread of the sending process it takes ~420 msg/s
and becomes the thing measured (NOTES.md). This sink is a bare asyncio Protocol:
it answers EHLO with PIPELINING, 8BITMIME and SIZE, accepts every MAIL/RCPT, and
for each message appends one line to the record file::

    <unix time>\t<recipient>[,<recipient>...]\t<Message-ID>\t<bytes>

Messages whose first recipient is in ``--keep`` (a file of addresses, one a line)
are also written whole to ``--keep-dir`` (the checker parses them back). The record
is flushed every 0.2 s and on SIGTERM/SIGINT, so after the sender is done and the
sink stopped, the file holds every message the sink answered 250 for.

    python bench/smtpsink.py --port 2525 --record /tmp/sink.tsv [--ready /tmp/ready]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

END = b"\r\n.\r\n"


class Sink:
    def __init__(self, record: Path, keep: set[str], keep_dir: Path | None) -> None:
        self.out = record.open("ab", buffering=1 << 20)
        self.keep = keep
        self.keep_dir = keep_dir
        self.count = 0

    def store(self, rcpts: list[bytes], data: bytes) -> None:
        head = data[: data.find(b"\r\n\r\n") + 2]
        # Headers only (a folded Message-ID is not something we send).
        lowered = b"\n" + head.lower()
        at = lowered.find(b"\nmessage-id:")
        message_id = b""
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            message_id = head[at + len(b"message-id:") : line_end].strip()
        to = b",".join(rcpts)
        self.out.write(b"%.6f\t%s\t%s\t%d\n" % (time.time(), to, message_id, len(data)))
        self.count += 1
        if self.keep_dir is not None and rcpts and rcpts[0].decode() in self.keep:
            name = rcpts[0].decode().replace("@", "_at_") + f".{self.count}.eml"
            (self.keep_dir / name).write_bytes(data)

    def flush(self) -> None:
        self.out.flush()


class Session(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.in_data = False
        self.rcpts: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                # The terminator may be the very first line of an empty body.
                if self.buf.startswith(b".\r\n"):
                    body, rest = b"", self.buf[3:]
                else:
                    end = self.buf.find(END)
                    if end < 0:
                        break
                    body, rest = bytes(self.buf[: end + 2]), self.buf[end + 5 :]
                self.buf = bytearray(rest)
                self.in_data = False
                # Undo dot-stuffing only where there is some (rare in our messages).
                if b"\r\n.." in body:
                    body = body.replace(b"\r\n..", b"\r\n.")
                self.sink.store(self.rcpts, body)
                self.rcpts = []
                replies.append(b"250 2.0.0 Ok queued\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(
                    b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
                    b"250 ENHANCEDSTATUSCODES\r\n"
                )
            elif verb == b"HELO":
                replies.append(b"250 sink\r\n")
            elif verb == b"MAIL":
                self.rcpts = []
                replies.append(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                address = line[line.find(b"<") + 1 : line.rfind(b">")]
                self.rcpts.append(address)
                replies.append(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                self.in_data = True
                replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"RSET":
                self.rcpts = []
                replies.append(b"250 2.0.0 Ok\r\n")
            elif verb == b"NOOP":
                replies.append(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 Bye\r\n")
                assert self.transport is not None
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            else:
                replies.append(b"502 5.5.2 Command not recognised\r\n")
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))


async def serve(args: argparse.Namespace) -> None:
    keep: set[str] = set()
    if args.keep:
        keep = {line.strip() for line in Path(args.keep).read_text().splitlines() if line.strip()}
    keep_dir = Path(args.keep_dir) if args.keep_dir else None
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
    sink = Sink(Path(args.record), keep, keep_dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(sink), "127.0.0.1", args.port, backlog=256)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.ready:
        Path(args.ready).write_text(str(os.getpid()))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.2)
            sink.flush()

    task = asyncio.create_task(flusher())
    await stop.wait()
    task.cancel()
    server.close()
    sink.flush()
    sink.out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True, help="file the sink appends its lines to")
    parser.add_argument("--ready", help="file written (with our pid) once we listen")
    parser.add_argument("--keep", help="file of recipients whose messages are kept whole")
    parser.add_argument("--keep-dir", help="where kept messages go")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

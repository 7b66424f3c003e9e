"""A minimal asyncio SMTP sink, meant to run in its own process: it takes mail as fast
as one Python process can and keeps only counts.

It offers PIPELINING (``--no-pipelining`` to withhold it), answers 250 to everything,
and reads each message with one ``readuntil`` of the final dot. ``XSTAT`` answers
``250 <messages> <bytes> <cpu seconds>``: what it took so far
and the CPU time it has used. No aiosmtpd: a sink in the sending
process, or a slow one, hides how fast the sender is (see /work/shared/NOTES.md).

    .venv/bin/python bench/smtp_sink.py --port 2525    # prints the port, then serves
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

GREETING = b"220 sink ESMTP\r\n"
END = b"\r\n.\r\n"


class Sink:
    def __init__(self, pipelining: bool) -> None:
        features = [b"250-sink", b"250-8BITMIME", b"250-SIZE 104857600"]
        if pipelining:
            features.insert(1, b"250-PIPELINING")
        self.ehlo = b"\r\n".join([*features, b"250 HELP"]) + b"\r\n"
        self.messages = 0
        self.bytes = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out = [GREETING]
        try:
            while True:
                if out and not reader._buffer:  # type: ignore[attr-defined]
                    # Answers to pipelined commands go out in one write, once the
                    # client has nothing more waiting for us (as Postfix does).
                    writer.write(b"".join(out))
                    out.clear()
                    await writer.drain()
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"".join([*out, b"354 go ahead\r\n"]))
                    out.clear()
                    body = await reader.readuntil(END)
                    self.messages += 1
                    self.bytes += len(body)
                    out.append(b"250 2.0.0 queued\r\n")
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP", b"HELO"):
                    out.append(b"250 OK\r\n")
                elif verb == b"EHLO":
                    out.append(self.ehlo)
                elif verb == b"XSTA":
                    cpu = time.process_time()
                    out.append(f"250 {self.messages} {self.bytes} {cpu:.6f}\r\n".encode())
                elif verb == b"QUIT":
                    writer.write(b"".join([*out, b"221 bye\r\n"]))
                    out.clear()
                    break
                else:
                    out.append(b"500 unknown command\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def main(port: int, pipelining: bool) -> None:
    sink = Sink(pipelining)
    server = await asyncio.start_server(sink.serve, "127.0.0.1", port, limit=64 * 1024 * 1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-pipelining", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.port, not args.no_pipelining))
    except KeyboardInterrupt:
        sys.exit(0)

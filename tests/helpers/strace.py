"""Reading an ``strace -f -y -xx`` trace of a service: what it wrote to the store's
commit log, when it synced it, and which events it sent on its WebSocket streams.

Trace the service with ``STRACE_ARGS``. Every syscall becomes a :class:`Call` with the
trace lines where it started and ended (a call interrupted by another thread's is
printed ``<unfinished ...>`` at its start and ``<... resumed>`` at its end; a call
printed whole started after every line before it and ended before every line after
it). strace stops a thread at each of these points, so file order is causal order.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2

STRACE_ARGS = [
    "strace",
    "-f",  # every thread: the engine writes and syncs from its own
    "-qq",
    "-y",  # file descriptors with their paths
    "-xx",  # buffers as hex: exact bytes
    "-s",
    str(1 << 20),
    "-e",
    "trace=write,pwrite64,writev,fsync,fdatasync,sendto,sendmsg",
]

_SENDS = frozenset({"sendto", "sendmsg", "write", "writev"})
_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_FD = re.compile(r"^(\d+)<((?:\\x[0-9a-f]{2})*)>")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


@dataclass
class Call:
    pid: int
    name: str
    fd: int = -1
    path: str = ""
    data: bytes = b""
    start: int = 0  # trace line where the call started
    end: int = 0  # trace line where it returned


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def calls(trace: Path) -> list[Call]:
    """Every traced call, in the order they started."""
    done: list[Call] = []
    open_calls: dict[int, Call] = {}
    for number, line in enumerate(trace.read_text().splitlines()):
        m = _LINE.match(line)
        if m is None:
            continue
        pid, resumed, name, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if resumed:
            call = open_calls.pop(pid, None)
            if call is not None:
                call.end = number
            continue
        call = Call(pid, name, start=number, end=number)
        fd = _FD.match(rest)
        if fd:
            call.fd = int(fd.group(1))
            call.path = _unhex(fd.group(2)).decode(errors="replace")
        call.data = b"".join(_unhex(s) for s in _STRING.findall(rest))
        if rest.endswith("<unfinished ...>"):
            open_calls[pid] = call
        done.append(call)
    return done


def _blob_at(data: bytes) -> Any:
    """The value of a blob starting at ``data[0]``: deflated CBOR (``shared.store.codec.pack``),
    followed by whatever the engine wrote after it."""
    if data[:1] == b"\x78":
        data = zlib.decompressobj().decompress(data)
    return cbor2.CBORDecoder(io.BytesIO(data)).decode()


def journal_entries(data: bytes) -> Iterator[dict[str, Any]]:
    """The journal entries in a commit-log write: each journal row holds its entries as one
    blob (``entries``), stored as raw bytes after a few bytes of the engine's own."""
    at = data.find(b"entries")
    while at >= 0:
        for skip in range(len(b"entries"), len(b"entries") + 12):
            try:
                value = _blob_at(data[at + skip :])
            except Exception:  # not the blob's first byte yet
                continue
            if isinstance(value, list) and value and all(isinstance(e, dict) and "seq" in e for e in value):
                yield from value
                break
        at = data.find(b"entries", at + 1)


@dataclass
class Sent:
    """An event as it went out on a WebSocket stream."""

    event: dict[str, Any]
    start: int  # trace line where the send carrying its first byte started


@dataclass
class _Stream:
    buffer: bytearray = field(default_factory=bytearray)
    consumed: int = 0  # bytes of the stream parsed before the buffer
    starts: list[tuple[int, int]] = field(default_factory=list)  # (stream offset, send start)
    upgraded: bool = False


def websocket_events(trace_calls: list[Call]) -> list[Sent]:
    """Events the service sent on its WebSocket streams (server frames are not masked)."""
    streams: dict[int, _Stream] = {}
    sent: list[Sent] = []
    for call in trace_calls:
        if not call.path.startswith(("socket:", "TCP")) or call.name not in _SENDS:
            continue
        if call.data.startswith(b"HTTP/1.1 101"):
            stream = streams[call.fd] = _Stream(upgraded=True)
            call_data = call.data[call.data.index(b"\r\n\r\n") + 4 :]
        else:
            stream = streams.get(call.fd, _Stream())
            call_data = call.data
        if not stream.upgraded:
            continue
        stream.starts.append((stream.consumed + len(stream.buffer), call.start))
        stream.buffer += call_data
        sent.extend(_frames(stream))
    return sent


def _frames(stream: _Stream) -> Iterator[Sent]:
    buf = stream.buffer
    while len(buf) >= 2:
        length, head = buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return
            length, head = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return
            length, head = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < head + length:
            return
        opcode, payload = buf[0] & 0x0F, bytes(buf[head : head + length])
        start = max(s for offset, s in stream.starts if offset <= stream.consumed)
        del buf[: head + length]
        stream.consumed += head + length
        if opcode == 1:
            message = json.loads(payload)
            if "event_type" in message:
                yield Sent(message, start)

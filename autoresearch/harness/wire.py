"""Messages between the harness's trusted side and the agent's code, over a socket (no pickle, ever).

A message is a JSON header (at most ``MAX_HEADER`` bytes) and an optional binary payload::

    [4 bytes: header length][8 bytes: payload length][header JSON][payload]

The trusted side (the data server, the scorer) reads what the agent's process sends as plain JSON and raw
bytes of the size it expects, so nothing that process writes can run code in the trusted one. The
socket is one end of a ``socketpair``: the child inherits its end as a file descriptor, named in its
environment; there is no path to connect to.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

MAX_HEADER = 64 * 1024
_PREFIX = struct.Struct("<IQ")


class WireError(ConnectionError):
    """The other side went away, or sent something that is not a message."""


class Channel:
    def __init__(self, sock: socket.socket, max_payload: int = 1 << 40) -> None:
        self.sock = sock
        self.max_payload = max_payload

    @classmethod
    def from_fd(cls, fd: int) -> "Channel":
        return cls(socket.socket(fileno=fd))

    def send(self, header: dict[str, Any], payload: bytes | bytearray | memoryview = b"") -> None:
        body = json.dumps(header, separators=(",", ":")).encode()
        if len(body) > MAX_HEADER:
            raise WireError(f"a message header of {len(body)} bytes is larger than {MAX_HEADER}")
        view = memoryview(payload).cast("B") if len(payload) else memoryview(b"")
        try:
            self.sock.sendall(_PREFIX.pack(len(body), view.nbytes) + body)
            if view.nbytes:
                self.sock.sendall(view)
        except OSError as e:
            raise WireError(f"the other side is gone ({e})") from None

    def recv(self, expect_payload: int | None = None) -> tuple[dict[str, Any], bytearray]:
        """One message. ``expect_payload``: refuse a payload of any other size (the trusted side knows)."""
        prefix = self._read(_PREFIX.size)
        hlen, plen = _PREFIX.unpack(prefix)
        if hlen > MAX_HEADER:
            raise WireError(f"a message header of {hlen} bytes (at most {MAX_HEADER})")
        if plen > self.max_payload or (expect_payload is not None and plen not in (0, expect_payload)):
            raise WireError(f"a payload of {plen} bytes where {expect_payload if expect_payload is not None else '<= ' + str(self.max_payload)} were expected")
        try:
            header = json.loads(self._read(hlen))
        except ValueError as e:
            raise WireError(f"a message header that is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise WireError("a message header that is not a JSON object")
        return header, self._read(plen) if plen else bytearray()

    def _read(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except OSError as e:
                raise WireError(f"the other side is gone ({e})") from None
            if k == 0:
                raise WireError("the other side closed the connection")
            got += k
        return buf

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def pair() -> tuple[Channel, socket.socket]:
    """(the trusted end, the child's end): pass the child's ``fileno()`` in ``pass_fds`` and close it after."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    os.set_inheritable(theirs.fileno(), True)
    return Channel(ours), theirs

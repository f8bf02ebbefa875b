"""A loopback TCP proxy for fault tests: put it in front of a server (moto's S3), then cut it off on demand.

    with TcpProxy(target_port) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        proxy.outage(2.0)  # returns at once; for 2 s every connection is cut and new ones are refused

Modes of an outage, as a store or a network fails:
- "refuse": nothing listens on the port (connect() gets ECONNREFUSED), like a server that is down;
- "reset": connections are accepted, then reset at once, like a load balancer with no healthy backend;
- "hang": connections are accepted and never answered, like a dropped route (clients wait for their timeouts).
Connections open when an outage starts are reset in every mode.

`lose_responses(n)` throws away the server's next n answers and resets those connections: the request was
applied (a write landed) but the client never heard back, and retries it.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN: the peer sees 'connection reset', as when a server dies."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _final_answer(data: bytes) -> bool:
    """Whether these bytes from an HTTP server hold a final answer, not only "100 Continue" (S3 PUTs send
    `Expect: 100-continue`, and their body goes only after it: losing that would lose the request too)."""
    while re.match(rb"HTTP/1\.[01] 1\d\d ", data) and b"\r\n\r\n" in data:
        data = data.split(b"\r\n\r\n", 1)[1]
    return bool(data) and not re.match(rb"HTTP/1\.[01] 1\d\d ", data)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; `outage(seconds, mode)` cuts it off for a while.

    One thread moves every byte (a select loop), so a cut never races a transfer in flight.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # connections forwarded
        self.cut = 0  # connections reset or held by outages
        self._until = 0.0
        self._mode = "refuse"
        self._cut_open = threading.Event()  # set by outage(): the loop resets every open connection
        self._peer: dict[socket.socket, socket.socket] = {}  # both directions of every forwarded connection
        self._upstream: set[socket.socket] = set()
        self._lose = 0
        self._held: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def down(self) -> bool:
        return time.monotonic() < self._until

    def __enter__(self) -> "TcpProxy":
        self._listen()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in [*self._peer, *self._held]:
            sock.close()
        if self._listener is not None:
            self._listener.close()

    def outage(self, seconds: float, mode: str = "refuse") -> None:
        """From now on, for `seconds`: cut every open connection and fail new ones as `mode` says. Returns at once."""
        if mode not in ("refuse", "reset", "hang"):
            raise ValueError(f"unknown outage mode {mode!r}")
        self._mode, self._until = mode, time.monotonic() + seconds
        self._cut_open.set()

    def lose_responses(self, count: int = 1) -> None:
        """Throw away the server's next `count` answers, resetting their connections (the requests were served)."""
        self._lose = count

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after a "refuse" outage
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._cut_open.is_set():
                self._cut_open.clear()
                self.cut += len(self._upstream)
                for sock in list(self._peer):
                    _reset(sock)
                self._peer.clear()
                self._upstream.clear()
            down = self.down
            if not down and self._held:
                for sock in self._held:
                    _reset(sock)
                self._held.clear()
            if down and self._mode == "refuse" and self._listener is not None:
                self._listener.close()  # connects are refused by the kernel
                self._listener = None
            elif not down and self._listener is None:
                self._listen()
            watched = list(self._peer) + ([self._listener] if self._listener is not None else [])
            if not watched:
                time.sleep(0.01)
                continue
            ready, _, _ = select.select(watched, [], [], 0.02)
            for sock in ready:
                if sock is self._listener:
                    self._accept()
                elif sock in self._peer:
                    self._move(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if self.down:
            self.cut += 1
            if self._mode == "hang":
                self._held.append(client)
            else:
                _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.settimeout(10)  # sendall to a peer that stopped reading must not stall the loop for ever
        self._peer[client], self._peer[upstream] = upstream, client
        self._upstream.add(upstream)
        self.connections += 1

    def _move(self, source: socket.socket) -> None:
        sink = self._peer[source]
        try:
            data = source.recv(65536)
            if data and source in self._upstream and self._lose > 0 and _final_answer(data):
                self._lose -= 1
                self.cut += 1
                for sock in (source, sink):
                    self._forget(sock)
                    _reset(sock)
                return
            if data:
                sink.sendall(data)
                return
        except OSError:  # reset by the other side
            pass
        for sock in (source, sink):
            self._forget(sock)
            sock.close()

    def _forget(self, sock: socket.socket) -> None:
        self._peer.pop(sock, None)
        self._upstream.discard(sock)

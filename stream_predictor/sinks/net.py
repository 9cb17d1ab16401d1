"""JSON ticks over the network: UDP datagrams to a listener, or a TCP server that streams JSON lines to its clients.

Both use 127.0.0.1 unless a host is given (`sink.host`); nothing listens on other interfaces by default.
Neither ever waits on a client: the tick thread only hands bytes to the kernel without blocking.
- TCP: each client has a bounded buffer of whole lines. A client that reads slower than ticks come skips the
  lines that do not fit (its stream stays whole JSON lines, in order); one that takes nothing for `stall_s`
  is dropped. Both are counted (`tcp_skipped`, `tcp_dropped`) and logged once.
- UDP: a datagram that cannot be sent (no listener: the kernel reports the port unreachable) is counted
  (`udp_errors`) and logged once; the ticks go on.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from ..runtime.tick import Sink, Tick

log = logging.getLogger(__name__)


class UdpSink(Sink):
    """One datagram per tick, the tick's JSON, to (host, port)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = self.errors = 0

    def __call__(self, tick: Tick) -> None:
        try:
            self.sock.sendto(json.dumps(tick.to_json()).encode(), self.address)
            self.sent += 1
        except OSError as e:  # nobody listening (ICMP port unreachable), or a full socket buffer: not worth a tick
            self.errors += 1
            if self.errors == 1:
                log.warning("udp sink %s:%d: %s; ticks that cannot be sent are counted and skipped", *self.address, e)

    def summary(self) -> dict:
        return {"udp_sent": self.sent, "udp_errors": self.errors}

    def close(self) -> None:
        self.sock.close()


@dataclass
class _Client:
    conn: socket.socket
    pending: bytearray = field(default_factory=bytearray)  # whole lines not yet taken by the kernel
    last_progress: float = field(default_factory=time.monotonic)


class TcpSink(Sink):
    """Listens on (host, port) (port 0: any free port, see `.port`); each connected client gets every tick as a JSON line,
    as far as it keeps up (see the module's docstring)."""

    def __init__(self, port: int, host: str = "127.0.0.1", max_buffer: int = 256 * 1024, stall_s: float = 5.0) -> None:
        self.server = socket.create_server((host, port))
        self.port = self.server.getsockname()[1]
        self.max_buffer, self.stall_s = max_buffer, stall_s
        self.clients: list[_Client] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.accepted = self.dropped = self.skipped = 0
        self._warned = False
        self._thread = threading.Thread(target=self._accept, name="tcp-sink", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.max_buffer)  # the kernel's share is bounded too
            with self._lock:
                self.clients.append(_Client(conn))
                self.accepted += 1

    def _warn_once(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("tcp sink on port %d: %s; slow clients skip lines and stalled ones are dropped (counted in "
                        "the summary as tcp_skipped, tcp_dropped)", self.port, what)

    def __call__(self, tick: Tick) -> None:
        line = (json.dumps(tick.to_json()) + "\n").encode()
        now = time.monotonic()
        with self._lock:
            for client in list(self.clients):
                if len(client.pending) + len(line) <= self.max_buffer:
                    client.pending += line
                else:
                    self.skipped += 1
                    self._warn_once("a client reads slower than the ticks come")
                try:
                    sent = client.conn.send(client.pending)
                except BlockingIOError:
                    sent = 0
                except OSError:  # the client went away
                    self._drop(client)
                    continue
                del client.pending[:sent]
                if sent or not client.pending:
                    client.last_progress = now
                elif now - client.last_progress > self.stall_s:
                    self._warn_once(f"a client took nothing for {self.stall_s:g} s")
                    self._drop(client)

    def _drop(self, client: _Client) -> None:
        self.clients.remove(client)
        client.conn.close()
        self.dropped += 1

    def summary(self) -> dict:
        with self._lock:
            return {"tcp_clients": self.accepted, "tcp_dropped": self.dropped, "tcp_skipped": self.skipped}

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(1.0)
        with self._lock:
            for client in self.clients:
                client.conn.close()
            self.clients.clear()

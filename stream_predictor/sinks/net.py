"""JSON ticks over the network: UDP datagrams to a listener, or a TCP server that streams JSON lines to its clients.

Both use 127.0.0.1 unless a host is given (`sink.host`); nothing listens on other interfaces by default.
A slow or vanished TCP client is dropped, never waited for: the inference thread does not block on it.
"""

from __future__ import annotations

import json
import socket
import threading

from ..runtime.tick import Sink, Tick


class UdpSink(Sink):
    """One datagram per tick, the tick's JSON, to (host, port)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def __call__(self, tick: Tick) -> None:
        try:
            self.sock.sendto(json.dumps(tick.to_json()).encode(), self.address)
            self.sent += 1
        except OSError:  # nobody listening (ICMP port unreachable) is not an error for a fire-and-forget sink
            pass

    def close(self) -> None:
        self.sock.close()


class TcpSink(Sink):
    """Listens on (host, port) (port 0: any free port, see `.port`); each connected client gets every tick as a JSON line."""

    def __init__(self, port: int, host: str = "127.0.0.1", send_timeout_s: float = 0.05) -> None:
        self.server = socket.create_server((host, port))
        self.port = self.server.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.timeout = send_timeout_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dropped = 0
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
            conn.settimeout(self.timeout)
            with self._lock:
                self.clients.append(conn)

    def __call__(self, tick: Tick) -> None:
        line = (json.dumps(tick.to_json()) + "\n").encode()
        with self._lock:
            for conn in list(self.clients):
                try:
                    conn.sendall(line)
                except OSError:  # gone, or too slow to take one line within the timeout
                    self.clients.remove(conn)
                    conn.close()
                    self.dropped += 1

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(1.0)
        with self._lock:
            for conn in self.clients:
                conn.close()
            self.clients.clear()

"""Slow consumers never stall ticks: real sockets, real client threads, the TCP and UDP sinks fed from a tick thread."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

from stream_predictor.runtime.tick import Tick
from stream_predictor.sinks.net import TcpSink, UdpSink


def tick(seq: int) -> Tick:
    now = time.monotonic()
    return Tick(seq, now, now, 0.5, seq % 3, "abc"[seq % 3], [0.2, 0.3, 0.5], 0)


def feed(sink, n: int, every_s: float = 0.001) -> list[float]:
    """`n` ticks from a thread of their own, as the inference thread would; the time each call took."""
    took = []

    def run() -> None:
        pause = threading.Event()
        for i in range(n):
            t0 = time.perf_counter()
            sink(tick(i))
            took.append(time.perf_counter() - t0)
            pause.wait(every_s)

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the tick thread was held up"
    return took


def reader(port: int, lines: list[str]) -> None:
    """A client that reads every line until the sink closes the connection."""
    with socket.create_connection(("127.0.0.1", port)) as s, s.makefile("r") as f:
        lines.extend(f)


def test_fifty_tcp_clients_ten_never_reading_do_not_hold_up_the_ticks(caplog):
    caplog.set_level(logging.WARNING, logger="stream_predictor.sinks.net")
    sink = TcpSink(0, max_buffer=16 * 1024, stall_s=1.0)
    received = [[] for _ in range(40)]
    readers = [threading.Thread(target=reader, args=(sink.port, lines), daemon=True) for lines in received]
    stuck = []
    for _ in range(10):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the kernel holds little for it
        s.connect(("127.0.0.1", sink.port))
        stuck.append(s)
    for r in readers:
        r.start()
    deadline = time.monotonic() + 10
    while sink.summary()["tcp_clients"] < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.summary()["tcp_clients"] == 50
    took = feed(sink, 3000)
    summary = sink.summary()
    print(summary, f"{sum(took):.2f} s in the sink")
    sink.close()
    for r in readers:
        r.join(10)
    for s in stuck:
        s.close()
    # The ten that never read were cut off; their lines were skipped on the way, never queued without bound.
    assert summary["tcp_dropped"] == 10 and summary["tcp_skipped"] > 0
    # Every reading client got every tick, whole and in order.
    for lines in received:
        assert [json.loads(line)["seq"] for line in lines] == list(range(3000))
    # Logged once, however many clients and lines.
    assert len([r for r in caplog.records if "tcp sink" in r.getMessage()]) == 1
    assert max(took) < 0.5, f"a tick took {max(took):.3f} s in the sink"  # sends never block (no timeout to wait out)


def test_udp_to_a_closed_port_is_counted_and_the_ticks_go_on():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now, and nobody listens on it
    sink = UdpSink(port)
    feed(sink, 2000, every_s=0)
    summary = sink.summary()
    assert summary["udp_sent"] + summary["udp_errors"] == 2000
    # A listener that comes up later gets the ticks from then on.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.settimeout(5)
        sink(tick(5000))
        assert json.loads(listener.recv(65536))["seq"] == 5000
    sink.close()

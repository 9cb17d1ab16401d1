import threading
import time

import numpy as np
import pytest

from stream_predictor.runtime.ring import FrameRing
from stream_predictor.sources.base import Frame


def frame(seq: int, value: int | None = None, shape=(8, 8, 3)) -> Frame:
    return Frame(seq, time.monotonic(), np.full(shape, seq % 256 if value is None else value, np.uint8))


def test_fast_producer_slow_consumer_sees_each_frame_at_most_once():
    ring, total = FrameRing(4), 5000
    seen, skipped = [], 0

    def produce():
        for i in range(total):
            ring.write(frame(i))
            if i % 50 == 0:
                time.sleep(0.0005)  # let the consumer in now and then
        ring.close()

    t = threading.Thread(target=produce)
    t.start()
    last = -1
    while (f := ring.wait_newer(last, timeout=5)) is not None:
        assert f.seq > last, "a frame was handed over twice or out of order"
        assert f.image[0, 0, 0] == f.seq % 256
        seen.append(f.seq)
        skipped += f.skipped
        last = f.seq
        time.sleep(0.0002)  # a slow consumer
    t.join()
    assert len(set(seen)) == len(seen)
    assert len(seen) + skipped == total
    assert seen[-1] == total - 1  # the end of the stream is always seen
    assert skipped > 0  # the consumer really was slower


def test_frame_handed_out_is_not_overwritten_while_held():
    ring = FrameRing(3)
    ring.write(frame(0, value=7))
    held = ring.wait_newer(-1, timeout=1)
    before = held.image.copy()
    for i in range(1, 50):  # wraps the ring many times
        ring.write(frame(i, value=200))
    np.testing.assert_array_equal(held.image, before)
    nxt = ring.wait_newer(held.seq, timeout=1)
    assert nxt.seq == 49 and nxt.skipped == 48


def test_lossless_ring_delivers_every_frame_in_order():
    ring, total = FrameRing(4, lossless=True), 2000

    def produce():
        for i in range(total):
            assert ring.wait_space(timeout=5)
            ring.write(frame(i))
        ring.close()

    t = threading.Thread(target=produce)
    t.start()
    got, last = [], -1
    while (f := ring.wait_newer(last, timeout=5)) is not None:
        assert f.skipped == 0 and f.image[0, 0, 0] == f.seq % 256
        got.append(f.seq)
        last = f.seq
    t.join()
    assert got == list(range(total))


def test_end_of_stream_wakes_a_blocked_consumer():
    ring = FrameRing(4)
    result = {}

    def consume():
        t0 = time.monotonic()
        result["frame"] = ring.wait_newer(-1, timeout=30)
        result["waited"] = time.monotonic() - t0

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.1)
    ring.close()
    t.join(2)
    assert not t.is_alive()
    assert result["frame"] is None and result["waited"] < 2


def test_skipped_episode_start_still_marks_first():
    ring = FrameRing(4)
    ring.write(frame(0))
    f = ring.wait_newer(-1, 1)
    ring.write(Frame(1, 0.0, np.zeros((8, 8, 3), np.uint8), first=True))
    ring.write(frame(2))
    f = ring.wait_newer(f.seq, 1)
    assert f.seq == 2 and f.skipped == 1 and f.first


def test_ring_needs_two_slots():
    with pytest.raises(ValueError):
        FrameRing(1)


def test_a_games_rewards_are_handed_over_with_the_frames_skipped_ones_included():
    """Each frame handed over carries the reward since the previous hand-over: in a lossy ring the rewards of the
    frames it skipped are added in, so a reader never loses a point."""
    ring = FrameRing(3)
    rewards = [0.0, 1.0, 0.0, -1.0, 2.0, 0.0, 1.0]
    got, last = [], -1
    for i, r in enumerate(rewards):
        ring.write(Frame(i, time.monotonic(), np.zeros((4, 4, 3), np.uint8), i == 0, r))
        if i in (1, 4, 6):  # the reader comes late: 0, 2, 3 and 5 are skipped
            f = ring.wait_newer(last, timeout=1)
            got.append((f.seq, f.skipped, f.reward))
            last = f.seq
    assert got == [(1, 1, 1.0), (4, 2, 1.0), (6, 1, 1.0)]
    assert sum(r for *_, r in got) == sum(rewards)

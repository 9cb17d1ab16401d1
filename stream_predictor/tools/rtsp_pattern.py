"""A real RTSP server for tests and soak runs: H.264 of a moving pattern with the wall-clock time stamped into each frame.

Run it with the system Python, which has GStreamer's bindings (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-rtsp, gstreamer1.0-plugins-{base,good,ugly}):

    /usr/bin/python3 stream_predictor/tools/rtsp_pattern.py --port 8554 --size 320x240 --fps 30
    python run.py soak --source rtsp://127.0.0.1:8554/pattern --stamped --tick-ms 50 --seconds 600

The top 48 rows of each frame carry the time the frame was made (`time.time()`, in milliseconds, modulo 2^40) as 40
black or white 16×16 blocks, aligned to H.264's macroblocks so that they survive compression, and the inverted bits
below them as a check. `read_stamp(image)` reads it back, so a client can tell the age of each frame it decides on.
A bar moves across the rest. This file needs nothing but the standard library (and GStreamer to serve): the system
Python has no numpy, and the package imports `read_stamp` from here.
"""

from __future__ import annotations

import argparse
import threading
import time

BLOCK = 16  # pixels per bit, a macroblock
BITS = 40  # milliseconds modulo 2**40: 34 years
ROWS = 2  # the bits fill 2 rows of 20 blocks; 2 more rows hold them inverted
MIN_WIDTH = BITS // ROWS * BLOCK  # 320


def stamp_bits(ms: int) -> list[int]:
    return [(ms >> i) & 1 for i in range(BITS)]


def pattern_frame(ms: int, n: int, width: int, height: int) -> bytes:
    """A GRAY8 frame: the stamp (and its inverse) on top, a bar moving by 4 pixels a frame below."""
    per_row = BITS // ROWS
    bits = stamp_bits(ms)
    rows = []
    for inverted in (0, 1):
        for r in range(ROWS):
            line = b"".join((b"\xff" if bit ^ inverted else b"\x00") * BLOCK for bit in bits[r * per_row:(r + 1) * per_row])
            line += b"\x80" * (width - len(line))
            rows.append(line * BLOCK)
    x = (4 * n) % width
    bar = bytearray(b"\x40" * width)
    bar[x:x + 24] = b"\xe0" * len(bar[x:x + 24])
    rows.append(bytes(bar) * (height - 2 * ROWS * BLOCK))
    return b"".join(rows)


def read_stamp(image) -> float | None:
    """The wall-clock time (seconds) stamped into a frame (BGR or gray ndarray), or None where the stamp does not read
    cleanly (not a stamped stream, or a block that compression smeared)."""
    per_row, half = BITS // ROWS, BLOCK // 2
    if image.shape[0] < 2 * ROWS * BLOCK or image.shape[1] < MIN_WIDTH:
        return None
    gray = image if image.ndim == 2 else image[..., 1]
    ms = 0
    for i in range(BITS):
        r, c = divmod(i, per_row)
        y, x = r * BLOCK + half, c * BLOCK + half
        value = int(gray[y - 4:y + 4, x - 4:x + 4].mean())
        check = int(gray[y + ROWS * BLOCK - 4:y + ROWS * BLOCK + 4, x - 4:x + 4].mean())
        if not (value > 192 and check < 64 or value < 64 and check > 192):
            return None
        ms |= (value > 128) << i
    now_ms = int(time.time() * 1000)
    ms += (now_ms >> BITS) << BITS  # the high bits from now (a stamp from just before a wrap is off by 2**40 ms)
    return ms / 1000


def serve(port: int, width: int, height: int, fps: float, path: str) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    sources: list = []  # the appsrc of each configured media (one, the factory is shared)
    lock = threading.Lock()

    def configure(_factory, media) -> None:
        src = media.get_element().get_by_name("src")
        with lock:
            sources.append(src)

    def push() -> None:
        n, next_t = 0, time.monotonic()
        while True:
            next_t += 1 / fps
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the server's frame clock; nothing here waits on another thread
            data = pattern_frame(int(time.time() * 1000), n, width, height)
            with lock:
                for src in list(sources):
                    if src.emit("push-buffer", Gst.Buffer.new_wrapped(data)) != Gst.FlowReturn.OK:
                        sources.remove(src)  # its clients left; a new client configures a new media
            n += 1

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true do-timestamp=true format=time "
        f"caps=video/x-raw,format=GRAY8,width={width},height={height},framerate={int(fps)}/1 "
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max={int(fps)} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"error: cannot listen on 127.0.0.1:{port}")
    threading.Thread(target=push, daemon=True).start()
    print(f"rtsp://127.0.0.1:{port}{path} {width}x{height} {fps:g} fps", flush=True)
    GLib.MainLoop().run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--size", default="320x240", help="WxH, width at least 320")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--path", default="/pattern")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if width < MIN_WIDTH or height < 2 * ROWS * BLOCK + 16 or width % 2 or height % 2:
        raise SystemExit(f"error: --size must be even, at least {MIN_WIDTH}x{2 * ROWS * BLOCK + 16}, got {args.size}")
    serve(args.port, width, height, args.fps, args.path)


if __name__ == "__main__":
    main()

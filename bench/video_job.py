"""A clip through the job path (``POST /videos``) end to end on a running stack (issue 29).

Makes a synthetic clip (a gradient with a moving square, H.264; ``--seconds`` at
``--fps``, ``--width``×``--height``), posts it to ``--url`` (a stack started with
``stylize up``), follows ``GET /videos/{id}`` until it ends or ``--max-s`` passes, and
prints frames/s (frames done over the time since the job started running) and the work
horse's peak RSS (``VmHWM`` of the pid in the job's state, read while it runs: run
this on the worker's host). Writes JSON under ``bench/results/``.

    stylize up &                                   # the API, Redis and the worker
    .venv/bin/python bench/video_job.py --url http://127.0.0.1:8000 --seconds 10
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.flicker import machine


def make_clip(seconds: float, fps: int, width: int, height: int) -> bytes:
    """A synthetic H.264 MP4: a diagonal gradient and a square moving across it."""
    buffer = io.BytesIO()
    y = np.linspace(0, 200, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    base = np.stack([y + 0 * x, x + 0 * y, (x + y) / 2], axis=-1)
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = base.copy()
            left = (8 * index) % max(1, width - 64)
            frame[height // 3 : height // 3 + 64, left : left + 64] = (250, 230, 40)
            image = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            out.mux(video.encode(image))
        out.mux(video.encode(None))
    return buffer.getvalue()


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``), MB; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--style", default="scream")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--max-s", type=float, default=3600.0, help="stop following after")
    args = parser.parse_args()
    clip = make_clip(args.seconds, args.fps, args.width, args.height)
    posted = time.monotonic()
    response = httpx.post(
        f"{args.url}/videos",
        files={"clip": ("bench.mp4", clip, "video/mp4")},
        data={"style": args.style, "max_side": str(args.max_side)},
        headers={"Host": "localhost"},
        timeout=120,
    )
    response.raise_for_status()
    clip_id = response.json()["id"]
    running_at: float | None = None
    peak: float | None = None
    doc: dict[str, Any] = {}
    while time.monotonic() - posted < args.max_s:
        doc = httpx.get(f"{args.url}/videos/{clip_id}", headers={"Host": "localhost"}).json()
        if doc["state"] == "running" and running_at is None:
            running_at = time.monotonic()
        pid = _horse_pid(doc)
        if pid is not None:
            rss = peak_rss_mb(pid)
            peak = max(peak or 0.0, rss or 0.0) or peak
        if doc["state"] in ("done", "failed", "canceled"):
            break
        time.sleep(2)
    elapsed = time.monotonic() - (running_at or posted)
    done = doc.get("progress", {}).get("done") or 0
    result = {
        "machine": machine(),
        "clip": f"{args.seconds:g} s {args.width}x{args.height} at {args.fps} fps, H.264",
        "state": doc.get("state"),
        "frames_done": done,
        "frames_total": doc.get("progress", {}).get("total"),
        "seconds_running": round(elapsed, 1),
        "frames_per_s": round(done / elapsed, 4) if elapsed > 0 else None,
        "horse_peak_rss_mb": None if peak is None else round(peak),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"video_job-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    if doc.get("state") not in ("done", "failed", "canceled"):
        httpx.delete(f"{args.url}/videos/{clip_id}", headers={"Host": "localhost"})
    return 0


def _horse_pid(doc: dict[str, Any]) -> int | None:
    """The work horse's pid (the job's ``worker`` field, ``host:pid``), when on this host."""
    worker = doc.get("worker") or ""
    pid = worker.rpartition(":")[2]
    return int(pid) if pid.isdigit() else None


if __name__ == "__main__":
    sys.exit(main())

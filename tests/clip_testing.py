"""Synthetic clips for the video tests, made with PyAV: moving content, a few frames.

Nothing here is real footage: a gradient background with a bright square sliding
across it (and, for MP4/WebM, a sine tone), so that consecutive frames differ.
"""

from __future__ import annotations

import io

import av
import numpy as np

#: Container → (video codec, pixel format, audio codec or None).
CODECS = {
    "mp4": ("libx264", "yuv420p", "aac"),
    "webm": ("libvpx-vp9", "yuv420p", "libopus"),
    "matroska": ("mjpeg", "yuvj420p", None),
    "gif": ("gif", "rgb8", None),
    "webp": ("libwebp_anim", "yuv420p", None),
}


def moving_frame(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index``: a diagonal gradient and a square moving 4 px a frame."""
    y = np.linspace(0, 200, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    frame = np.stack([y + 0 * x, x + 0 * y, (x + y) / 2], axis=-1)
    left = (4 * index) % max(1, width - 16)
    frame[height // 4 : height // 4 + 16, left : left + 16] = (250, 230, 40)
    return frame.clip(0, 255).astype(np.uint8)


def make_clip(
    container: str = "mp4",
    *,
    frames: int = 6,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    audio: bool = False,
) -> bytes:
    """Encode a synthetic clip in memory; ``audio`` adds a 440 Hz tone as long as the video."""
    codec, pix_fmt, audio_codec = CODECS[container]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        sound = None
        if audio:
            assert audio_codec is not None, f"{container}: no audio here"
            sound = out.add_stream(audio_codec, rate=48000)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(moving_frame(index, width, height), format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(48000 * frames // fps, dtype=np.float32) / 48000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).reshape(1, -1)
            chunk = 960
            for start in range(0, samples.shape[1], chunk):
                part = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, start : start + chunk]),
                    format="fltp",
                    layout="mono",
                )
                part.sample_rate, part.pts = 48000, start
                out.mux(sound.encode(part))
            out.mux(sound.encode(None))
    return buffer.getvalue()


def clip_summary(data: bytes) -> dict[str, object]:
    """Container, video codec, frame count and size, audio codec and packet count."""
    with av.open(io.BytesIO(data)) as clip:
        video = clip.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in clip.decode(video)]
    with av.open(io.BytesIO(data)) as clip:
        audio = clip.streams.audio[0] if clip.streams.audio else None
        audio_packets = sum(1 for p in clip.demux(audio) if p.size) if audio is not None else 0
        audio_codec = audio.codec_context.name if audio is not None else None
    return {
        "format": clip.format.name,
        "frames": len(decoded),
        "size": (decoded[0].shape[1], decoded[0].shape[0]) if decoded else None,
        "audio": audio_codec,
        "audio_packets": audio_packets,
        "pixels": decoded,
    }


def huge_gif_header(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen and frame claim ``width``×``height`` (a bomb's header)."""
    screen = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return (
        b"GIF89a" + screen + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"  # 2-colour table
        + b"\x2c\x00\x00\x00\x00" + screen + b"\x00"  # image descriptor: the whole screen
        + b"\x02\x02\x44\x01\x00" + b"\x3b"  # a few LZW bytes, trailer
    )  # fmt: skip

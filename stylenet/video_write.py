"""Writing stylized clips: the output formats and the container writer (audio copied).

:class:`ClipWriter` encodes frames as they come (PyAV) and copies the input's audio
packets when the container takes their codec. GIF frames are mapped onto a palette made
from the clip's first frames (:mod:`stylenet.gif_palette`), not FFmpeg's fixed ``rgb8``
cube: those first frames wait until the palette is made, the rest are encoded at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np

from .gif_palette import PALETTE_FRAMES, ClipPalette
from .video_read import ClipReader, VideoInfo


@dataclass(frozen=True)
class OutputFormat:
    """How a clip is written: container, video codec and what they need."""

    name: str
    container: str
    codec: str
    pix_fmt: str
    media_type: str
    suffix: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def even(self) -> bool:
        """Whether the pixel format subsamples chroma 2×2 (width and height must be even)."""
        return self.pix_fmt.startswith("yuv420")


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            "mp4", "mp4", "libx264", "yuv420p", "video/mp4", ".mp4",
            (("crf", "20"), ("preset", "veryfast")),
        ),
        OutputFormat(
            "webm", "webm", "libvpx-vp9", "yuv420p", "video/webm", ".webm",
            (("crf", "32"), ("b", "0"), ("deadline", "realtime"), ("cpu-used", "8")),
        ),
        OutputFormat("gif", "gif", "gif", "pal8", "image/gif", ".gif"),
        OutputFormat(
            "webp", "webp", "libwebp_anim", "yuv420p", "image/webp", ".webp",
            (("quality", "85"), ("loop", "0")),
        ),
    )
}  # fmt: skip


#: The time base of the frames written (and of the encoder): milliseconds.
FRAME_TIME_BASE = Fraction(1, 1000)


class ClipWriter:
    """The output container: video encoded from frames, audio packets copied."""

    def __init__(
        self, target: BinaryIO | str, fmt: OutputFormat, size: tuple[int, int], reader: ClipReader
    ) -> None:
        """Open ``target`` for ``fmt`` at ``size``; take the audio stream of ``reader``'s clip."""
        import av

        # faststart (the index first, so a browser plays it while it downloads) rewrites
        # the file by its name: only for a path, not a file object.
        faststart = fmt.container == "mp4" and isinstance(target, str)
        options = {"movflags": "+faststart"} if faststart else {}
        self.out = av.open(target, "w", format=fmt.container, options=options)
        self.video = self.out.add_stream(
            fmt.codec, rate=_rate(reader.info), options=dict(fmt.options)
        )
        self.video.width, self.video.height = size
        self.video.pix_fmt = fmt.pix_fmt
        # Milliseconds: every input's frame times survive (GIF's are centiseconds). The
        # encoder counts in them too, so a frame time is never rounded onto its
        # neighbour's. The stream's own time base is the muxer's to change when it writes
        # the header (MP4 takes 1/16000): frames never borrow it.
        self.video.time_base = FRAME_TIME_BASE
        self.video.codec_context.time_base = FRAME_TIME_BASE
        self.audio: Any = None
        self.audio_state = "none"
        source = reader._av
        if source is not None and source.streams.audio:
            template = source.streams.audio[0]
            if template.codec_context.name in self.out.supported_codecs:
                self.audio = self.out.add_stream_from_template(template)
                self.audio_state = "copied"
            else:
                self.audio_state = "dropped"
        self._last_pts = -1
        self._paletted = fmt.pix_fmt == "pal8"
        self._palette: ClipPalette | None = None
        self._waiting: list[tuple[np.ndarray, int]] = []

    def write_audio(self, packet: Any) -> None:
        """Copy one audio packet of the input (if the output takes its codec)."""
        if self.audio is not None:
            packet.stream = self.audio
            self.out.mux(packet)

    def write(self, frame: np.ndarray, time: Fraction) -> None:
        """Encode one H×W×3 uint8 frame shown from ``time`` (seconds)."""
        # Strictly increasing, as encoders demand, whatever the input's rounding.
        self._last_pts = max(int(time * 1000), self._last_pts + 1)
        if self._paletted and self._palette is None:
            self._waiting.append((frame, self._last_pts))
            if len(self._waiting) == PALETTE_FRAMES:
                self._make_palette()
            return
        self._encode(frame, self._last_pts)

    def _make_palette(self) -> None:
        self._palette = ClipPalette([frame for frame, _ in self._waiting])
        waiting, self._waiting = self._waiting, []
        for frame, pts in waiting:
            self._encode(frame, pts)

    def _encode(self, frame: np.ndarray, pts: int) -> None:
        import av

        if self._palette is not None:
            indexed = (self._palette.indices(frame), self._palette.argb)
            video = av.VideoFrame.from_ndarray(indexed, format="pal8")
        else:
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video.pts, video.time_base = pts, FRAME_TIME_BASE
        self.out.mux(self.video.encode(video))

    def close(self, flush: bool) -> None:
        """Finish the file (``flush``: encode what waits; else the clip failed) and close it."""
        try:
            if flush:
                if self._waiting:
                    self._make_palette()
                self.out.mux(self.video.encode(None))
        finally:
            self.out.close()


def _rate(info: VideoInfo) -> Fraction:
    fps = info.fps if info.fps and 0 < info.fps <= 240 else 25.0
    return Fraction(fps).limit_denominator(1001)


__all__ = ["OUTPUT_FORMATS", "ClipWriter", "OutputFormat"]

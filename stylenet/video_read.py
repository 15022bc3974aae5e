"""Reading untrusted clips: format sniffing, limits, and one streaming pass over frames.

:class:`ClipReader` opens a clip (PyAV, whose wheels carry FFmpeg; animated WebP by
Pillow, as FFmpeg's WebP decoder reads still images only), checks its header against
:class:`VideoLimits`, runs only the decoders of :data:`DECODERS`, and yields frames one
at a time, scaled, counting them against the limits again (headers can lie).
:mod:`stylenet.video` writes the stylized clip.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from .errors import ImageError, StylenetError
from .flow import MotionVectors

Source = bytes | Path | str

#: The only video decoders ever run on a request's bytes: the formats the issue names
#: and their close kin. Anything else is refused (415) before a frame is decoded.
DECODERS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "gif"})
_HEIF_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1")


class VideoError(ImageError):
    """A clip that cannot be decoded: corrupt, truncated, no video stream."""


class UnsupportedVideo(VideoError):
    """A clip in a container or codec this code does not decode."""


class VideoTooLarge(StylenetError):
    """A clip over one of :class:`VideoLimits` (``field``: which one)."""

    def __init__(self, field: str, limit: float, actual: float, message: str) -> None:
        super().__init__(message)
        self.field, self.limit, self.actual = field, limit, actual


@dataclass(frozen=True)
class VideoLimits:
    """What one clip may cost; every limit is checked on the header and while decoding.

    Attributes:
        max_seconds: duration of the clip.
        max_frames: frames decoded.
        max_frame_pixels: width × height of a frame as stored (before scaling).
        max_total_pixels: pixels stylized over the whole clip (after scaling): the work.
    """

    max_seconds: float = 600.0
    max_frames: int = 36_000
    max_frame_pixels: int = 4096 * 4096
    max_total_pixels: int = 36_000 * 1920 * 1080


@dataclass(frozen=True)
class VideoInfo:
    """What a clip's header says (``frames``/``seconds`` None when it does not say)."""

    kind: str
    codec: str
    width: int
    height: int
    frames: int | None
    seconds: float | None
    fps: float | None
    audio: str | None


def sniff_video(data: bytes) -> str | None:
    """Return ``mp4``, ``webm``, ``gif`` or ``webp`` (animated only) from magic bytes."""
    if data[4:8] == b"ftyp" and data[8:12] not in _HEIF_BRANDS:
        return "mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"  # EBML: WebM or Matroska
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    # Animated WebP: RIFF/WEBP whose VP8X header has the animation flag.
    if data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20 and data[20] & 0x02:
        return "webp"
    return None


def _too_large(field: str, limit: float, actual: float, what: str) -> VideoTooLarge:
    return VideoTooLarge(field, limit, actual, f"{what}: {actual:g}, over the limit of {limit:g}")


def _check_header(info: VideoInfo, limits: VideoLimits) -> None:
    pixels = info.width * info.height
    if pixels > limits.max_frame_pixels:
        raise _too_large(
            "frame_pixels", limits.max_frame_pixels, pixels, f"{info.width}×{info.height} frames"
        )
    if info.seconds is not None and info.seconds > limits.max_seconds:
        raise _too_large("seconds", limits.max_seconds, info.seconds, "duration (s)")
    if info.frames is not None and info.frames > limits.max_frames:
        raise _too_large("frames", limits.max_frames, info.frames, "frames")


class _Counter:
    """Counts decoded frames and pixels against the limits (headers can lie)."""

    def __init__(self, limits: VideoLimits, size: tuple[int, int]) -> None:
        self.limits, self.size, self.frames = limits, size, 0

    def count(self, seconds: float, width: int, height: int) -> None:
        limits = self.limits
        self.frames += 1
        if self.frames > limits.max_frames:
            raise _too_large("frames", limits.max_frames, self.frames, "frames (counted)")
        if seconds > limits.max_seconds:
            raise _too_large("seconds", limits.max_seconds, seconds, "frame time (s)")
        if width * height > limits.max_frame_pixels:
            raise _too_large("frame_pixels", limits.max_frame_pixels, width * height, "a frame")
        total = self.frames * self.size[0] * self.size[1]
        if total > limits.max_total_pixels:
            raise _too_large("total_pixels", limits.max_total_pixels, total, "pixels stylized")


class ClipReader:
    """One pass over a clip's frames (RGB ``H×W×3`` uint8, scaled) and audio packets."""

    def __init__(self, source: Source, limits: VideoLimits) -> None:
        """Open ``source`` (bytes or a path) and check its header against ``limits``."""
        import av

        self.source, self.limits = source, limits
        head = source[:32] if isinstance(source, bytes) else _read_head(Path(source))
        kind = sniff_video(head)
        if kind is None:
            raise UnsupportedVideo("not a clip this service reads (MP4, WebM, GIF, animated WebP)")
        self._pil: Image.Image | None = None
        self._av: Any = None
        try:
            if kind == "webp":
                self._pil = Image.open(_file(source), formats=["WEBP"])
                frames = int(getattr(self._pil, "n_frames", 1))
                width, height = self._pil.size
                self.info = VideoInfo(kind, "webp", width, height, frames, None, None, None)
            else:
                self._av = av.open(_file(source), "r", options={"probesize": "5000000"})
                self.info = self._av_info(kind)
                if kind == "gif":
                    # FFmpeg's GIF demuxer leaves the size to the decoder, which would
                    # allocate the logical screen it reads: take it from the header here.
                    width = int.from_bytes(head[6:8], "little")
                    height = int.from_bytes(head[8:10], "little")
                    self.info = dataclasses.replace(self.info, width=width, height=height)
                if not self.info.width or not self.info.height:
                    raise VideoError("the clip's header declares no frame size")
        except UnsupportedVideo:
            self.close()
            raise
        except (av.error.FFmpegError, OSError, ValueError, Image.DecompressionBombError) as exc:
            self.close()
            raise VideoError(f"not a readable {kind} clip: {exc}") from exc
        try:
            _check_header(self.info, limits)
        except BaseException:
            self.close()
            raise

    def _av_info(self, kind: str) -> VideoInfo:
        container = self._av
        if not container.streams.video:
            raise UnsupportedVideo("the file holds no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in DECODERS:
            raise UnsupportedVideo(f"video codec {codec!r} is not accepted ({sorted(DECODERS)})")
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        seconds = container.duration / 1_000_000 if container.duration else None
        if stream.duration and stream.time_base:
            seconds = max(seconds or 0.0, float(stream.duration * stream.time_base))
        fps = float(stream.average_rate) if stream.average_rate else None
        width, height = stream.codec_context.width, stream.codec_context.height
        return VideoInfo(kind, codec, width, height, stream.frames or None, seconds, fps, audio)

    def frames(
        self, size: tuple[int, int], audio: Callable[[Any], None] | None = None
    ) -> Iterator[tuple[np.ndarray, Fraction]]:
        """Yield ``(frame, time in seconds)`` scaled to ``size``; audio packets to ``audio``."""
        for pixels, time, _ in self.frames_with_motion(size, audio, motion=False):
            yield pixels, time

    def frames_with_motion(
        self,
        size: tuple[int, int],
        audio: Callable[[Any], None] | None = None,
        *,
        motion: bool = True,
    ) -> Iterator[tuple[np.ndarray, Fraction, MotionVectors | None]]:
        """As :meth:`frames`, with each frame's motion vectors into past frames (or None).

        With ``motion`` the decoder exports them (FFmpeg's ``flags2=+export_mvs``: H.264,
        HEVC, MPEG-4; VP8/VP9/AV1 and GIF export none, nor do intra frames); they are in
        the coded frame's pixels (:class:`stylenet.flow.MotionVectors` keeps its size).
        """
        counter = _Counter(self.limits, size)
        if self._pil is not None:
            for pixels, time in self._pil_frames(size, counter):
                yield pixels, time, None
            return
        import av

        container = self._av
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        if motion:
            video.codec_context.options = {"flags2": "+export_mvs"}
        streams = [video, *container.streams.audio[:1]] if audio is not None else [video]
        try:
            for packet in container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None and audio is not None:
                        audio(packet)
                    continue
                for frame in packet.decode():
                    time = Fraction(frame.pts or 0) * (frame.time_base or video.time_base)
                    counter.count(float(time), frame.width, frame.height)
                    pixels = frame.to_ndarray(
                        format="rgb24", width=size[0], height=size[1], interpolation="AREA"
                    )
                    yield pixels, time, _motion(frame) if motion else None
        except av.error.FFmpegError as exc:
            raise VideoError(f"corrupt or truncated clip: {exc}") from exc
        if counter.frames == 0:
            raise VideoError("the clip has no decodable frame")

    def _pil_frames(
        self, size: tuple[int, int], counter: _Counter
    ) -> Iterator[tuple[np.ndarray, Fraction]]:
        image = self._pil
        assert image is not None
        time = Fraction(0)
        try:
            for index in range(self.info.frames or 1):
                image.seek(index)
                counter.count(float(time), *image.size)
                frame = image.convert("RGB").resize(size, Image.Resampling.BOX)
                yield np.asarray(frame, dtype=np.uint8), time
                time += Fraction(int(image.info.get("duration") or 100), 1000)
        except (OSError, EOFError, ValueError) as exc:
            raise VideoError(f"corrupt or truncated WebP: {exc}") from exc

    def close(self) -> None:
        """Release the decoder."""
        if self._av is not None:
            self._av.close()
        if self._pil is not None:
            self._pil.close()

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _motion(frame: Any) -> MotionVectors | None:
    """Return the past-pointing motion vectors a decoded frame carries, if any."""
    side = frame.side_data.get("MOTION_VECTORS")
    if side is None:
        return None
    return MotionVectors.from_side_data(side.to_ndarray(), frame.width, frame.height)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(32)
    except OSError as exc:
        raise VideoError(f"{path}: {exc.strerror or exc}") from exc


def _file(source: Source) -> BinaryIO | str:
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)

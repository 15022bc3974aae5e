"""Clips in, stylized clips out: streaming decode, batched frames, encode, audio copied.

A clip is decoded frame by frame (PyAV, whose wheels carry FFmpeg; animated WebP by
Pillow, as FFmpeg's WebP decoder reads still images only), never held whole: frames go
to a :class:`FrameStylizer` in batches of ``batch_size`` and are encoded as they come
back. The audio stream, if any, is copied packet by packet (no re-encoding) when the
output container can hold its codec, dropped otherwise (GIF and WebP hold none).

With ``temporal="shared"`` (:mod:`stylenet.temporal`) there are two passes over the
input: the first decodes every frame, checking the limits, and keeps an evenly spread
sample for the shared statistics; the second stylizes. So a clip over a limit is refused
before any frame is stylized, whatever its header claimed. With ``temporal="flow"``
each stylized frame is blended with the previous output warped by the motion
(:mod:`stylenet.flow_blend`), in order, as it comes back. Limits
(:class:`VideoLimits`) are checked from the container's header first (dimensions,
declared duration and frame count) and then counted while decoding, since headers can
lie: a GIF may declare a small screen and carry 100 000 frames.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch
from torch import nn

from .errors import InvalidParams
from .flow import MotionVectors
from .flow_blend import DEFAULT_FLOW_WEIGHT, FlowBlender
from .generators import MIN_SIDE
from .inference import stylize_tensor
from .pixels import fit_within
from .temporal import (
    DEFAULT_STATS_FRAMES,
    DEFAULT_TEMPORAL,
    ClipStatistics,
    FrameSample,
    TemporalMode,
    check_temporal,
    clip_statistics,
    fixed_statistics,
)
from .video_read import (
    ClipReader,
    Source,
    UnsupportedVideo,
    VideoError,
    VideoLimits,
    VideoTooLarge,
    sniff_video,
)
from .video_write import OUTPUT_FORMATS, ClipWriter, OutputFormat

VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".webm": "webm", ".mkv": "webm"}
VIDEO_SUFFIXES |= {".gif": "gif", ".webp": "webp"}


@dataclass(frozen=True)
class ClipResult:
    """What :func:`stylize_clip` wrote."""

    format: OutputFormat
    frames: int
    width: int
    height: int
    audio: str  # "copied", "dropped" or "none"


def output_size(
    width: int, height: int, max_side: int | None, fmt: OutputFormat
) -> tuple[int, int]:
    """Return the frames' size after ``max_side`` scaling (even sides where codecs need it)."""
    w, h = fit_within((width, height), max_side)
    if fmt.even:
        w, h = w - w % 2, h - h % 2
    if min(w, h) < MIN_SIDE:
        raise VideoError(f"frames are {w}×{h}; both sides must be ≥ {MIN_SIDE} px")
    return w, h


class FrameStylizer(Protocol):
    """What turns frames into stylized frames (local generator, or the service's batcher)."""

    def statistics(self, frames: Sequence[np.ndarray]) -> ClipStatistics:
        """Pass 1 of ``shared``: the statistics of these frames (``H×W×3`` uint8)."""
        ...

    def stylize(
        self, frames: Sequence[np.ndarray], stats: ClipStatistics | None
    ) -> list[np.ndarray]:
        """Stylize same-size frames (with ``stats`` shared, or per frame when None)."""
        ...


def frames_to_tensor(frames: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack ``H×W×3`` uint8 frames into an N×3×H×W float tensor (the pixel convention)."""
    batch = torch.from_numpy(np.stack(frames)).to(device)
    return batch.permute(0, 3, 1, 2).float().contiguous()


def tensor_to_frames(batch: torch.Tensor) -> list[np.ndarray]:
    """Invert :func:`frames_to_tensor` (round, clamp, uint8 on the host)."""
    out = batch.clamp(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return list(out.cpu().numpy())


@dataclass
class LocalStylizer:
    """A :class:`FrameStylizer` on a generator in this process (the CLI, the benchmarks)."""

    generator: nn.Module
    dtype: torch.dtype | None = None
    strength: float = 1.0
    preserve_color: bool = False
    tile: int = 512

    def statistics(self, frames: Sequence[np.ndarray]) -> ClipStatistics:  # noqa: D102
        device = next(self.generator.parameters()).device
        return clip_statistics(self.generator, frames_to_tensor(frames, device), tile=self.tile)

    def stylize(  # noqa: D102
        self, frames: Sequence[np.ndarray], stats: ClipStatistics | None
    ) -> list[np.ndarray]:
        device = next(self.generator.parameters()).device
        with fixed_statistics(self.generator, stats):
            out = stylize_tensor(
                frames_to_tensor(frames, device),
                self.generator,
                strength=self.strength,
                preserve_color=self.preserve_color,
                dtype=self.dtype,
            )
        return tensor_to_frames(out)


def stylize_clip(
    source: Source,
    target: BinaryIO | Path,
    stylizer: FrameStylizer,
    *,
    output: str | None = None,
    max_side: int | None = 1024,
    temporal: TemporalMode = DEFAULT_TEMPORAL,
    stats_frames: int = DEFAULT_STATS_FRAMES,
    flow_weight: float = DEFAULT_FLOW_WEIGHT,
    batch_size: int = 4,
    limits: VideoLimits | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    stop: threading.Event | None = None,
) -> ClipResult:
    """Stylize a clip, streaming: decode, stylize in batches, encode; copy the audio.

    Args:
        source: the clip's bytes or path (MP4, WebM/Matroska, GIF, animated WebP).
        target: where the result goes (a path, or a seekable binary file).
        stylizer: what stylizes frames (:class:`LocalStylizer`, or the service's).
        output: ``mp4``, ``webm``, ``gif`` or ``webp``; default: the input's family.
        max_side: the frames' longer side (downscaled to it; None keeps the size).
        temporal: ``per_frame``, ``shared`` or ``flow`` (see :mod:`stylenet.temporal`).
        stats_frames: frames the shared statistics are taken over.
        flow_weight: ``flow``'s blend weight (:class:`stylenet.flow_blend.FlowBlender`).
        batch_size: frames per stylize call.
        limits: what the clip may cost (:class:`VideoLimits`).
        progress: called with (frames done, frames expected or None) after each batch.
        stop: when set, the work stops (:class:`InterruptedError`) at the next batch.

    Raises:
        VideoError: corrupt, truncated or empty clip (UnsupportedVideo: not a format or
            codec accepted). VideoTooLarge: over a limit. InvalidParams: bad options.
    """
    temporal = check_temporal(temporal)
    if batch_size < 1:
        raise InvalidParams("batch_size", f"must be at least 1, got {batch_size}")
    limits = limits or VideoLimits()
    blender = FlowBlender(flow_weight) if temporal == "flow" else None
    stats: ClipStatistics | None = None
    expected: int | None = None
    with ClipReader(source, limits) as reader:
        fmt = OUTPUT_FORMATS[_output_name(output, reader.info.kind)]
        size = output_size(reader.info.width, reader.info.height, max_side, fmt)
        if temporal == "shared":
            sample = FrameSample(stats_frames)
            for index, (frame, _) in enumerate(reader.frames(size)):
                _check_stop(stop)
                sample.offer(index, frame)
            expected = index + 1
            stats = stylizer.statistics(sample.frames())
    partial = None
    if isinstance(target, Path):
        # A temporary name, renamed on success: a failed clip leaves no half file behind.
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with ClipReader(source, limits) as reader:
            writer = ClipWriter(str(partial) if partial else target, fmt, size, reader)  # type: ignore[arg-type]
            ok, done, batch = False, 0, []
            frames = reader.frames_with_motion(
                size, audio=writer.write_audio, motion=blender is not None
            )
            try:
                for decoded in frames:
                    batch.append(decoded)
                    if len(batch) == batch_size:
                        done += _flush(batch, stylizer, stats, blender, writer, stop)
                        if progress is not None:
                            progress(done, expected or reader.info.frames)
                done += _flush(batch, stylizer, stats, blender, writer, stop)
                ok = True
            finally:
                writer.close(flush=ok)
        if partial is not None:
            os.replace(partial, target)  # type: ignore[arg-type]
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    if progress is not None:
        progress(done, done)
    return ClipResult(fmt, done, size[0], size[1], writer.audio_state)


def _output_name(output: str | None, kind: str) -> str:
    name = output or kind
    if name not in OUTPUT_FORMATS:
        raise InvalidParams("format", f"must be one of {tuple(OUTPUT_FORMATS)}, got {name!r}")
    return name


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise InterruptedError("stylizing the clip was stopped")


def _flush(
    batch: list[tuple[np.ndarray, Fraction, MotionVectors | None]],
    stylizer: FrameStylizer,
    stats: ClipStatistics | None,
    blender: FlowBlender | None,
    writer: ClipWriter,
    stop: threading.Event | None,
) -> int:
    if not batch:
        return 0
    _check_stop(stop)
    out = stylizer.stylize([frame for frame, _, _ in batch], stats)
    for stylized, (frame, time, motion) in zip(out, batch, strict=True):
        if blender is not None:
            stylized = blender.blend(frame, stylized, motion)
        writer.write(stylized, time)
    count = len(batch)
    batch.clear()
    return count


__all__ = [
    "OUTPUT_FORMATS",
    "VIDEO_SUFFIXES",
    "ClipResult",
    "FrameStylizer",
    "LocalStylizer",
    "OutputFormat",
    "UnsupportedVideo",
    "VideoError",
    "VideoLimits",
    "VideoTooLarge",
    "output_size",
    "sniff_video",
    "stylize_clip",
]

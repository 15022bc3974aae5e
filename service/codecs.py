"""The runtime's image codecs: PIL for everything, torchvision.io for JPEG on the device.

:class:`ImageCodecs` is what the runtime calls. Without a device it is exactly
:mod:`service.imaging` (PIL). With one (``STYLIZE_GPU_CODECS``, see
:class:`~service.settings.ServiceSettings`), JPEG requests that need no resizing are
decoded by ``torchvision.io.decode_jpeg`` straight onto the device (nvJPEG on CUDA) and
JPEG answers that are still device tensors are encoded by ``encode_jpeg`` there, so the
host touches only compressed bytes. Calls that arrive together are decoded (encoded) in
one batched call, which is how nvJPEG wants them.

Every safety property of :mod:`service.imaging` holds, because the device path only
ever sees streams PIL has vetted and that it can decode exactly like PIL:

- the format is sniffed first (:func:`service.imaging.check_kind`); only JPEG goes here;
- PIL parses the header first, so the pixel limit (413) is checked before any decode;
- :func:`jpeg_frame` walks the markers and admits only a complete (SOI … scans … EOI),
  8-bit, Huffman-coded, one-frame stream whose frame size is the one PIL read: a
  truncated file never reaches nvJPEG (which may return a half image), and the decoder
  allocates only what the limit allowed;
- everything else (CMYK/YCCK, 12-bit, arithmetic coding, a resize, PNG, WebP, any decode
  error on the device) goes to PIL, which answers exactly as before (e.g. a truncated
  JPEG gets the same 400 ``invalid_image``);
- EXIF orientation is PIL's value, applied by tensor flips (torchvision applies it on
  CPU only), so both paths agree on what "upright" means.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from service import imaging
from service.imaging import DecodedImage
from stylenet.devices import wait_idle
from stylenet.pixels import fit_within

log = logging.getLogger(__name__)

# torchvision 0.29 deprecates its codecs in favour of TorchCodec (not a dependency here)
# and warns on every call: once per request is noise, so silence that one warning.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io\.image")


def _tvio():
    """Return ``torchvision.io``, imported on first use.

    Importing torchvision loads torch._dynamo: 1.5 s of CPU at every API process start,
    for the device codecs only.
    """
    import torchvision.io

    return torchvision.io


#: SOF markers both libjpeg (PIL) and nvJPEG decode: baseline, extended and progressive
#: Huffman. Lossless, hierarchical and arithmetic-coded frames go to PIL.
_SOF_DEVICE = frozenset({0xC0, 0xC1, 0xC2})
_SOF_ALL = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: The end of an entropy-coded segment: 0xFF then anything but a stuffed zero or a
#: restart marker (fill bytes, 0xFF 0xFF, are then skipped by the marker walk). A plain
#: byte class: 25× faster than letting the pattern swallow the fill bytes too.
_SEGMENT_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
#: PIL's EXIF orientations (see ``ImageOps.exif_transpose``) as flips of an H×W×C tensor.
_ORIENT: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    2: lambda t: t.flip(1),  # FLIP_LEFT_RIGHT
    3: lambda t: t.flip(0, 1),  # ROTATE_180
    4: lambda t: t.flip(0),  # FLIP_TOP_BOTTOM
    5: lambda t: t.transpose(0, 1),  # TRANSPOSE
    6: lambda t: t.rot90(-1, (0, 1)),  # ROTATE_270 (clockwise 90)
    7: lambda t: t.transpose(0, 1).flip(0, 1),  # TRANSVERSE
    8: lambda t: t.rot90(1, (0, 1)),  # ROTATE_90
}


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """Return ``(width, height, components)`` of a complete JPEG stream the device decodes.

    None unless ``data`` is SOI, marker segments, exactly one 8-bit Huffman frame
    (baseline, extended or progressive) with its scans, and an EOI: truncated streams
    (no EOI after the last scan), a second frame, a DNL-sized frame and unusual codings
    all return None, and their callers hand the bytes to PIL. Bytes after EOI are
    ignored, as PIL ignores them.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    size, pos, frame, scans = len(data), 2, None, 0
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return frame if scans else None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            pos += 2
            continue
        if pos + 4 > size:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > size:
            return None
        if marker in _SOF_ALL:
            segment = data[pos + 4 : end]
            if frame is not None or marker not in _SOF_DEVICE or len(segment) < 6:
                return None
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            if segment[0] != 8 or height == 0 or width == 0:
                return None
            frame = (width, height, segment[5])
        pos = end
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next real marker
            if frame is None:
                return None
            scans += 1
            found = _SEGMENT_END.search(data, pos)
            if found is None:
                return None  # truncated inside a scan
            pos = found.start()
    return None


class _Slot:
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Any) -> None:
        self.item, self.done = item, False
        self.result: Any = None
        self.error: BaseException | None = None


class _Coalescer:
    """Runs concurrent calls of a batch function together: one runs, the others queue.

    A caller with nothing running takes the oldest queued calls (up to ``max_batch``)
    and runs them in one call of ``batch_fn``; calls arriving meanwhile queue and form
    the next batch, so batches grow with load and a lone call waits for nobody (as the
    request batcher does). Each caller runs batches only until its own call is done.
    """

    def __init__(self, batch_fn: Callable[[list[Any]], list[Any]], max_batch: int) -> None:
        self._batch_fn = batch_fn
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._running = False
        #: Sizes of the batches run so far, most recent last (tests and diagnostics).
        self.batch_sizes: list[int] = []

    def __call__(self, item: Any) -> Any:
        slot = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while not slot.done and self._running:
                    self._cond.wait()
                if slot.done:
                    break
                self._running = True
                taken = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._run(taken)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, taken: list[_Slot]) -> None:
        self.batch_sizes = [*self.batch_sizes[-99:], len(taken)]
        try:
            try:
                results = self._batch_fn([slot.item for slot in taken])
                for slot, result in zip(taken, results, strict=True):
                    slot.result = result
            except Exception:
                if len(taken) == 1:
                    raise
                # One bad item must not fail its neighbours: retry each alone.
                for slot in taken:
                    try:
                        slot.result = self._batch_fn([slot.item])[0]
                    except Exception as exc:
                        slot.error = exc
        except BaseException as exc:
            for slot in taken:
                if slot.result is None and slot.error is None:
                    slot.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for slot in taken:
                slot.done = True


class ImageCodecs:
    """Decode and encode request images: PIL, plus torchvision.io JPEG on ``device``.

    Thread-safe; the runtime calls it from its codec pool.

    Args:
        device: where JPEG is decoded to and encoded from by torchvision.io (nvJPEG on
            CUDA); None for PIL only, exactly :mod:`service.imaging`.
        max_batch: most images in one batched torchvision.io call.
    """

    def __init__(self, device: torch.device | None, *, max_batch: int = 16) -> None:
        """Set up the codecs (a device is checked with one encode and decode)."""
        self.device = device
        self._decode = _Coalescer(self._decode_batch, max_batch)
        self._encode = _Coalescer(self._encode_batch, max_batch)
        #: Images decoded / encoded by torchvision.io (tests and diagnostics); counted in
        #: the batch functions, which run one at a time, so no update is lost.
        self.device_decodes = 0
        self.device_encodes = 0
        if device is not None:
            self._self_test()
            self.device_decodes = self.device_encodes = 0

    @property
    def on_device(self) -> bool:
        """Whether JPEG goes through torchvision.io on the device."""
        return self.device is not None

    # --- decode -----------------------------------------------------------------------------

    def decode(self, data: bytes, *, max_pixels: int, max_side: int | None) -> DecodedImage:
        """Decode untrusted bytes, as :func:`service.imaging.decode` (same errors).

        JPEG that needs no resizing is decoded onto the device and its pixels are an
        ``H×W×3`` uint8 tensor there; everything else is PIL's numpy array.
        """
        if self.device is None:
            return imaging.decode(data, max_pixels=max_pixels, max_side=max_side)
        kind = imaging.check_kind(data)
        if kind != "jpeg":
            return imaging.decode(data, max_pixels=max_pixels, max_side=max_side)
        # Only the header is parsed here: the pixel limit comes before any decode.
        with (
            imaging.pil_errors(kind, max_pixels),
            Image.open(io.BytesIO(data), formats=["JPEG"]) as image,
        ):
            width, height = image.size
            imaging.check_pixels(width, height, max_pixels)
            mode = image.mode
            orientation = _orientation(image)
        # Resizing stays with PIL: it decodes at 1/2, 1/4 or 1/8 scale in the DCT domain
        # (draft) and then Lanczos-filters (stylenet.pixels.resize_within), which the
        # GPU cannot reproduce (torch has no Lanczos; its antialiased bilinear/bicubic
        # are other filters, and nvJPEG has no DCT-domain scaling). A photo that needs
        # downscaling therefore gets the same pixels whatever the switch says, and PIL
        # decodes only a fraction of its pixels, which keeps that host cost small.
        if fit_within((width, height), max_side) != (width, height):
            return imaging.decode(data, max_pixels=max_pixels, max_side=max_side)
        frame = jpeg_frame(data)
        components = {"L": 1, "RGB": 3}.get(mode)
        if frame is None or frame != (width, height, components) or orientation is None:
            # Truncated, CMYK/YCCK, 12-bit, arithmetic, a frame PIL reads differently, a
            # nonsense orientation: PIL decides (and raises the usual 400 where it fails).
            return imaging.decode(data, max_pixels=max_pixels, max_side=max_side)
        try:
            hwc = self._decode((data, orientation))
        except RuntimeError as exc:
            log.info("device JPEG decode failed (%s); decoding with PIL", exc)
            return imaging.decode(data, max_pixels=max_pixels, max_side=max_side)
        imaging.check_min_side(hwc.shape[1], hwc.shape[0])
        return DecodedImage(hwc, kind, (width, height))

    def _decode_batch(self, items: list[tuple[bytes, int]]) -> list[torch.Tensor]:
        """Decode ``(jpeg, orientation)`` pairs into upright ``H×W×3`` device tensors."""
        assert self.device is not None
        inputs = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob, _ in items]
        tvio = _tvio()
        images = tvio.decode_jpeg(inputs, mode=tvio.ImageReadMode.RGB, device=self.device)
        upright = []
        for chw, (_, orientation) in zip(images, items, strict=True):
            hwc = chw.permute(1, 2, 0)  # a view: the consumer makes NCHW again
            upright.append(_ORIENT[orientation](hwc) if orientation in _ORIENT else hwc)
        # Complete before the device thread reads them (nvJPEG runs on its own stream
        # and orders itself before the current one; this waits for that one and the
        # flips).
        wait_idle(self.device)
        self.device_decodes += len(items)
        return upright

    # --- encode -----------------------------------------------------------------------------

    def encode(self, pixels: np.ndarray | torch.Tensor, fmt: str, quality: int | None) -> bytes:
        """Encode ``H×W×3`` uint8 pixels as ``fmt``, as :func:`service.imaging.encode`.

        A device tensor asked for as JPEG is encoded on the device; anything else is
        copied to the host (if needed) and encoded by PIL.
        """
        if self.device is not None and fmt == "jpeg" and isinstance(pixels, torch.Tensor):
            try:
                return self._encode((pixels.permute(2, 0, 1).contiguous(), quality or 90))
            except RuntimeError as exc:
                log.info("device JPEG encode failed (%s); encoding with PIL", exc)
        return imaging.encode(host_pixels(pixels), fmt, quality)

    def _encode_batch(self, items: list[tuple[torch.Tensor, int]]) -> list[bytes]:
        assert self.device is not None
        out: list[bytes] = [b""] * len(items)
        # encode_jpeg takes one quality per call: one batched call per quality.
        for quality in {q for _, q in items}:
            which = [i for i, (_, q) in enumerate(items) if q == quality]
            encoded = _tvio().encode_jpeg([items[i][0] for i in which], quality=quality)
            for i, blob in zip(which, encoded, strict=True):
                out[i] = blob.cpu().numpy().tobytes()
        self.device_encodes += len(items)
        return out

    def _self_test(self) -> None:
        """Fail at start-up, not per request, if torchvision.io cannot run on the device."""
        # Two flat halves, so a decoder that returns the wrong pixels (not only the wrong
        # shape: e.g. a stream read before it was written) fails here, not per request.
        probe = torch.full((3, 16, 16), 64, dtype=torch.uint8, device=self.device)
        probe[:, :, 8:] = 192
        decoded = self._decode_batch([(self._encode_batch([(probe, 90)])[0], 1)])[0]
        if decoded.shape != (16, 16, 3) or decoded.device != probe.device:
            raise RuntimeError(f"torchvision.io JPEG on {self.device} returned {decoded.shape}")
        error = (decoded.permute(2, 0, 1).float() - probe.float()).abs().mean().item()
        if error > 8:
            raise RuntimeError(
                f"torchvision.io JPEG on {self.device} is off by {error:.1f} of 255 on average"
            )


def _orientation(image: Image.Image) -> int | None:
    """PIL's EXIF orientation (1–8) of ``image``; None if its EXIF cannot be read or is odd."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF: PIL's own path decides what it means
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def host_pixels(pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return pixels as a host numpy array; a CUDA tensor comes back through pinned memory.

    The copy is non-blocking into pinned memory, then a sleeping wait: a pageable
    ``.cpu()`` would stage through a driver buffer and may spin a core while it waits.
    """
    if not isinstance(pixels, torch.Tensor):
        return pixels
    if pixels.device.type != "cuda":
        return pixels.numpy()
    host = torch.empty(pixels.shape, dtype=pixels.dtype, pin_memory=True)
    host.copy_(pixels, non_blocking=True)
    wait_idle(pixels.device)
    return host.numpy()

"""Device JPEG codecs (service.codecs): the torchvision.io path against PIL's, on CPU.

The torchvision.io path runs here with ``device=cpu`` (libjpeg-turbo); on CUDA the same
code calls nvJPEG (see the ``gpu`` tests at the end, skipped without CUDA).
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from service import ServiceSettings, imaging
from service.codecs import ImageCodecs, _Coalescer, jpeg_frame
from service.errors import BadRequest, InvalidOption, TooManyPixels, UnsupportedMediaType
from stylenet import samples
from stylenet.generators import MIN_SIDE

LIMIT = 8192 * 8192


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return samples.sample("astronaut").resize((320, 240))


@pytest.fixture
def codecs() -> ImageCodecs:
    return ImageCodecs(torch.device("cpu"))


def jpeg(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(image, exif=exif.tobytes())


def pil(data: bytes, max_side: int | None = 1024) -> imaging.DecodedImage:
    return imaging.decode(data, max_pixels=LIMIT, max_side=max_side)


def assert_close(device: np.ndarray | torch.Tensor, reference: np.ndarray, mean: float = 0.5):
    array = device.cpu().numpy() if isinstance(device, torch.Tensor) else device
    assert array.shape == reference.shape
    diff = np.abs(array.astype(np.int16) - reference.astype(np.int16))
    assert diff.mean() <= mean, diff.mean()
    assert diff.max() <= 16, diff.max()


# --- the marker walk ------------------------------------------------------------------------


def test_jpeg_frame_reads_complete_streams(photo: Image.Image) -> None:
    assert jpeg_frame(jpeg(photo)) == (320, 240, 3)
    assert jpeg_frame(jpeg(photo, progressive=True)) == (320, 240, 3)
    assert jpeg_frame(jpeg(photo.convert("L"))) == (320, 240, 1)
    assert jpeg_frame(jpeg(photo.convert("CMYK"))) == (320, 240, 4)
    assert jpeg_frame(jpeg(photo) + b"trailing bytes") == (320, 240, 3)  # as PIL


@pytest.mark.parametrize("cut", [0.99, 0.5, 0.1])
def test_jpeg_frame_refuses_truncated_streams(photo: Image.Image, cut: float) -> None:
    data = jpeg(photo, progressive=True)
    assert jpeg_frame(data[: int(len(data) * cut)]) is None
    assert jpeg_frame(data[:-2]) is None  # all but the EOI


def test_jpeg_frame_refuses_a_second_frame_and_odd_codings(photo: Image.Image) -> None:
    data = jpeg(photo)
    sof = data.index(b"\xff\xc0")
    length = int.from_bytes(data[sof + 2 : sof + 4], "big")
    segment = data[sof : sof + 2 + length]
    assert jpeg_frame(data[:sof] + segment + data[sof:]) is None  # two frames
    assert jpeg_frame(data[:sof] + b"\xff\xc3" + data[sof + 2 :]) is None  # lossless
    assert jpeg_frame(data[:sof] + b"\xff\xc9" + data[sof + 2 :]) is None  # arithmetic
    assert jpeg_frame(b"\xff\xd8\xff\xd9") is None  # no frame, no scan


# --- decode: the device path and its fallbacks ---------------------------------------------


def test_jpeg_decodes_on_the_device_path_as_pil_does(codecs, photo: Image.Image) -> None:
    data = jpeg(photo)
    decoded = codecs.decode(data, max_pixels=LIMIT, max_side=1024)
    assert isinstance(decoded.pixels, torch.Tensor) and decoded.pixels.dtype == torch.uint8
    assert codecs.device_decodes == 1
    assert (decoded.format, decoded.source_size, decoded.size) == ("jpeg", (320, 240), (320, 240))
    assert_close(decoded.pixels, pil(data).pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(codecs, photo: Image.Image, orientation: int) -> None:
    data = with_orientation(photo, orientation)
    decoded = codecs.decode(data, max_pixels=LIMIT, max_side=1024)
    assert codecs.device_decodes == 1
    reference = pil(data)
    assert decoded.size == reference.size and decoded.source_size == (320, 240)
    assert_close(decoded.pixels, reference.pixels)


def test_grayscale_jpeg_decodes_on_the_device_path(codecs, photo: Image.Image) -> None:
    data = jpeg(photo.convert("L"))
    decoded = codecs.decode(data, max_pixels=LIMIT, max_side=1024)
    assert codecs.device_decodes == 1 and decoded.pixels.shape == (240, 320, 3)
    assert_close(decoded.pixels, pil(data).pixels)


@pytest.mark.parametrize(
    ("make", "max_side"),
    [
        (lambda p: jpeg(p.convert("CMYK")), 1024),  # CMYK: PIL's conversion
        (lambda p: jpeg(p), 200),  # needs resizing: PIL's draft + Lanczos
        (lambda p: with_orientation(p, 9), 1024),  # an orientation PIL ignores
    ],
    ids=["cmyk", "resize", "odd-orientation"],
)
def test_fallbacks_give_exactly_pils_pixels(codecs, photo: Image.Image, make, max_side) -> None:
    data = make(photo)
    decoded = codecs.decode(data, max_pixels=LIMIT, max_side=max_side)
    assert codecs.device_decodes == 0
    assert isinstance(decoded.pixels, np.ndarray)
    np.testing.assert_array_equal(decoded.pixels, pil(data, max_side).pixels)


def test_png_and_webp_stay_with_pil(codecs, photo: Image.Image) -> None:
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        photo.save(buf, fmt)
        decoded = codecs.decode(buf.getvalue(), max_pixels=LIMIT, max_side=1024)
        np.testing.assert_array_equal(decoded.pixels, pil(buf.getvalue()).pixels)
    assert codecs.device_decodes == 0


def test_truncated_jpeg_is_the_same_400(codecs, photo: Image.Image) -> None:
    data = jpeg(photo)[:2000]
    with pytest.raises(BadRequest) as device:
        codecs.decode(data, max_pixels=LIMIT, max_side=1024)
    with pytest.raises(BadRequest) as reference:
        pil(data)
    assert device.value.code == reference.value.code == "invalid_image"
    assert codecs.device_decodes == 0


def test_huge_header_is_413_before_any_decode(codecs, photo: Image.Image) -> None:
    data = bytearray(jpeg(photo))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # declares 30000×30000
    for limit in (LIMIT, 1000 * 1000):  # PIL's own bomb guard, then ours
        with pytest.raises(TooManyPixels):
            codecs.decode(bytes(data), max_pixels=limit, max_side=1024)
    assert codecs.device_decodes == 0 and codecs._decode.batch_sizes == []


def test_small_and_non_images_get_the_same_errors(codecs, photo: Image.Image) -> None:
    with pytest.raises(InvalidOption) as small:
        codecs.decode(jpeg(photo.resize((MIN_SIDE - 1, 64))), max_pixels=LIMIT, max_side=1024)
    assert small.value.code == "image_too_small"
    with pytest.raises(BadRequest) as empty:
        codecs.decode(b"", max_pixels=LIMIT, max_side=1024)
    assert empty.value.code == "empty_image"
    with pytest.raises(UnsupportedMediaType):
        codecs.decode(b"GIF89a" + bytes(100), max_pixels=LIMIT, max_side=1024)


def test_off_is_pil_only(photo: Image.Image) -> None:
    off = ImageCodecs(None)
    data = jpeg(photo)
    decoded = off.decode(data, max_pixels=LIMIT, max_side=1024)
    assert isinstance(decoded.pixels, np.ndarray) and not off.on_device
    np.testing.assert_array_equal(decoded.pixels, pil(data).pixels)
    pixels = decoded.pixels
    assert off.encode(pixels, "jpeg", 90) == imaging.encode(pixels, "jpeg", 90)


# --- encode ---------------------------------------------------------------------------------


def test_tensor_jpeg_encodes_on_the_device_path(codecs, photo: Image.Image) -> None:
    pixels = np.asarray(photo)
    data = codecs.encode(torch.from_numpy(pixels.copy()), "jpeg", 90)
    assert codecs.device_encodes == 1
    reference = np.asarray(Image.open(io.BytesIO(imaging.encode(pixels, "jpeg", 90))))
    assert_close(np.asarray(Image.open(io.BytesIO(data))), reference, mean=1.0)


def test_tensors_in_other_formats_are_encoded_by_pil(codecs, photo: Image.Image) -> None:
    pixels = np.asarray(photo)
    for fmt in ("png", "webp"):
        got = codecs.encode(torch.from_numpy(pixels.copy()), fmt, None)
        assert got == imaging.encode(pixels, fmt, None)
    assert codecs.device_encodes == 0
    with pytest.raises(InvalidOption):
        codecs.encode(torch.from_numpy(pixels.copy()), "gif", None)


# --- batching -------------------------------------------------------------------------------


def test_concurrent_calls_are_batched_and_isolated() -> None:
    gate = threading.Event()

    def batch_fn(items: list[int]) -> list[int]:
        if items == [0]:
            gate.wait(5)  # the first call holds the runner while the others queue
        if -1 in items:
            raise ValueError("bad item")
        return [i * 10 for i in items]

    coalescer = _Coalescer(batch_fn, max_batch=16)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = coalescer(i)
        except ValueError as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    time.sleep(0.1)
    others = [threading.Thread(target=call, args=(i,)) for i in (1, 2, -1, 3)]
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert coalescer.batch_sizes[0] == 1 and max(coalescer.batch_sizes) > 1
    assert [results[i] for i in (0, 1, 2, 3)] == [0, 10, 20, 30]
    assert isinstance(results[-1], ValueError)  # only the bad item fails


def test_concurrent_decodes_share_batched_calls(photo: Image.Image) -> None:
    codecs = ImageCodecs(torch.device("cpu"))
    blobs = [jpeg(photo.rotate(angle)) for angle in (0, 90, 180, 270) * 4]
    out: list[imaging.DecodedImage] = [None] * len(blobs)  # type: ignore[list-item]

    def work(i: int) -> None:
        out[i] = codecs.decode(blobs[i], max_pixels=LIMIT, max_side=1024)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codecs.device_decodes == len(blobs)
    assert sum(codecs._decode.batch_sizes) == len(blobs)
    for data, decoded in zip(blobs, out, strict=True):
        assert_close(decoded.pixels, pil(data).pixels)


# --- CUDA (nvJPEG) --------------------------------------------------------------------------


@pytest.fixture
def cuda_codecs() -> ImageCodecs:
    return ImageCodecs(torch.device("cuda", 0))


@pytest.mark.gpu
@pytest.mark.parametrize("orientation", [1, 6])
def test_nvjpeg_decode_matches_pil(cuda_codecs, photo: Image.Image, orientation: int) -> None:
    for data in (with_orientation(photo, orientation), jpeg(photo.convert("L"))):
        decoded = cuda_codecs.decode(data, max_pixels=LIMIT, max_side=1024)
        assert decoded.pixels.device.type == "cuda"
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg's by a level or two.
        assert_close(decoded.pixels, pil(data).pixels, mean=2.0)
    assert cuda_codecs.device_decodes == 2


@pytest.mark.gpu
def test_nvjpeg_truncated_and_cmyk_fall_back(cuda_codecs, photo: Image.Image) -> None:
    with pytest.raises(BadRequest):
        cuda_codecs.decode(jpeg(photo)[:2000], max_pixels=LIMIT, max_side=1024)
    data = jpeg(photo.convert("CMYK"))
    decoded = cuda_codecs.decode(data, max_pixels=LIMIT, max_side=1024)
    np.testing.assert_array_equal(decoded.pixels, pil(data).pixels)
    assert cuda_codecs.device_decodes == 0


@pytest.mark.gpu
def test_nvjpeg_encode_round_trips(cuda_codecs, photo: Image.Image) -> None:
    pixels = np.asarray(photo)
    data = cuda_codecs.encode(torch.from_numpy(pixels.copy()).cuda(), "jpeg", 90)
    assert cuda_codecs.device_encodes == 1
    reference = np.asarray(Image.open(io.BytesIO(imaging.encode(pixels, "jpeg", 90))))
    assert_close(np.asarray(Image.open(io.BytesIO(data))), reference, mean=2.0)


# --- the switch -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "on_cpu", "on_cuda"),
    [("auto", False, True), ("on", True, True), ("off", False, False)],
)
def test_gpu_codecs_setting(monkeypatch, value: str, on_cpu: bool, on_cuda: bool) -> None:
    monkeypatch.setenv("STYLIZE_GPU_CODECS", value)
    settings = ServiceSettings()
    assert (settings.uses_gpu_codecs("cpu"), settings.uses_gpu_codecs("cuda")) == (on_cpu, on_cuda)


def test_gpu_codecs_setting_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("STYLIZE_GPU_CODECS", "yes")
    with pytest.raises(ValidationError):
        ServiceSettings()

"""``GET /styles/{id}/export``: a style's generator as a model file for use elsewhere.

ONNX only (:mod:`stylenet.onnx_export`: opset 17, dynamic height and width, float32 or
float16 weights, the style's name, version, source sha256 and pixel convention in its
metadata). CoreML is not offered: converting needs ``coremltools`` (a large package,
most of it for macOS) in the service's image, for a format that Apple's ONNX Runtime
builds and the browser already cover.

The answer's ``ETag`` is the export's sha256 (the page keys its model cache by it);
``HEAD`` answers it without the body, making the export if it is not stored yet.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from service.auth import KeyFirstRoute
from service.deps import RuntimeDep, StoreDep, StylizeCallerDep
from service.errors import InvalidOption
from service.onnx_exports import onnx_export
from service.schemas import ErrorOut

router = APIRouter(prefix="/styles", tags=["styles"], route_class=KeyFirstRoute)
FORMATS = ("onnx",)
#: Why a format is not offered, for the 422's message.
_NOT_OFFERED = {
    "coreml": "coreml is not offered: converting needs coremltools in the service; "
    "use format=onnx (ONNX Runtime runs on iOS and macOS too)",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such style or version"},
    409: {"model": ErrorOut, "description": "style_not_ready: nothing published yet"},
    422: {
        "model": ErrorOut,
        "description": "an unknown format, or export_unsupported: the style's generator "
        "(multiscale) has no faithful ONNX form",
    },
}


@router.head(
    "/{style_id}/export",
    response_class=Response,
    operation_id="export_style_head",
    summary="The export's ETag (its sha256) and size, without the body",
    responses={200: {"description": "Headers only"}, **_ERRORS},
)
@router.get(
    "/{style_id}/export",
    response_class=Response,
    operation_id="export_style",
    summary="The style's generator as an ONNX model (dynamic size, RGB 0–255 NCHW float32)",
    responses={
        200: {
            "description": "The ONNX model; ETag is its sha256",
            "content": {"application/octet-stream": {}},
        },
        **_ERRORS,
    },
)
async def export_style(
    style_id: str,
    request: Request,
    runtime: RuntimeDep,
    store: StoreDep,
    _caller: StylizeCallerDep,
    format: Annotated[str, Query(description="onnx", max_length=32)] = "onnx",
    dtype: Annotated[
        Literal["float32", "float16"],
        Query(
            description="weights stored as float32, or float16 (half the size, computed in float32)"
        ),
    ] = "float32",
    version: Annotated[int | None, Query(ge=1, description="default: the serving one")] = None,
) -> Response:
    """Return the generator of the style's serving version (or ``version``) as ONNX.

    Input ``image`` and output ``stylized`` are N×3×H×W float32 RGB in 0–255, any H and
    W of at least 16 px; it matches this service's own output within 1/255 (before
    rounding to 8 bits). Made on the first request and kept in the model store.
    """
    if format not in FORMATS:
        message = _NOT_OFFERED.get(format, f"format must be one of {list(FORMATS)}")
        raise InvalidOption(message, field="format")
    target = await runtime.styles.resolve(style_id, version)  # 404, or 409 when not ready
    export = await onnx_export(store, target.style_id, target.version, dtype)
    suffix = "" if dtype == "float32" else "-float16"
    headers = {
        "ETag": f'"{export.sha256}"',
        "Cache-Control": "no-cache",
        "Content-Disposition": (
            f'attachment; filename="{export.style_id}-v{export.version}{suffix}.onnx"'
        ),
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(export.data))
        return Response(None, media_type="application/octet-stream", headers=headers)
    return Response(export.data, media_type="application/octet-stream", headers=headers)

"""Reading an upload (multipart or a raw body) and its ``max_side``, for every route taking one.

``POST /stylize`` (an image, or a clip: :mod:`service.clips`) and ``POST /videos`` take
the same two shapes of request: ``multipart/form-data`` with one file and the options as
fields, or the file itself as the body with the options in the query string. They also
cap ``max_side`` the same way. One reading, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from service.errors import InvalidOption, UnsupportedMediaType


async def read_upload(
    request: Request,
    *,
    file_fields: Sequence[str],
    raw_types: Collection[str],
    missing_code: str,
    raw_description: str,
) -> tuple[bytes, dict[str, Any]]:
    """Return the uploaded bytes and the option fields (query string, then form fields).

    ``file_fields``: the multipart fields the file may come in (the first is its name in
    messages); ``raw_types``: the Content-Types a raw body may have; ``missing_code``:
    the 422 code when a multipart request has no file; ``raw_description``: what a raw
    body may be, for the 415 message.

    Raises:
        InvalidOption: multipart without the file (422 ``missing_code``).
        UnsupportedMediaType: a Content-Type neither multipart nor in ``raw_types``.
    """
    fields: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "application/octet-stream")
    media_type = content_type.split(";", 1)[0].strip().lower()
    name = file_fields[0]
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=32) as form:
            uploads = (form.get(field) for field in file_fields)
            upload = next((u for u in uploads if isinstance(u, UploadFile)), None)
            if upload is None:
                raise InvalidOption(
                    f"multipart requests need a file field {name!r}", code=missing_code, field=name
                )
            data = await upload.read()
            fields.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
        return data, fields
    if media_type not in raw_types:
        raise UnsupportedMediaType(
            f"Content-Type {media_type!r} is not accepted: send multipart/form-data with a "
            f"{name!r} file, or {raw_description}"
        )
    return await request.body(), fields


def capped_max_side(requested: int | None, default: int, limit: int, what: str = "") -> int:
    """Return ``requested`` (or ``default``) if at most ``limit``; else 422 on ``max_side``.

    ``what``: appended to the message (``" for a clip"``).
    """
    max_side = requested or default
    if max_side > limit:
        raise InvalidOption(f"max_side: at most {limit}{what}", field="max_side", limit=limit)
    return max_side


__all__ = ["capped_max_side", "read_upload"]

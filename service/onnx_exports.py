"""A style version's ONNX export: read from the model store, or made once and stored there.

Used by ``GET /styles/{id}/export`` and by the runtime's ``onnxruntime`` backend. The
export is a function of the weights (and the exporter), so it is made once per style
version and kind and kept beside the weights (:mod:`model_store.exports`): every API
process and host then serves the same bytes with the same sha256, and the ~1 s of CPU an
export costs is paid once. Within a process, concurrent requests for one export share
one conversion.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anyio.to_thread

from model_store import ModelStore
from stylenet.onnx_export import EXPORT_DTYPES, export_onnx

log = logging.getLogger(__name__)

#: The store's export kind per weights dtype.
KINDS = {"float32": "onnx", "float16": "onnx-float16"}
assert set(KINDS) == set(EXPORT_DTYPES)


@dataclass(frozen=True)
class StoredExport:
    """An export's bytes and its digest (what the store verified them against)."""

    data: bytes
    sha256: str
    style_id: str
    version: int
    dtype: str


#: Conversions under way, by event loop (tests run several apps) and export.
_pending: dict[tuple[int, str, int, str], asyncio.Future[StoredExport]] = {}


async def onnx_export(
    store: ModelStore, style_id: str, version: int, dtype: str = "float32"
) -> StoredExport:
    """Return the ONNX export of ``style_id`` at ``version``, making and storing it if absent.

    Raises:
        model_store.StyleNotFound, model_store.VersionNotFound: no such style or version.
        stylenet.ExportUnsupported: the generator has no faithful ONNX form.
        stylenet.ModelFileError: the weights cannot be served by this code.
    """
    key = (id(asyncio.get_running_loop()), style_id, version, dtype)
    future = _pending.get(key)
    if future is None:
        future = asyncio.ensure_future(_get_or_make(store, style_id, version, dtype))
        _pending[key] = future
        future.add_done_callback(lambda _f: _pending.pop(key, None))
    # shield: one client going away does not cancel the conversion the others wait for.
    return await asyncio.shield(future)


async def _get_or_make(store: ModelStore, style_id: str, version: int, dtype: str) -> StoredExport:
    kind = KINDS[dtype]
    found = await anyio.to_thread.run_sync(store.open_export, style_id, version, kind)
    if found is not None:
        data, blob = found
        return StoredExport(data, blob.sha256, style_id, version, dtype)
    rec = await anyio.to_thread.run_sync(store.get, style_id)
    weights = await anyio.to_thread.run_sync(store.open_weights, style_id, version)
    made = await anyio.to_thread.run_sync(
        lambda: export_onnx(
            weights, dtype=dtype, style_id=rec.id, style_name=rec.name, version=version
        )
    )
    blob = await anyio.to_thread.run_sync(store.put_export, style_id, version, kind, made.data)
    log.info("exported %s v%d to ONNX (%s, %.1f MB)", style_id, version, dtype, blob.size / 1e6)
    if blob.sha256 != made.sha256:
        # Another process stored its export first: serve that one, so all agree.
        found = await anyio.to_thread.run_sync(store.open_export, style_id, version, kind)
        if found is not None:
            return StoredExport(found[0], found[1].sha256, style_id, version, dtype)
    return StoredExport(made.data, made.sha256, style_id, version, dtype)

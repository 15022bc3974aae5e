"""The styles API: create (enqueues training), train again, cancel, list, read, delete.

A style created with a key is owned by it (``owner``: the key's id); only that key or an
admin key may train it again, cancel or delete it (403 ``not_owner`` otherwise), and a
style without an owner (demo styles, styles made while the API was open) only an admin
key. Creating and retraining take one of the key's training slots (:mod:`service.limits`).

Store and Redis calls block, so they run in the thread pool: plain ``def`` handlers, or
``anyio.to_thread`` from the ``async`` ones, which read their body themselves (create,
train) or touch the runtime on the event loop (delete).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio.to_thread
import pydantic_core
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from model_store import (
    RESTARTABLE,
    HasDependents,
    InvalidTransition,
    ModelStore,
    ModelStoreError,
    Status,
    StyleRecord,
    generate_style_id,
)
from service import imaging
from service.auth import Caller, KeyFirstRoute, check_manager
from service.deps import (
    CallerDep,
    LimitsDep,
    MetricsDep,
    RequireKey,
    RuntimeDep,
    SettingsDep,
    StoreDep,
    TrainingDep,
)
from service.errors import BadRequest, Conflict, InvalidOption, ServiceError
from service.limits import Limits
from service.pricing import priced, priced_one
from service.schemas import ErrorOut, StyleOut, StylePage
from service.settings import ServiceSettings
from service.training import TrainingQueue
from stylenet import TrainParams
from stylenet.errors import InvalidParams

log = logging.getLogger(__name__)
router = APIRouter(prefix="/styles", tags=["styles"], route_class=KeyFirstRoute)
IMAGE_FIELD = "image"


#: What the errors shared by several routes mean here.
_ERROR_TEXT = {
    401: "API key missing",
    403: "API key not valid",
    429: "training_quota: the key has as many trainings queued or running as it may "
    "(trainings_per_key), or spent its daily budget; see Retry-After",
}
NOT_OWNER = (
    "API key not valid, or (not_owner) the style is another key's, or has no owner and "
    "the key is not an admin key"
)


def _errors(*codes: int, owned: bool = False) -> dict[int | str, dict[str, Any]]:
    """Document ``codes``; ``owned``: the route changes a style, which needs its owner."""
    documented = {code: {"model": ErrorOut} for code in codes}
    for code, text in {**_ERROR_TEXT, **({403: NOT_OWNER} if owned else {})}.items():
        if code in documented:
            documented[code]["description"] = text
    return documented


def _parse_params(text: str | None) -> TrainParams:
    if text is None or not text.strip():
        return TrainParams()
    # Parsed by the strict schema's own JSON reader: bounded nesting, no 4,300+ digit
    # numbers, Infinity refused as "not finite"; InvalidParams -> 422 naming the field.
    return TrainParams.from_json(text)


def _parse_train_body(raw: bytes) -> dict[str, Any] | None:
    """Return the params a ``/train`` body changes (checked once merged), or None.

    Raises:
        BadRequest: the body is not JSON (400 ``invalid_json``).
        InvalidOption: not an object of the documented shape (422).
        InvalidParams: ``params`` is not an object (422).
    """
    if not raw.strip():
        return None
    try:
        # allow_inf_nan: an Infinity is then refused by the schema, naming its field.
        doc = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:  # not JSON, nested too deeply, a number out of range
        raise BadRequest(f"the body is not JSON: {exc}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise InvalidOption(
            'the body must be a JSON object: {"params": {...}}',
            code="invalid_request",
            field="body",
        )
    unknown = sorted(set(doc) - {"params"})
    if unknown:
        raise InvalidOption(
            f"{unknown[0]}: unknown field; known: ['params']",
            code="invalid_request",
            field=unknown[0],
        )
    if doc.get("params") is None:
        return None
    if not isinstance(doc["params"], dict):
        raise InvalidParams("params", "must be a JSON object")
    return doc["params"]


@router.post(
    "",
    status_code=202,
    response_model=StyleOut,
    dependencies=[RequireKey],
    summary="Create a style and enqueue its training",
    responses=_errors(400, 401, 403, 413, 415, 422, 429, 503),
)
async def create_style(
    request: Request,
    response: Response,
    store: StoreDep,
    training: TrainingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    caller: CallerDep,
    limits: LimitsDep,
    image: Annotated[UploadFile, File(description="The style image (JPEG, PNG or WebP)")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    params: Annotated[
        str | None, Form(description="Training parameters: a JSON object (TrainParams)")
    ] = None,
) -> StyleOut:
    """Register a style (status ``queued``) and enqueue its training job; 202 + Location."""
    form = await request.form()  # the form FastAPI parsed (cached), to see every part
    if sum(1 for _, v in form.multi_items() if not isinstance(v, str)) > 1:
        # Like /stylize: one request, one image; which of two would train is a guess.
        raise BadRequest(
            f"send exactly one file, the style image in {IMAGE_FIELD!r}",
            code="too_many_files",
            field=IMAGE_FIELD,
        )
    data = await image.read()
    train_params = _parse_params(params)
    rec = await anyio.to_thread.run_sync(
        _create, store, training, settings, data, name, train_params, caller, limits
    )
    metrics.enqueued.inc()
    response.headers["Location"] = f"/styles/{rec.id}"
    return await anyio.to_thread.run_sync(priced_one, rec, training, store)  # reads Redis


def _create(
    store: ModelStore,
    training: TrainingQueue,
    settings: ServiceSettings,
    data: bytes,
    name: str,
    train_params: TrainParams,
    caller: Caller,
    limits: Limits,
) -> StyleRecord:
    # Refuse what the worker could not train on, now rather than in an hour.
    imaging.decode(data, max_pixels=settings.max_pixels, max_side=train_params.style_size)
    as_dict = train_params.to_dict()
    style_id = generate_style_id()  # known before the style is saved: the slot names it
    with limits.trainings.slot(caller, style_id, train_params, store):
        rec = store.create(data, name=name, params=as_dict, style_id=style_id, owner=caller.key_id)
        try:
            training.enqueue(rec.id, as_dict)
        except Exception:
            # No orphan: a queued style nobody will ever train would wait forever.
            try:
                store.delete(rec.id)
            except ModelStoreError as exc:
                log.error("could not remove style %s after a failed enqueue: %s", rec.id, exc)
            raise
    return rec


@router.post(
    "/{style_id}/train",
    status_code=202,
    response_model=StyleOut,
    dependencies=[RequireKey],
    summary="Train a style again (ready, failed or canceled); its current version serves",
    responses=_errors(400, 401, 403, 404, 409, 422, 429, 503, owned=True),
)
async def train_style_again(
    style_id: str,
    request: Request,
    response: Response,
    store: StoreDep,
    training: TrainingDep,
    metrics: MetricsDep,
    caller: CallerDep,
    limits: LimitsDep,
) -> StyleOut:
    """Start a new training run (status ``queued``); 202 + Location.

    Body (optional): ``{"params": {...}}``, the TrainParams to change, merged over those
    of the style's last run (``{"params": {"iterations": 600}}`` keeps the rest) and
    validated as a whole (422 naming the field); none, or ``{}``, trains with the last
    run's. On success the run publishes the next version, which then serves; until
    then (and if the run fails) the current version goes on serving.
    """
    # Read and validated here, not by FastAPI, so that every malformed body is a 4xx.
    new_params = _parse_train_body(await request.body())
    rec = await anyio.to_thread.run_sync(
        _train_again, store, training, style_id, new_params, caller, limits
    )
    metrics.enqueued.inc()
    response.headers["Location"] = f"/styles/{rec.id}"
    return await anyio.to_thread.run_sync(priced_one, rec, training, store)  # reads Redis


def _train_again(
    store: ModelStore,
    training: TrainingQueue,
    style_id: str,
    new_params: dict[str, Any] | None,
    caller: Caller,
    limits: Limits,
) -> StyleRecord:
    rec = store.get(style_id)
    check_manager(caller, rec.owner, rec.id, "train")
    if rec.status not in RESTARTABLE:
        raise Conflict(
            f"style {rec.id!r} is {rec.status.value}: wait for the run to end, or cancel it",
            code="not_restartable",
            style_id=rec.id,
            status=rec.status.value,
        )
    # The last run's params, with the changes, pass the same schema as a new style's
    # (records written before it was strict are checked too).
    train_params = TrainParams.from_dict({**rec.params, **(new_params or {})})
    params = train_params.to_dict()
    with training.starting(rec.id):  # concurrent retrains: one 202, 409 for the others
        training.forget_finished(rec.id)
        # After forget_finished: the previous job's end must not free the new slot.
        with limits.trainings.slot(caller, rec.id, train_params, store):
            rec = store.restart(rec.id, params)  # InvalidTransition (lost a race) -> 409
            try:
                training.enqueue(rec.id, params)
            except Exception as exc:
                # Nobody would ever train a queued style: say why it is not training.
                reason = exc.message if isinstance(exc, ServiceError) else str(exc)
                try:
                    store.update(rec.id, status=Status.FAILED, error=f"could not enqueue: {reason}")
                except ModelStoreError as store_exc:
                    log.error(
                        "style %s: could not record the failed enqueue: %s", rec.id, store_exc
                    )
                raise
    return rec


@router.get("", response_model=StylePage, summary="List styles, newest first")
def list_styles(
    store: StoreDep,
    training: TrainingDep,
    status: Annotated[list[Status] | None, Query(description="Keep these statuses")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> StylePage:
    """Return one page of styles; follow ``next`` for the following page.

    Each style is as ``GET /styles/{id}`` returns it (``estimated_seconds``, ``queue``).
    """
    page = store.list_styles(status=status or None, limit=limit, cursor=cursor)
    next_url = None
    if page.next_cursor is not None:
        query: list[tuple[str, str]] = [("status", s.value) for s in status or []]
        query += [("limit", str(limit)), ("cursor", page.next_cursor)]
        next_url = f"/styles?{urlencode(query)}"
    return StylePage(
        items=priced(list(page.items), training, store),
        next_cursor=page.next_cursor,
        next=next_url,
    )


@router.get(
    "/{style_id}",
    response_model=StyleOut,
    summary="A style: status, progress, ETA, metrics, links",
    responses=_errors(404, 500),
)
def get_style(style_id: str, store: StoreDep, training: TrainingDep) -> StyleOut:
    """Return the style's current record.

    With ``estimated_seconds`` while it is queued or training, and ``queue`` (its place
    on the training queue, when it should start and be ready) while it is queued.
    """
    return priced_one(store.get(style_id), training, store)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_response(data: bytes, content_type: str, sha256: str) -> Response:
    return Response(
        data,
        media_type=content_type,
        headers={"ETag": f'"{sha256}"', "Cache-Control": "no-cache"},
    )


@router.get(
    "/{style_id}/preview",
    response_class=Response,
    summary="The style's picture: a preview of the version that serves",
    responses={
        200: {
            "description": "JPEG (bundled demo styles) or PNG (the training worker's previews)",
            "content": {"image/jpeg": {}, "image/png": {}},
        },
        **_errors(404),
    },
)
def get_preview(style_id: str, store: StoreDep) -> Response:
    """Return the preview of the serving version (a run's preview once it published)."""
    return _sniffed_image(store.preview(style_id))  # PreviewNotFound -> 404


@router.get(
    "/{style_id}/training-preview",
    response_class=Response,
    summary="The latest preview of the current (or last unpublished) training run",
    responses={200: {"content": {"image/png": {}}}, **_errors(404)},
)
def get_training_preview(style_id: str, store: StoreDep) -> Response:
    """Return the run's latest preview; 404 once the run published (see ``/preview``)."""
    return _sniffed_image(store.run_preview(style_id))  # PreviewNotFound -> 404


def _sniffed_image(data: bytes) -> Response:
    """Answer with an image whose media type is what the bytes are (JPEG or PNG)."""
    kind = imaging.sniff(data) or "png"
    return _blob_response(data, imaging.MEDIA_TYPES.get(kind, "image/png"), _sha256(data))


@router.get(
    "/{style_id}/image",
    response_class=Response,
    summary="The original style image",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **_errors(404)},
)
def get_style_image(style_id: str, store: StoreDep) -> Response:
    """Return the style image as uploaded."""
    rec = store.get(style_id)
    data = store.style_image(style_id)
    return _blob_response(data, rec.style_image.content_type, rec.style_image.sha256)


def _stop_run(store: ModelStore, training: TrainingQueue, rec: StyleRecord) -> str:
    """Cancel the style's run in the store (what the worker obeys, so first), then its job."""
    if rec.status in (Status.QUEUED, Status.TRAINING):
        with contextlib.suppress(InvalidTransition):  # finished meanwhile
            store.cancel(rec.id)
    return training.cancel(rec.id)


@router.post(
    "/{style_id}/cancel",
    response_model=StyleOut,
    dependencies=[RequireKey],
    summary="Stop the style's training run; a published version goes on serving",
    responses=_errors(401, 403, 404, 409, owned=True),
)
def cancel_training(
    style_id: str, store: StoreDep, training: TrainingDep, caller: CallerDep
) -> StyleOut:
    """Cancel a queued or running training (status ``canceled``).

    A style canceled during a retrain keeps serving its current version, and any
    canceled style can be trained again (``POST /styles/{id}/train``) or deleted.
    """
    rec = store.get(style_id)
    check_manager(caller, rec.owner, rec.id, "cancel")
    if rec.status not in (Status.QUEUED, Status.TRAINING):
        raise Conflict(
            f"style {rec.id!r} is {rec.status.value}: no training run to cancel",
            code="not_running",
            style_id=rec.id,
            status=rec.status.value,
        )
    outcome = _stop_run(store, training, rec)
    log.info("style %s: training canceled; job: %s", rec.id, outcome)
    return StyleOut.from_record(store.get(rec.id))


def _delete(store: ModelStore, training: TrainingQueue, style_id: str, caller: Caller) -> None:
    rec = store.get(style_id)
    check_manager(caller, rec.owner, rec.id, "delete")
    # Before its run is stopped: a refused delete changes nothing. ``store.delete`` checks
    # again, atomically with the delete (a child may be published meanwhile).
    dependents = store.dependents(rec.id)
    if dependents:
        raise HasDependents(rec.id, dependents)
    outcome = _stop_run(store, training, rec)
    log.info("style %s deleted; training job: %s", style_id, outcome)
    store.delete(style_id)


@router.delete(
    "/{style_id}",
    status_code=204,
    response_class=Response,
    dependencies=[RequireKey],
    summary="Delete a style (cancels its training)",
    responses={
        **_errors(401, 403, 404, owned=True),
        409: {
            "model": ErrorOut,
            "description": "has_dependents: other styles store only what differs from "
            "this style's weights (`dependents` lists them); delete them first, or retrain "
            "them until no version they keep is stored over it",
        },
    },
)
async def delete_style(
    style_id: str, store: StoreDep, training: TrainingDep, runtime: RuntimeDep, caller: CallerDep
) -> Response:
    """Cancel the style's training if running, then delete it with all its versions.

    Refused (409 ``has_dependents``, nothing changed) while other styles' versions are
    stored as deltas over this style's weights (`storage.depends_on` of theirs).
    """
    await anyio.to_thread.run_sync(_delete, store, training, style_id, caller)
    runtime.forget_style(style_id)
    return Response(status_code=204)

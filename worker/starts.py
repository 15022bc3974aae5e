"""Where a style's training starts, looked up in the model store (``TrainParams.init``).

The choice itself is :func:`stylenet.warmstart.choose_init`; this module finds what it
chooses among: the style's own current version (a retrain continues from it), the style
``init`` names, the shipped base generator, and the registered ready styles for the
nearest-painting search (their signatures cached under ``<cache>/signatures``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from model_store import ModelStore, StyleRecord
from model_store.errors import ModelStoreError, StyleNotFound
from stylenet import TrainParams
from stylenet.data import open_image
from stylenet.errors import ModelFileError
from stylenet.generators import GeneratorConfig
from stylenet.model_file import read_info
from stylenet.train import build_loss, style_tensor
from stylenet.warmstart import (
    INIT_CHOICES,
    InitChoice,
    SignatureCache,
    Start,
    choose_init,
    find_base,
    nearest_style,
    style_signature,
)

log = logging.getLogger(__name__)
#: How many ready styles the nearest-painting search looks at (newest first).
MAX_CANDIDATES = 200


def _start(store: ModelStore, rec: StyleRecord, kind: str) -> Start | None:
    """Return the current version of ``rec`` as a start, or None without one."""
    info = rec.version_info()
    if info is None:
        return None
    number = info.version
    try:
        if "config" in info.metadata:
            config = GeneratorConfig(**dict(info.metadata["config"]))
        else:  # versions published without it (demo styles registered before it was kept)
            config = read_info(store.open_weights(rec.id, number)).config
    except (TypeError, ValueError, ModelStoreError, ModelFileError) as exc:
        log.warning("style %s v%d cannot be a start: %s", rec.id, number, exc)
        return None
    return Start(
        kind,
        config,
        lambda: store.open_weights(rec.id, number),
        info.sha256,
        style_id=rec.id,
        version=number,
        style_image=lambda: store.style_image(rec.id),
    )


def _get(store: ModelStore, style_id: str) -> StyleRecord | None:
    try:
        return store.get(style_id)
    except (StyleNotFound, ValueError):
        return None


def resolve_init(
    store: ModelStore,
    style_id: str,
    params: TrainParams,
    style_image: bytes,
    *,
    device: torch.device | str,
    cache_dir: Path,
) -> InitChoice:
    """Decide and load where the training of ``style_id`` starts (see the module doc)."""
    config = params.generator_config
    own_rec = _get(store, style_id)
    own = _start(store, own_rec, "continue") if own_rec is not None else None
    named = None
    if params.init not in INIT_CHOICES and params.init != style_id:
        other = _get(store, params.init)
        named = _start(store, other, "style") if other is not None else None
    elif params.init == style_id:
        named = own

    def nearest() -> tuple[Start, float] | None:
        candidates = _candidates(store, style_id, config)
        if not candidates:
            return None
        loss = build_loss(params, torch.device(device), cache_dir)
        cache = SignatureCache(cache_dir / "signatures")
        settings = {**params.resolved(), "style_size": params.style_size}

        def signature(image: bytes) -> dict[str, torch.Tensor]:
            def compute() -> dict[str, torch.Tensor]:
                painting = style_tensor(open_image(io.BytesIO(image)), params.style_size)
                return style_signature(loss, painting)

            return cache.get_or_compute(image, settings, compute)

        def of(start: Start) -> dict[str, torch.Tensor] | None:
            try:
                return signature(start.style_image()) if start.style_image else None
            except Exception as exc:  # one unreadable painting must not stop the run
                log.warning("nearest style: skipping %s: %s", start.style_id, exc)
                return None

        return nearest_style(candidates, of, signature(style_image), loss.style_layers)

    return choose_init(
        params.init, config, own=own, named=named, base=find_base(config), nearest=nearest
    )


def _candidates(store: ModelStore, style_id: str, config: GeneratorConfig) -> list[Start]:
    """Ready styles (not ``style_id``) whose current version has ``config``'s structure."""
    found: list[Start] = []
    cursor = None
    while len(found) < MAX_CANDIDATES:
        page = store.list_styles(status="ready", limit=100, cursor=cursor)
        for rec in page.items:
            start = _start(store, rec, "style") if rec.id != style_id else None
            if start is not None and start.config == config:
                found.append(start)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found[:MAX_CANDIDATES]


__all__ = ["MAX_CANDIDATES", "resolve_init"]

"""A style's images: the original, its picture and its run's preview (part of ``ModelStore``)."""

from __future__ import annotations

from dataclasses import replace

from model_store.content import sha256_hex, sniff_image
from model_store.core import StoreCore
from model_store.errors import PreviewNotFound, StyleNotFound
from model_store.records import BlobInfo, StyleRecord


class ImagesMixin(StoreCore):
    """Storing and verified reading of a style's images."""

    def style_image(self, style_id: str) -> bytes:
        """Return the original style image (type in ``get(...).style_image``), verified."""
        rec = self.get(style_id)
        return self._read_verified(rec, rec.style_image)

    def set_preview(self, style_id: str, image: bytes) -> StyleRecord:
        """Set the style's picture (PNG, JPEG or WebP bytes), replacing any previous.

        A worker calls :meth:`set_run_preview` instead: its previews replace the style's
        picture only when its run publishes.
        """
        return self._attach_image(style_id, image, "preview")

    def set_run_preview(self, style_id: str, image: bytes) -> StyleRecord:
        """Store the current training run's latest preview (PNG, JPEG or WebP bytes).

        :meth:`publish` makes it the style's picture; a run that is canceled or fails
        leaves the style's picture as it was. A new run starts without one.
        """
        return self._attach_image(style_id, image, "run_preview")

    def preview(self, style_id: str) -> bytes:
        """Return the style's picture (the preview of the serving version), verified.

        Raises:
            PreviewNotFound: none was set.
        """
        rec = self.get(style_id)
        if rec.preview is None:
            raise PreviewNotFound(rec.id)
        return self._read_verified(rec, rec.preview)

    def run_preview(self, style_id: str) -> bytes:
        """Return the latest preview of the current or last unpublished run, verified.

        Raises:
            PreviewNotFound: the run has made none (or it was published).
        """
        rec = self.get(style_id)
        if rec.run_preview is None:
            raise PreviewNotFound(rec.id)
        return self._read_verified(rec, rec.run_preview)

    def _attach_image(self, style_id: str, image: bytes, field: str) -> StyleRecord:
        if not image:
            raise ValueError("preview image is empty")
        start = self.get(style_id)
        content_type, ext = sniff_image(image)
        sha = sha256_hex(image)
        blob = BlobInfo(f"preview-{sha[:16]}.{ext}", sha, len(image), content_type)
        self._put_own_blob(start, blob.name, bytes(image))

        def attach(cur: StyleRecord) -> StyleRecord:
            if cur.incarnation != start.incarnation:
                raise StyleNotFound(start.id)
            return replace(cur, **{field: blob})

        return self._mutate(start.id, attach)

"""stylize HTTP service: stylize images with trained styles, manage styles and training.

Build the ASGI app with :func:`service.app.create_app`; run it with ``python -m service``.
The service enqueues training jobs by dotted path and never imports ``worker``.

The names below are imported on first use, so that importing a light submodule
(``service.cli``: ``stylize --help`` and ``--version``) does not load the app and torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app
    from service.settings import ServiceSettings, load_settings

__all__ = ["ServiceSettings", "create_app", "load_settings"]
_HOMES = {
    "create_app": "service.app",
    "ServiceSettings": "service.settings",
    "load_settings": "service.settings",
}


def __getattr__(name: str) -> Any:
    """Import :data:`__all__`'s names from their modules when first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value

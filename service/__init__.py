"""stylize HTTP service: stylize images with trained styles, manage styles and training.

Build the ASGI app with :func:`service.app.create_app`; run it with ``python -m service``.
The service enqueues training jobs by dotted path and never imports ``worker``.
"""

from service.app import create_app
from service.settings import ServiceSettings, load_settings

__all__ = ["ServiceSettings", "create_app", "load_settings"]

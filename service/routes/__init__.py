"""HTTP routes, one module per resource."""

from service.routes import events, health, styles, stylize

__all__ = ["events", "health", "styles", "stylize"]

"""HTTP routes, one module per resource."""

from service.routes import estimate, events, health, styles, stylize

__all__ = ["estimate", "events", "health", "styles", "stylize"]

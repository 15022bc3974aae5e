"""``<NAME>_FILE`` variables for settings classes: secrets from files, not the environment.

Docker and Compose hand secrets to containers as files under ``/run/secrets``; the usual
convention (the official postgres and redis images) is a ``<NAME>_FILE`` variable holding
the file's path. :class:`FileVariablesSource` gives every field of a pydantic-settings class
that convention: ``STYLIZE_API_KEYS_FILE=/run/secrets/api_keys`` sets ``api_keys`` to the
file's content, one value per line for list fields. Setting both ``<NAME>`` and
``<NAME>_FILE`` is an error, since one of them would be silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class FileVariablesSource(PydanticBaseSettingsSource):
    """Reads ``<env_prefix><FIELD>_FILE`` variables; add it to ``settings_customise_sources``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._prefix = str(self.config.get("env_prefix", "")).upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every field at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return ``{field: file content}`` for each ``*_FILE`` variable that is set."""
        environ = {key.upper(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"{self._prefix}{name.upper()}"
            path = environ.get(f"{variable}_FILE")
            if not path:
                continue
            if variable in environ:
                raise ValueError(f"set {variable} or {variable}_FILE, not both")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{variable}_FILE={path}: {exc.strerror or exc}") from None
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if not lines:  # an empty secret is a deployment mistake, never "no keys"
                raise ValueError(f"{variable}_FILE={path} is empty")
            # One secret per line; list fields take them comma-joined (their env syntax).
            values[name] = ",".join(lines)
        return values


class FileVariablesSettings(BaseSettings):
    """A settings base class whose fields can also come from ``<NAME>_FILE`` variables.

    Precedence: keyword arguments, then ``<NAME>`` variables, then ``<NAME>_FILE``.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Insert :class:`FileVariablesSource` after the environment."""
        files = FileVariablesSource(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings


__all__ = ["FileVariablesSettings", "FileVariablesSource"]

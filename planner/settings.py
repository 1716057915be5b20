"""Server settings (`PLANNER_*` environment variables, an optional `.env` file and an optional TOML file).

Precedence, highest first: explicit keyword arguments, `PLANNER_*` environment variables, `.env` in the
working directory, the TOML file named by `PLANNER_CONFIG_FILE` (top-level keys = field names), defaults.
`load_settings` turns validation failures into `InvalidArgumentError` whose violations name the field and the
environment variable that sets it.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from planner.errors import FieldViolation, InvalidArgumentError

ENV_PREFIX = "PLANNER_"
CONFIG_FILE_ENV = "PLANNER_CONFIG_FILE"


class LogFormat(StrEnum):
    """How log lines are rendered: JSON (production), console (development) or auto (console on a TTY)."""

    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"


class Settings(BaseSettings):
    """Everything the server process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    database_url: str = Field(default="sqlite:///var/planner.db", min_length=1)
    """SQLAlchemy URL of the store: SQLite file (default) or `postgresql://...`."""
    address: str = "127.0.0.1:50051"
    """host:port the gRPC server binds; port 0 picks a free port."""
    catalog_path: Path | None = None
    """Catalog TOML file; None = the packaged default (or the active stored version)."""
    price_table: Path | None = None
    """API price CSV (`model, input_usd_per_mtok, output_usd_per_mtok`) pricing run models the catalog lacks
    (`planner.derived_tiers`), tried before the list prices."""
    list_prices: bool = True
    """Price run models the catalog lacks, whose runs record no cost, from the list prices bundled with the
    `tokencost` package (`planner.prices`) when nothing before them prices a model."""
    max_message_mb: int = Field(default=16, ge=1, le=1024)
    """Largest gRPC message accepted or sent, MiB."""
    grace_s: float = Field(default=5.0, ge=0, le=600)
    """Seconds in-flight calls get to finish on shutdown."""
    default_deadline_s: float = Field(default=60.0, gt=0, le=86_400)
    """Time budget of a call whose client set no deadline."""
    max_concurrent_rpcs: int = Field(default=0, ge=0)
    """Calls served at once before new ones are refused with RESOURCE_EXHAUSTED; 0 = unlimited."""
    worker_threads: int = Field(default=4, ge=1, le=256)
    """Threads for blocking work (database, model fitting) off the event loop."""
    predictor_poll_s: float = Field(default=5.0, ge=0, le=3_600)
    """Seconds between checks of the promoted predictor in the store (CLI / other replicas); 0 = off."""
    log_format: LogFormat = LogFormat.AUTO
    """json | console | auto."""
    log_level: str = "INFO"
    """DEBUG | INFO | WARNING | ERROR."""
    metrics_port: int = Field(default=0, ge=0, le=65_535)
    """Port of the Prometheus metrics HTTP endpoint; 0 = off."""
    reflection: bool = True
    """Serve gRPC server reflection (so `grpcurl list` works)."""

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
            raise ValueError(f"address {value!r} is not host:port with a port in 0..65535")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level {value!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def _violation(err: Any) -> FieldViolation:
    name = str(err["loc"][0]) if err.get("loc") else "(settings)"
    env = f"{ENV_PREFIX}{name.upper()}"
    return FieldViolation(name, err.get("input"), f"{err['msg']} (set by {env})")


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment plus `overrides` (None values are ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        raise InvalidArgumentError.for_field(CONFIG_FILE_ENV, config_file, "no such file")
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise InvalidArgumentError("invalid settings", [_violation(e) for e in exc.errors()]) from None

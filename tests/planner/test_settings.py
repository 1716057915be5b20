"""`planner.settings`: defaults, PLANNER_* environment, TOML config file, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.errors import InvalidArgumentError
from planner.settings import LogFormat, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PLANNER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_contract() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///var/planner.db"
    assert s.address == "127.0.0.1:50051"
    assert s.catalog_path is None and s.metrics_port == 0
    assert s.max_message_bytes == 16 * 1024 * 1024
    assert s.log_format is LogFormat.AUTO


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANNER_ADDRESS", "0.0.0.0:6000")
    monkeypatch.setenv("PLANNER_LOG_LEVEL", "debug")
    monkeypatch.setenv("PLANNER_MAX_MESSAGE_MB", "64")
    s = load_settings(database_url="postgresql://u@h/db", address=None)
    assert s.address == "0.0.0.0:6000" and s.log_level == "DEBUG" and s.max_message_mb == 64
    assert s.database_url == "postgresql://u@h/db"
    assert load_settings(address="127.0.0.1:0").address == "127.0.0.1:0"


def test_dotenv_and_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PLANNER_GRACE_S=2.5\n")
    config = tmp_path / "planner.toml"
    config.write_text('metrics_port = 9100\ngrace_s = 9.0\nlog_format = "json"\n')
    monkeypatch.setenv("PLANNER_CONFIG_FILE", str(config))
    s = load_settings()
    assert s.metrics_port == 9100 and s.log_format is LogFormat.JSON
    assert s.grace_s == 2.5  # .env outranks the TOML file


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("PLANNER_ADDRESS", "no-port", "address"),
        ("PLANNER_METRICS_PORT", "70000", "metrics_port"),
        ("PLANNER_MAX_MESSAGE_MB", "0", "max_message_mb"),
        ("PLANNER_LOG_LEVEL", "LOUD", "log_level"),
        ("PLANNER_LOG_FORMAT", "xml", "log_format"),
    ],
)
def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(InvalidArgumentError) as info:
        load_settings()
    violation = info.value.violations[0]
    assert violation.field == field and env in violation.reason
    assert field in str(info.value)


def test_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANNER_CONFIG_FILE", "/nonexistent/planner.toml")
    with pytest.raises(InvalidArgumentError, match="PLANNER_CONFIG_FILE"):
        load_settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError):
        s.address = "x:1"  # type: ignore[misc]

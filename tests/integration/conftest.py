"""Fixtures for integration tests: a real planner gRPC server on port 0 over a temporary SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'planner.db'}", address="127.0.0.1:0", grace_s=1.0)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
async def server(settings: Settings, db: Database) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    yield srv, port
    await stop_server(srv, 0)


@pytest.fixture
async def channel(server: tuple[grpc.aio.Server, int]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server[1]}") as ch:
        yield ch

"""The one helper for RPCs whose handler is not built yet: raise NotImplementedYetError (UNIMPLEMENTED)."""

from __future__ import annotations

from typing import NoReturn

from planner.errors import NotImplementedYetError


def not_built(rpc: str) -> NoReturn:
    """Raise for an RPC (`Service.Method`) whose handler does not exist yet."""
    raise NotImplementedYetError(f"{rpc} is not implemented yet on this server")

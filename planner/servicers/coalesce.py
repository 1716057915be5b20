"""`Coalescer`: concurrent single-query Route calls with equal call options decided as one vectorised batch.

The first call to arrive for a set of call options leads a batch: it yields to the event loop once (or, while
calls are arriving together, waits up to `wait_s`), and every call with the same options that arrives
meanwhile joins the batch as a follower (a future). The leader decides the whole batch with one
`OnlineRouter.route` and hands each follower its decision. A lone call (a client sending one call at a time)
is decided in its own task after a single loop turn: no extra task, future or timer.

Errors stay per call: when a batch fails with a domain error (`PlannerError`), every query is re-decided
alone, so each call gets its own decision or its own error. A leader cancelled by its client still decides
for its followers (once anyone has joined, the batch runs in a shielded task).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeAlias

from planner.errors import InvalidArgumentError, PlannerError

if TYPE_CHECKING:
    from models.api import Query
    from planner.decision import Decision
    from planner.online import CallOptions, OnlineRouter

Outcome: TypeAlias = "Decision | BaseException"


class Coalescer:
    """Batches concurrent Route calls (see module docstring).

    `wait_s`: how long a leader waits for company while calls are arriving together (moving average of batch
    sizes above 1.05 and the last batch decided less than `busy_s` ago); otherwise it yields one loop turn.
    `max_batch`: a full batch stops taking followers (the next call leads a new one).
    """

    def __init__(self, wait_s: float = 0.005, max_batch: int = 256, busy_s: float = 0.02) -> None:
        if not (wait_s >= 0 and max_batch >= 1 and busy_s >= 0):
            raise InvalidArgumentError.for_field(
                "coalescer", (wait_s, max_batch, busy_s), "needs wait_s >= 0, max_batch >= 1, busy_s >= 0"
            )
        self.wait_s, self.max_batch, self.busy_s = wait_s, max_batch, busy_s
        self._open: dict[CallOptions, list[tuple[Query, asyncio.Future[Decision] | None]]] = {}
        self._last_flush = -1e9
        self._mean_size = 1.0
        self._background: set[asyncio.Task[list[Outcome]]] = set()
        self.batches = 0
        self.decided = 0

    async def decide(
        self, router: OnlineRouter, query: Query, call: CallOptions, max_wait_s: float | None = None
    ) -> Decision:
        """The call's decision. `max_wait_s`: the most this call may wait for company if it leads a batch
        (the handler passes what its deadline leaves beyond the time to decide)."""
        batch = self._open.get(call)
        if batch is not None and len(batch) < self.max_batch:
            future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
            batch.append((query, future))
            return await future
        return await self._lead(router, query, call, self.wait_s if max_wait_s is None else max_wait_s)

    async def _lead(self, router: OnlineRouter, query: Query, call: CallOptions, wait_s: float) -> Decision:
        loop = asyncio.get_running_loop()
        batch: list[tuple[Query, asyncio.Future[Decision] | None]] = [(query, None)]
        self._open[call] = batch
        busy = self._mean_size > 1.05 and loop.time() - self._last_flush < self.busy_s
        try:
            await asyncio.sleep(max(0.0, min(self.wait_s, wait_s)) if busy else 0)
        except asyncio.CancelledError:
            self._close(call, batch)
            if len(batch) > 1:  # the followers still need their decisions
                task = loop.create_task(self._settle(router, call, batch[1:]))
                self._background.add(task)  # the loop holds tasks weakly
                task.add_done_callback(self._background.discard)
            raise
        self._close(call, batch)
        if len(batch) == 1:
            return (await router.route([query], call))[0]
        task = loop.create_task(self._settle(router, call, batch))
        outcomes = await asyncio.shield(task)
        mine = outcomes[0]
        if isinstance(mine, BaseException):
            raise mine
        return mine

    def _close(self, call: CallOptions, batch: list[tuple[Query, asyncio.Future[Decision] | None]]) -> None:
        """Stop the batch taking followers and record its size."""
        if self._open.get(call) is batch:
            del self._open[call]
        self._mean_size = 0.8 * self._mean_size + 0.2 * len(batch)
        self._last_flush = asyncio.get_running_loop().time()
        self.batches += 1
        self.decided += len(batch)

    @staticmethod
    async def _settle(
        router: OnlineRouter, call: CallOptions, batch: list[tuple[Query, asyncio.Future[Decision] | None]]
    ) -> list[Outcome]:
        """Decide the batch; set each follower's future; return every call's outcome (in order)."""
        outcomes = await _decide_all(router, call, [q for q, _ in batch])
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future is None or future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        return outcomes


async def _decide_all(router: OnlineRouter, call: CallOptions, queries: list[Query]) -> list[Outcome]:
    try:
        return list(await router.route(queries, call))
    except Exception as exc:
        if len(queries) == 1 or not isinstance(exc, PlannerError):
            return [exc] * len(queries)
    outcomes: list[Outcome] = []
    for q in queries:  # one query spoiled the batch: decide each alone
        try:
            outcomes.append((await router.route([q], call))[0])
        except Exception as one:
            outcomes.append(one)
    return outcomes

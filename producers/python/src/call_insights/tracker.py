"""The life of one reported call, shared by the framework adapters: partial reports after completed
turns (debounced to one per ``partial_interval``), one final report, ``seq`` increasing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .publisher import Pending, Publisher
from .report import CallReport

log = logging.getLogger("call_insights")


class CallTracker:
    def __init__(
        self,
        report: CallReport,
        publisher: Publisher,
        *,
        partial_interval: float = 5.0,
        before_final: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.report = report
        self.publisher = publisher
        self.partial_interval = partial_interval
        self.before_final = before_final
        self._seq = 0
        self._last_partial = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._final_sent = False
        self._finishing: asyncio.Task[bool] | None = None

    @property
    def finished(self) -> bool:
        return self._final_sent

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def turn_completed(self) -> None:
        """A turn ended: publish a partial now, or at the end of the current interval."""
        if self._final_sent or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        wait = self._last_partial + self.partial_interval - time.monotonic()
        if wait <= 0:
            self.publish_partial()
        else:
            self._timer = loop.call_later(wait, self.publish_partial)

    def publish_partial(self) -> None:
        self._timer = None
        if self._final_sent:
            return
        try:
            payload, _ = self.report.snapshot(self._seq, final=False)
        except Exception:
            log.exception("call-insights: could not build the partial report of call %s", self.report.call_id)
            return
        self._last_partial = time.monotonic()
        self.publisher.submit(Pending(self.report.call_id, self._next_seq(), False, payload))

    async def finish(self, timeout: float = 10.0) -> bool:
        """Sends the final report (once) and waits up to ``timeout`` seconds for it to be published.

        Returns ``True`` when it was published in time; never raises, never waits longer."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish(timeout))
        try:
            return await asyncio.wait_for(asyncio.shield(self._finishing), timeout=max(0.0, timeout) + 0.05)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            return False
        except Exception:
            log.exception("call-insights: finishing call %s failed", self.report.call_id)
            return False

    async def _finish(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.before_final is not None:
            try:
                # Collecting the recording may take a while; it gets at most half the budget.
                await asyncio.wait_for(
                    self.before_final(max(0.0, timeout) / 2), timeout=max(0.0, timeout) / 2
                )
            except asyncio.TimeoutError:
                log.warning(
                    "call-insights: collecting the audio of call %s took too long; the final report goes "
                    "without it",
                    self.report.call_id,
                )
            except Exception:
                log.exception("call-insights: collecting the audio of call %s failed", self.report.call_id)
        if self.report.ended_at is None:
            self.report.end(close_reason=None)
        try:
            payload, audio = self.report.snapshot(self._seq, final=True)
        except Exception:
            log.exception("call-insights: could not build the final report of call %s", self.report.call_id)
            return False
        self._final_sent = True
        if not self.publisher.submit(Pending(self.report.call_id, self._next_seq(), True, payload, audio)):
            return False
        return await self.publisher.flush(deadline - time.monotonic())

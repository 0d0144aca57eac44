"""The publisher never disturbs the call: a Redis that goes away for 5 s (a TCP proxy in front of the
real one is cut), a queue bound that is reached, a final that must get out within its timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlparse

import pytest

from call_insights import CallReport, Turn
from call_insights.publisher import Pending, Publisher, stream_for
from call_insights.tracker import CallTracker

from .conftest import read_entries


class Proxy:
    """A TCP proxy to the real Redis that can be cut (listener closed, every connection reset)."""

    def __init__(self, target: str) -> None:
        u = urlparse(target)
        self.host, self.port_to = u.hostname or "127.0.0.1", u.port or 6379
        self.server: asyncio.Server | None = None
        self.port = 0
        self.conns: set[asyncio.StreamWriter] = set()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        with contextlib.suppress(Exception):
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(self.host, self.port_to)
        self.conns.update((w, uw))
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.conns):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.conns.clear()
        await self.server.wait_closed()


async def max_stall_while(coro: object, every: float = 0.005) -> tuple[float, object]:
    """Runs ``coro`` while measuring the longest time the event loop did not run a 5 ms ticker."""
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(every)
            now = time.perf_counter()
            worst = max(worst, now - last - every)
            last = now

    t = asyncio.create_task(ticker())
    try:
        result = await coro  # type: ignore[misc]
    finally:
        stop.set()
        await t
    return worst, result


def report(call_id: str) -> CallReport:
    r = CallReport(call_id=call_id, tenant_id="acme", agent_id="bot")
    r.add_turn(Turn(role="user", content="hello", started_at=r.started_at + 0.5, ended_at=r.started_at + 1.0))
    return r


async def test_redis_down_for_five_seconds_during_a_call(redis_url, stream, caplog):
    caplog.set_level(logging.WARNING, logger="call_insights")
    proxy = Proxy(redis_url)
    await proxy.up()
    pub = Publisher(f"redis://127.0.0.1:{proxy.port}", stream=stream, connect_timeout=0.5, max_backoff=0.5)
    rep = report("down-1")
    tracker = CallTracker(rep, pub, partial_interval=0.0)
    tracker.publish_partial()
    assert await pub.flush(5), "published while Redis was up"
    await proxy.down()

    async def the_call_goes_on() -> int:
        # A call's own work while Redis is away: turns complete and partials are queued.
        for i in range(25):
            rep.add_turn(Turn(role="assistant" if i % 2 else "user", content=f"turn {i}"))
            tracker.turn_completed()
            await asyncio.sleep(0.2)
        return len(rep.turns)

    worst, _ = await max_stall_while(the_call_goes_on())
    assert pub.stats.failed_attempts >= 1, "the outage was seen"
    assert worst < 0.25, f"the event loop stalled for {worst * 1000:.0f} ms"
    print(f"longest event-loop stall while Redis was down: {worst * 1000:.1f} ms")
    await proxy.up()
    assert await tracker.finish(timeout=10), "the final got out after Redis came back"
    entries = await read_entries(stream)
    final = entries[-1].payload
    assert final["report_type"] == "final" and len(final["turns"]) == 26
    assert [e.payload["seq"] for e in entries] == sorted(e.payload["seq"] for e in entries)
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("cannot publish to Redis" in m for m in warnings) == 1, warnings
    assert sum("reachable again" in m for m in warnings) == 1, warnings
    await pub.aclose(1)
    await proxy.down()


async def test_finish_returns_within_its_timeout_when_redis_is_unreachable(stream):
    pub = Publisher("redis://127.0.0.1:1", stream=stream, connect_timeout=0.2)
    tracker = CallTracker(report("unreachable-1"), pub)
    t0 = time.perf_counter()
    ok = await tracker.finish(timeout=1.0)
    took = time.perf_counter() - t0
    assert ok is False and took < 1.5, took
    assert await tracker.finish(timeout=0.1) is False, "idempotent"
    assert pub.stats.queued == 1 and pub.stats.published == 0
    await pub.aclose(0)


async def test_a_full_queue_drops_with_one_warning_and_counts(stream, caplog):
    caplog.set_level(logging.WARNING, logger="call_insights")
    pub = Publisher("redis://127.0.0.1:1", stream=stream, max_queue=3, connect_timeout=0.2)
    for i in range(10):
        assert pub.submit(Pending(f"call-{i}", 0, False, {"seq": 0})) is (i < 3)
    # A newer partial of a queued call replaces it instead of taking a place.
    assert pub.submit(Pending("call-2", 1, False, {"seq": 1}))
    # A final makes room by dropping a queued partial.
    assert pub.submit(Pending("call-1", 2, True, {"seq": 2}))
    assert pub.stats.dropped == 8
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1, [r.getMessage() for r in drops]
    await pub.aclose(0)


def test_partitions_follow_the_services_crc32_rule():
    import zlib

    assert stream_for("call-1", "s", 1) == "s"
    for c in ("call-1", "abc", "RM_x:AJ_y"):
        assert stream_for(c, "s", 4) == f"s:{{{zlib.crc32(c.encode()) % 4}}}"


@pytest.mark.parametrize("size", [100, 200_000])
async def test_large_payloads_are_gzipped(redis_url, stream, size):
    pub = Publisher(redis_url, stream=stream, gzip_threshold=32 * 1024)
    rep = CallReport(call_id="big-1", tenant_id="acme")
    rep.add_turn(Turn(role="user", content="x" * size))
    payload, _ = rep.snapshot(0, final=False)
    assert pub.submit(Pending("big-1", 0, False, payload))
    assert await pub.flush(5)
    [e] = await read_entries(stream)
    assert (e.fields.get("payload_encoding") == b"gzip") is (size > 32 * 1024)
    assert e.payload["turns"][0]["content"] == "x" * size
    await pub.aclose(1)

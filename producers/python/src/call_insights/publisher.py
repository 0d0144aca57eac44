"""Publishing reports to the service's Redis stream off the call's hot path.

``submit`` never blocks and never raises: it puts a snapshot in a bounded in-memory queue (a newer
partial of a call replaces its queued older one, since every report is a full snapshot) and returns.
A background task encodes each entry in a worker thread (JSON, gzip above a threshold, audio to WAV)
and ``XADD``s it; when Redis is unreachable it retries with exponential back-off, logging one warning
per outage and one line when it is back. When the queue is full the new report is dropped (a queued
partial makes room for a final first), counted, and logged with one warning per overflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .audio import encode_wav
from .report import AudioSegment

log = logging.getLogger("call_insights")

DEFAULT_STREAM = "call-insights:sessions"


def stream_for(call_id: str, stream: str = DEFAULT_STREAM, partitions: int = 1) -> str:
    """The stream a call's reports go to: the service's rule, ``<stream>:{crc32(call_id) mod N}``."""
    if partitions <= 1:
        return stream
    return f"{stream}:{{{zlib.crc32(call_id.encode()) % partitions}}}"


@dataclass
class Pending:
    """One report waiting to be published: its payload and the audio it refers to by field."""

    call_id: str
    seq: int
    final: bool
    payload: dict[str, Any]
    audio: dict[str, AudioSegment] = field(default_factory=dict)


@dataclass
class PublisherStats:
    published: int = 0
    dropped: int = 0
    failed_attempts: int = 0
    queued: int = 0
    bytes_published: int = 0


def encode_entry(p: Pending, gzip_threshold: int) -> dict[str, bytes]:
    """The stream entry's fields (runs in a worker thread: JSON, gzip and WAV encoding are CPU work)."""
    body = json.dumps(p.payload, separators=(",", ":"), ensure_ascii=False).encode()
    fields: dict[str, bytes] = {}
    if len(body) > gzip_threshold:
        fields["payload"] = gzip.compress(body, compresslevel=5)
        fields["payload_encoding"] = b"gzip"
    else:
        fields["payload"] = body
    for name, seg in p.audio.items():
        fields[name] = encode_wav(seg.pcm, seg.sample_rate, seg.channels)
    return fields


class Publisher:
    """A bounded, retrying publisher bound to the event loop it is first used on."""

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379",
        *,
        stream: str = DEFAULT_STREAM,
        partitions: int = 1,
        max_queue: int = 256,
        gzip_threshold: int = 32 * 1024,
        maxlen: int | None = 1_000_000,
        connect_timeout: float = 1.0,
        max_backoff: float = 5.0,
        redis_client: Any = None,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.redis_url = redis_url
        self.stream = stream
        self.partitions = partitions
        self.max_queue = max_queue
        self.gzip_threshold = gzip_threshold
        self.maxlen = maxlen
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._client: Any = redis_client
        self._queue: deque[Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._overflowing = False
        self._outage_since: float | None = None
        self.stats = PublisherStats()

    # -- the call's side: never blocks, never raises ----------------------------------------------

    def submit(self, pending: Pending) -> bool:
        """Queues a report; ``False`` when it was dropped (queue full or no running event loop)."""
        try:
            return self._submit(pending)
        except Exception:  # the call must go on whatever happens here
            log.exception("call-insights: could not queue the report of call %s", pending.call_id)
            self.stats.dropped += 1
            return False

    def _submit(self, pending: Pending) -> bool:
        self._ensure_running()
        if not pending.final:
            for i, queued in enumerate(self._queue):
                if queued.call_id == pending.call_id and not queued.final and i > 0:
                    # A snapshot replaces its older queued snapshot (not the one being sent).
                    self._queue[i] = pending
                    return True
        if len(self._queue) >= self.max_queue:
            victim = None
            if pending.final:
                victim = next((q for q in list(self._queue)[1:] if not q.final), None)
            if victim is not None:
                self._queue.remove(victim)
                self._dropped(victim, "to make room for a final report")
            else:
                self._dropped(pending, "the queue is full")
                return False
        self._queue.append(pending)
        self.stats.queued = len(self._queue)
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()
        return True

    def _dropped(self, p: Pending, why: str) -> None:
        self.stats.dropped += 1
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "call-insights: dropped the %s report seq %d of call %s: %s (%d queued, max_queue=%d); "
                "further drops until the queue drains are only counted",
                "final" if p.final else "partial",
                p.seq,
                p.call_id,
                why,
                len(self._queue),
                self.max_queue,
            )

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            if self._loop is not None and self._loop is not loop:
                self._client = None  # a client belongs to the loop it was made on
            self._loop = loop
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            if not self._queue:
                self._idle.set()
            self._task = loop.create_task(self._run(), name="call-insights-publisher")

    # -- background ---------------------------------------------------------------------------------

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(
                self.redis_url,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=max(5.0, self.connect_timeout),
                health_check_interval=30,
            )
        return self._client

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        backoff = 0.05
        while True:
            if not self._queue:
                self._idle.set()
                self._overflowing = False
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue[0]
            try:
                fields = await asyncio.to_thread(encode_entry, item, self.gzip_threshold)
            except Exception:
                log.exception(
                    "call-insights: could not encode report seq %d of call %s", item.seq, item.call_id
                )
                self._queue.popleft()
                self.stats.dropped += 1
                continue
            try:
                await self._redis().xadd(
                    stream_for(item.call_id, self.stream, self.partitions),
                    fields,
                    maxlen=self.maxlen,
                    approximate=True,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.failed_attempts += 1
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning(
                        "call-insights: cannot publish to Redis (%s: %s); retrying with back-off, "
                        "the call goes on",
                        type(e).__name__,
                        e,
                    )
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            backoff = 0.05
            if self._outage_since is not None:
                log.warning(
                    "call-insights: Redis reachable again after %.1f s; publishing what was queued",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            if self._queue and self._queue[0] is item:
                self._queue.popleft()
            self.stats.published += 1
            self.stats.bytes_published += sum(len(v) for v in fields.values())
            self.stats.queued = len(self._queue)

    async def flush(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for everything queued to be published; ``True`` when it was."""
        if not self._queue:
            return True
        if self._idle is None:
            return False
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float = 5.0) -> None:
        """Flushes for up to ``timeout`` seconds, then stops the background task and the connection."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

"""LiveKit Agents (1.8) → call-insights.

    from call_insights.livekit import CallInsights
    insights = CallInsights(tenant_id="acme", agent_id="booking-bot", redis_url="redis://127.0.0.1:6379")

    async def entrypoint(ctx: JobContext):
        session = AgentSession(stt=..., llm=..., tts=..., vad=...)
        insights.attach(session, ctx)                    # before session.start
        await session.start(agent, room=ctx.room, record={"audio": True})

What is read from where: per-turn timing and latency from each ``ChatMessage.metrics`` (the 1.8 way;
the deprecated ``metrics_collected`` event is not used), speaking and transcript events from the
session's events, tool calls from ``function_tools_executed``, errors from ``error``, the close
reason from ``close``, and after the session closes the recording (``record={"audio": True}``:
``audio.ogg``, channel 0 = the user's input after noise cancellation) from the job's session report.
Nothing here ever raises into the agent: a failure is logged and counted, the call goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from .publisher import DEFAULT_STREAM, Publisher, PublisherStats
from .report import AudioSegment, CallReport, Component, ToolCall, Turn
from .tracker import CallTracker

if TYPE_CHECKING:
    from livekit.agents import AgentSession, JobContext
    from livekit.agents.voice.events import EventTypes

log = logging.getLogger("call_insights")

#: LiveKit's close reasons → the contract's ``outcome.close_reason``.
CLOSE_REASONS = {
    "participant_disconnected": "user_hangup",
    "user_initiated": "agent_hangup",
    "task_completed": "agent_hangup",
    "job_shutdown": "agent_hangup",
    "error": "error",
}


def _known(value: Any) -> str | None:
    """A provider or model name, ``None`` when the plugin does not say."""
    if not isinstance(value, str) or not value or value == "unknown":
        return None
    return value


def _component(obj: Any) -> Component:
    if obj is None:
        return Component()
    try:
        return Component(
            provider=_known(getattr(obj, "provider", None)), model=_known(getattr(obj, "model", None))
        )
    except Exception:  # a plugin property that raises must not break the call
        return Component()


def _metric(metrics: Any, key: str) -> float | None:
    try:
        v = metrics.get(key) if metrics is not None else None
    except Exception:
        return None
    return float(v) if isinstance(v, (int, float)) else None


def _error_kind(error: Any) -> str:
    name = type(error).__name__
    for prefix, kind in (("STT", "stt_error"), ("LLM", "llm_error"), ("TTS", "tts_error")):
        if name.startswith(prefix):
            return kind
    return "error"


def _error_message(error: Any) -> str:
    inner = getattr(error, "error", None)
    if inner is not None:
        return f"{type(inner).__name__}: {inner}"[:500]
    return str(error)[:500]


class LiveKitCall:
    """One attached ``AgentSession``: maps what it emits into a :class:`CallReport`."""

    def __init__(
        self, owner: CallInsights, session: AgentSession[Any], ctx: JobContext | None, call_id: str | None
    ) -> None:
        self._session = session
        self._ctx = ctx
        room_id = job_id = None
        if ctx is not None:
            try:
                room_id = ctx.job.room.sid or None
                job_id = ctx.job.id or None
            except Exception:
                pass
        if call_id is None:
            call_id = f"{room_id or 'room'}:{job_id or int(time.time() * 1000)}"
        self.report = CallReport(
            call_id=call_id,
            tenant_id=owner.tenant_id,
            agent_id=owner.agent_id,
            room_id=room_id,
            job_id=job_id,
            channel_type=owner.channel_type,
        )
        self._read_pipeline()
        self._speech_runs: list[tuple[float, bytes, int]] = []
        self._last_near_miss = self._last_speech_run = float("-inf")
        self._watch_vad()
        self.tracker = CallTracker(
            self.report,
            owner.publisher,
            partial_interval=owner.partial_interval,
            before_final=self._before_final,
        )
        self._seen_messages: set[str] = set()
        self._pending_tools: list[ToolCall] = []
        self._last_assistant: Turn | None = None
        self._user_speaking_since: float | None = None
        self._started = False
        events: tuple[tuple[EventTypes, Any], ...] = (
            ("conversation_item_added", self._on_item),
            ("user_state_changed", self._on_user_state),
            ("agent_state_changed", self._on_agent_state),
            ("user_input_transcribed", self._on_transcribed),
            ("function_tools_executed", self._on_tools),
            ("error", self._on_error),
            ("close", self._on_close),
        )
        for event, handler in events:
            session.on(event, self._guard(handler))
        if ctx is not None:
            try:
                ctx.add_shutdown_callback(self._on_shutdown)
            except Exception:
                log.exception("call-insights: cannot register the shutdown callback; call finish() yourself")

    @property
    def call_id(self) -> str:
        return self.report.call_id

    def _guard(self, handler: Any) -> Any:
        def run(ev: Any) -> None:
            try:
                handler(ev)
            except Exception:
                log.exception("call-insights: could not map a %s event", type(ev).__name__)

        return run

    def _read_pipeline(self) -> None:
        s = self._session
        p = self.report.pipeline
        p.stt = _component(getattr(s, "stt", None))
        p.llm = _component(getattr(s, "llm", None))
        p.tts = _component(getattr(s, "tts", None))
        vad = getattr(s, "vad", None)
        opts = getattr(vad, "_opts", None)
        threshold = getattr(opts, "activation_threshold", None)
        if isinstance(threshold, (int, float)) and 0 <= threshold <= 1:
            p.vad_threshold = float(threshold)
        # LiveKit's noise cancellation is not RNNoise: say so.
        p.rnnoise_enabled = False

    def _watch_vad(self) -> None:
        """Puts a watcher around the session's VAD (before ``session.start`` reads it): it sees what
        LiveKit does not report — speech-like audio below the threshold (``near_miss``) and the audio of
        each run of speech that goes to STT (``stt_input`` per user turn)."""
        inner = getattr(self._session, "_vad", None)
        if inner is None or getattr(inner, "_call_insights_watch", False):
            return
        try:
            from ._livekit_vad import WatchedVAD

            self._session._vad = WatchedVAD(inner, self)
        except Exception:
            log.exception(
                "call-insights: cannot watch the VAD; near misses and per-turn STT audio go unreported"
            )

    def on_near_miss(self, at: float, max_probability: float, duration: float) -> None:
        """Called by the VAD watcher: speech-like audio that stayed below the activation threshold.
        The session may run more than one stream of its VAD over the same audio: one report each."""
        if abs(at - self._last_near_miss) < 0.15:
            return
        self._last_near_miss = at
        self.report.add_event(
            "near_miss",
            at,
            data={"max_probability": round(max_probability, 3), "duration_ms": round(duration * 1000)},
        )

    def on_speech_run(self, started_at: float, pcm: bytes, sample_rate: int) -> None:
        """Called by the VAD watcher at the end of each run of speech with the audio it covered."""
        if abs(started_at - self._last_speech_run) < 0.15:
            return
        self._last_speech_run = started_at
        self._speech_runs.append((started_at, pcm, sample_rate))

    def _attach_stt_input(self, turn: Turn) -> None:
        runs, self._speech_runs = self._speech_runs, []
        runs = [r for r in runs if r[2] == runs[-1][2]] if runs else []
        if not runs:
            return
        index = sum(1 for t in self.report.turns if t.role == "user")
        self.report.add_segment(
            AudioSegment(
                segment_id=f"stt_input-{index}",
                segment_type="stt_input",
                pcm=b"".join(r[1] for r in runs),
                sample_rate=runs[0][2],
                started_at=runs[0][0],
                turn=turn,
            )
        )

    def _read_noise_cancellation(self) -> None:
        room_io = getattr(self._session, "_room_io", None)
        opts = getattr(room_io, "_options", None)
        audio_in = getattr(opts, "audio_input", None)
        if audio_in is None or audio_in is True or audio_in is False:
            return
        self.report.pipeline.noise_suppression_enabled = (
            getattr(audio_in, "noise_cancellation", None) is not None
        )

    def _mark_started(self) -> None:
        if not self._started:
            self._started = True
            started = getattr(self._session, "_started_at", None)
            if isinstance(started, (int, float)) and started > 0:
                self.report.started_at = float(started)

    # -- events -------------------------------------------------------------------------------------

    def _on_item(self, ev: Any) -> None:
        self._mark_started()
        item = ev.item
        if getattr(item, "type", None) != "message" or item.role not in ("user", "assistant"):
            return
        if item.id in self._seen_messages:
            return
        self._seen_messages.add(item.id)
        m = item.metrics or {}
        text = item.text_content or ""
        started = _metric(m, "started_speaking_at")
        stopped = _metric(m, "stopped_speaking_at")
        if item.role == "user":
            turn = Turn(
                role="user",
                content=text,
                started_at=started if started is not None else item.created_at,
                ended_at=stopped,
                interrupted=False,
                stt_confidence=item.transcript_confidence,
                transcription_delay=_metric(m, "transcription_delay"),
                end_of_turn_delay=_metric(m, "end_of_turn_delay"),
            )
            self._attach_stt_input(turn)
        else:
            turn = Turn(
                role="assistant",
                content=text,
                started_at=started if started is not None else item.created_at,
                ended_at=stopped,
                interrupted=bool(item.interrupted),
                llm_ttft=_metric(m, "llm_node_ttft"),
                tts_ttfb=_metric(m, "tts_node_ttfb"),
                e2e_latency=_metric(m, "e2e_latency"),
                tool_calls=self._pending_tools or None,
            )
            self._pending_tools = []
            self._last_assistant = turn
            if item.interrupted:
                self.report.add_event("interruption", stopped or item.created_at, turn=turn)
        self.report.add_turn(turn)
        self.tracker.turn_completed()

    def _on_user_state(self, ev: Any) -> None:
        self._mark_started()
        if ev.new_state == "speaking":
            self._user_speaking_since = ev.created_at
            self.report.add_event("user_started_speaking", ev.created_at)
        elif ev.old_state == "speaking":
            data = None
            if self._user_speaking_since is not None:
                data = {"speech_duration_ms": round((ev.created_at - self._user_speaking_since) * 1000)}
            self._user_speaking_since = None
            self.report.add_event("user_stopped_speaking", ev.created_at, data=data)

    def _on_agent_state(self, ev: Any) -> None:
        self._mark_started()
        if ev.new_state == "speaking":
            self.report.add_event("agent_started_speaking", ev.created_at)
        elif ev.old_state == "speaking":
            self.report.add_event("agent_stopped_speaking", ev.created_at)

    def _on_transcribed(self, ev: Any) -> None:
        if not ev.is_final:
            return
        data: dict[str, Any] = {"final": True, "transcript": ev.transcript}
        if ev.language:
            data["language"] = str(ev.language)
        self.report.add_event("user_transcript", ev.created_at, data=data)

    def _on_tools(self, ev: Any) -> None:
        outputs = {o.call_id: o for o in ev.function_call_outputs if o is not None}
        for call in ev.function_calls:
            out = outputs.get(call.call_id)
            duration = None
            if out is not None and out.created_at >= call.created_at:
                duration = round((out.created_at - call.created_at) * 1000.0, 1)
            error = out.output if out is not None and out.is_error else None
            tool = ToolCall(
                name=call.name,
                arguments=_json_or_text(call.arguments),
                result=None if out is None or out.is_error else _json_or_text(out.output),
                error=error,
                duration_ms=duration,
            )
            self._pending_tools.append(tool)
            self.report.add_event(
                "tool_call",
                call.created_at,
                data={"name": call.name, "duration_ms": duration, "error": error},
            )

    def _on_error(self, ev: Any) -> None:
        err = ev.error
        recoverable = bool(getattr(err, "recoverable", False))
        message = _error_message(err)
        self.report.add_event(
            _error_kind(err), ev.created_at, data={"message": message, "recoverable": recoverable}
        )
        if not recoverable:
            self.report.error = self.report.error or message

    def _on_close(self, ev: Any) -> None:
        reason = getattr(ev.reason, "value", str(ev.reason))
        mapped = "transfer" if self.report.transferred_to else CLOSE_REASONS.get(reason, reason)
        error = _error_message(ev.error) if ev.error is not None else None
        self.report.end(close_reason=mapped, error=error, at=ev.created_at)
        self._read_noise_cancellation()

    async def _on_shutdown(self, reason: str = "") -> None:
        await self.finish()

    # -- the end ------------------------------------------------------------------------------------

    def mark_transfer(self, target: str) -> None:
        """Records a transfer (``ctx.transfer_sip_participant`` emits no event)."""
        self.report.mark_transfer(target)

    async def _before_final(self, budget: float) -> None:
        """Tool calls still pending go to the last assistant turn; the recording is read."""
        if self._pending_tools and self._last_assistant is not None:
            self._last_assistant.tool_calls = (self._last_assistant.tool_calls or []) + self._pending_tools
            self._pending_tools = []
        if self._ctx is None:
            return
        recorder = getattr(self._session, "_recorder_io", None)
        if recorder is None or getattr(recorder, "recording", False):
            # No recording, or the session is still open (finish() before aclose()): nothing to read.
            return
        try:
            sr = self._ctx.make_session_report(self._session)
        except Exception as e:
            log.info("call-insights: no session report for call %s (%s)", self.call_id, e)
            return
        path = sr.audio_recording_path
        if not path:
            return
        started = sr.audio_recording_started_at
        pcm, rate = await asyncio.to_thread(_decode_channel, str(path), 0)
        if pcm:
            self.report.add_segment(
                AudioSegment(
                    segment_id="full_post_rnnoise",
                    segment_type="full_post_rnnoise",
                    pcm=pcm,
                    sample_rate=rate,
                    started_at=float(started) if started else None,
                )
            )

    async def finish(self, timeout: float = 10.0) -> bool:
        """Sends the final report now (once) and waits at most ``timeout`` s for it to be published."""
        return await self.tracker.finish(timeout)


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _decode_channel(path: str, channel: int) -> tuple[bytes, int]:
    """One channel of a recording (LiveKit's stereo Ogg/Opus) as 16-bit PCM at its native rate."""
    import av
    import numpy as np

    chunks: list[Any] = []
    rate = 48_000
    with av.open(path) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            return b"", rate
        for frame in container.decode(stream):
            if not isinstance(frame, av.AudioFrame):
                continue
            rate = frame.sample_rate
            arr = frame.to_ndarray()
            fmt = frame.format.name
            if frame.format.is_planar:
                ch = arr[min(channel, arr.shape[0] - 1)]
            else:
                n = len(frame.layout.channels)
                ch = arr.reshape(-1, n)[:, min(channel, n - 1)]
            if fmt.startswith("flt"):
                ch = np.clip(ch * 32767.0, -32768, 32767).astype("<i2")
            elif fmt.startswith("s32"):
                ch = (ch >> 16).astype("<i2")
            else:
                ch = ch.astype("<i2")
            chunks.append(ch)
    if not chunks:
        return b"", rate
    return np.concatenate(chunks).astype("<i2").tobytes(), rate


class CallInsights:
    """Reports every ``AgentSession`` it is attached to. One per process; cheap to keep at module level."""

    def __init__(
        self,
        *,
        tenant_id: str,
        agent_id: str | None = None,
        redis_url: str = "redis://127.0.0.1:6379",
        stream: str = DEFAULT_STREAM,
        partitions: int = 1,
        partial_interval: float = 5.0,
        max_queue: int = 256,
        gzip_threshold: int = 32 * 1024,
        channel_type: str | None = None,
    ) -> None:
        if not tenant_id:
            raise ValueError("tenant_id is required")
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.partial_interval = partial_interval
        self.channel_type = channel_type
        self.publisher = Publisher(
            redis_url,
            stream=stream,
            partitions=partitions,
            max_queue=max_queue,
            gzip_threshold=gzip_threshold,
        )
        self._calls: list[LiveKitCall] = []

    @property
    def stats(self) -> PublisherStats:
        return self.publisher.stats

    def attach(
        self, session: AgentSession[Any], ctx: JobContext | None = None, *, call_id: str | None = None
    ) -> LiveKitCall:
        """Starts reporting ``session`` (call it before ``session.start``). ``call_id`` defaults to
        ``<room sid>:<job id>``; the final report goes when the job shuts down (or on :meth:`finish`)."""
        if ctx is None:
            try:
                from livekit.agents import get_job_context

                ctx = get_job_context()
            except Exception:
                ctx = None
        call = LiveKitCall(self, session, ctx, call_id)
        self._calls = [c for c in self._calls if not c.tracker.finished]
        self._calls.append(call)
        return call

    def mark_transfer(self, target: str) -> None:
        """Records a transfer on the calls in progress (neither framework emits an event for it)."""
        for c in self._calls:
            if not c.tracker.finished:
                c.mark_transfer(target)

    async def finish(self, timeout: float = 10.0) -> bool:
        """Sends the final report of every call in progress now and waits at most ``timeout`` seconds.

        Idempotent; returns ``True`` when every final report was published in time, and returns
        within ``timeout`` even when Redis is unreachable."""
        calls = [c for c in self._calls]
        if not calls:
            return True
        results = await asyncio.gather(*(c.finish(timeout) for c in calls))
        return all(results)

"""Pipecat (1.14) → call-insights: one observer and one audio processor.

    from call_insights.pipecat import CallInsightsObserver
    observer = CallInsightsObserver(tenant_id="acme", agent_id="support-bot", call_id=conversation_id,
                                    redis_url="redis://127.0.0.1:6379", stt=stt, llm=llm, tts=tts)
    worker = PipelineWorker(Pipeline([transport.input(), ..., transport.output(), observer.audio, ...]),
                            params=PipelineParams(enable_metrics=True), observers=[observer])

Pipecat has no session report: the observer builds one from the frames it sees (once per frame,
``observe_every_push=False``). Speech timing from the VAD frames (their ``start_secs``/``stop_secs``
taken off), the end-of-turn decision from ``UserStoppedSpeakingFrame``, transcripts from
``TranscriptionFrame``, what the bot said from ``TTSTextFrame`` (``LLMTextFrame`` without a TTS), when
it spoke from ``BotStarted/StoppedSpeakingFrame``, latencies from ``MetricsFrame`` TTFB data told
apart by the services' names (STT TTFB is our transcription delay), tool calls from the function-call
frames, errors from ``ErrorFrame``. ``observer.audio`` is an ``AudioBufferProcessor`` that records the
user's track (after ``audio_in_filter``) and each user turn's audio; ``observer.tee_filter(filter)``
keeps the audio before the filter too. Nothing here ever raises into the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pipecat.audio.filters.base_audio_filter import BaseAudioFilter
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    ErrorFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor

from .publisher import DEFAULT_STREAM, Publisher, PublisherStats
from .report import AudioSegment, CallReport, Component, ToolCall, Turn
from .tracker import CallTracker

log = logging.getLogger("call_insights")

#: How the pipeline ended → the contract's ``outcome.close_reason``.
END_REASONS = {"end": "agent_hangup", "cancel": "user_hangup"}


def _service_component(service: Any) -> tuple[str | None, Component]:
    """A service's processor name (what its metrics carry) and its provider and model."""
    if service is None:
        return None, Component()
    if isinstance(service, str):
        return service, Component()
    name = getattr(service, "name", None)
    module = type(service).__module__.split(".")
    provider = module[module.index("services") + 1] if "services" in module[:-1] else None
    model = None
    settings = getattr(service, "_settings", None)
    m = getattr(settings, "model", None)
    if isinstance(m, str) and m:
        model = m
    return (name if isinstance(name, str) else None), Component(provider=provider, model=model)


class _TeeFilter(BaseAudioFilter):
    """Keeps the audio that enters the input filter, then filters it as the wrapped filter does."""

    def __init__(self, inner: BaseAudioFilter, owner: CallInsightsObserver) -> None:
        self._inner = inner
        self._owner = owner

    async def start(self, sample_rate: int) -> None:
        self._owner._pre_rate = sample_rate
        await self._inner.start(sample_rate)

    async def stop(self) -> None:
        await self._inner.stop()  # type: ignore[no-untyped-call]

    async def process_frame(self, frame: Any) -> None:
        await self._inner.process_frame(frame)

    async def filter(self, audio: bytes) -> bytes:
        try:
            self._owner._keep_pre_audio(audio)
        except Exception:
            log.exception("call-insights: could not keep the unfiltered audio")
        out: bytes = await self._inner.filter(audio)
        return out


class CallInsightsObserver(BaseObserver):
    """Reports one Pipecat call (one pipeline run): add it to ``observers`` and ``observer.audio`` to
    the pipeline after ``transport.output()``."""

    def __init__(
        self,
        *,
        tenant_id: str,
        call_id: str,
        agent_id: str | None = None,
        redis_url: str = "redis://127.0.0.1:6379",
        stream: str = DEFAULT_STREAM,
        partitions: int = 1,
        partial_interval: float = 5.0,
        stt: Any = None,
        llm: Any = None,
        tts: Any = None,
        vad_threshold: float | None = None,
        channel_type: str | None = None,
        max_queue: int = 256,
        gzip_threshold: int = 32 * 1024,
        publisher: Publisher | None = None,
    ) -> None:
        super().__init__(observe_every_push=False)
        self.report = CallReport(
            call_id=call_id, tenant_id=tenant_id, agent_id=agent_id, channel_type=channel_type
        )
        self.publisher = publisher or Publisher(
            redis_url,
            stream=stream,
            partitions=partitions,
            max_queue=max_queue,
            gzip_threshold=gzip_threshold,
        )
        self._stt_name, self.report.pipeline.stt = _service_component(stt)
        self._llm_name, self.report.pipeline.llm = _service_component(llm)
        self._tts_name, self.report.pipeline.tts = _service_component(tts)
        self.report.pipeline.vad_threshold = vad_threshold
        self.report.pipeline.noise_suppression_enabled = False
        self.report.pipeline.rnnoise_enabled = False
        self.tracker = CallTracker(
            self.report, self.publisher, partial_interval=partial_interval, before_final=self._before_final
        )
        self._user: Turn | None = None
        self._last_user: Turn | None = None
        self._assistant: Turn | None = None
        self._speech_end: float | None = None
        self._bot_speaking = False
        self._llm_ttft: float | None = None
        self._tts_ttfb: float | None = None
        self._tools_started: dict[str, tuple[str, Any, float]] = {}
        self._tools_done: list[ToolCall] = []
        self._llm_text: list[str] = []
        self._tts_text: list[str] = []
        self._user_turns: list[Turn] = []
        self._pre: bytearray = bytearray()
        self._pre_rate = 16_000
        self._pre_started: float | None = None
        self._post: bytearray = bytearray()
        self._post_rate = 16_000
        self._recording_started: float | None = None
        self._recording_stopped = asyncio.Event()
        self._recording = False
        self._end_task: asyncio.Task[bool] | None = None
        self._pipeline_started = False
        self.audio = AudioBufferProcessor(
            sample_rate=16_000, num_channels=2, enable_turn_audio=True, auto_start_recording=True
        )
        self.audio.add_event_handler("on_recording_started", self._on_recording_started)
        self.audio.add_event_handler("on_recording_stopped", self._on_recording_stopped)
        self.audio.add_event_handler("on_track_audio_data", self._on_track_audio)
        self.audio.add_event_handler("on_user_turn_audio", self._on_user_turn_audio)

    @property
    def call_id(self) -> str:
        return self.report.call_id

    @property
    def stats(self) -> PublisherStats:
        return self.publisher.stats

    def tee_filter(self, audio_in_filter: BaseAudioFilter) -> BaseAudioFilter:
        """Wraps ``TransportParams.audio_in_filter`` so the call's audio before it is reported too
        (``full_pre_rnnoise``); the filtered audio still goes on unchanged."""
        self.report.pipeline.noise_suppression_enabled = True
        self.report.pipeline.rnnoise_enabled = "rnnoise" in type(audio_in_filter).__name__.lower()
        return _TeeFilter(audio_in_filter, self)

    def mark_transfer(self, target: str) -> None:
        """Records a transfer (Pipecat emits no event for it)."""
        self.report.mark_transfer(target)

    async def finish(self, timeout: float = 10.0, *, close_reason: str | None = None) -> bool:
        """Sends the final report now (once) and waits at most ``timeout`` s for it to be published.
        Returns within ``timeout`` even when Redis is unreachable; ``True`` when it was published."""
        if close_reason is not None:
            self.report.end(close_reason=close_reason)
        return await self.tracker.finish(timeout)

    # -- audio --------------------------------------------------------------------------------------

    def _keep_pre_audio(self, audio: bytes) -> None:
        if self._pre_started is None:
            self._pre_started = time.time()
        self._pre.extend(audio)

    async def _on_recording_started(self, processor: Any) -> None:
        self._recording = True
        self._recording_stopped.clear()
        if self._recording_started is None:
            self._recording_started = time.time()

    async def _on_recording_stopped(self, processor: Any) -> None:
        self._recording = False
        self._recording_stopped.set()

    async def _on_track_audio(
        self, processor: Any, user: bytes, bot: bytes, sample_rate: int, channels: int
    ) -> None:
        self._post_rate = sample_rate
        self._post.extend(user)

    async def _on_user_turn_audio(self, processor: Any, data: Any) -> None:
        """Turn ``n`` (1-based, the turn tracker's count) is the call's ``n``-th user turn."""
        try:
            n = int(data.turn_number) - 1
            if 0 <= n < len(self._user_turns):
                index, turn = n, self._user_turns[n]
            elif self._user_turns:
                index, turn = len(self._user_turns) - 1, self._user_turns[-1]
            else:
                return
            if not data.audio:
                return
            self.report.add_segment(
                AudioSegment(
                    segment_id=f"stt_input-{index}",
                    segment_type="stt_input",
                    pcm=bytes(data.audio),
                    sample_rate=int(data.sample_rate),
                    channels=int(data.num_channels),
                    started_at=turn.started_at,
                    turn=turn,
                )
            )
        except Exception:
            log.exception("call-insights: could not keep a user turn's audio")

    async def _before_final(self, budget: float) -> None:
        """Waits for the recording to stop, gives pending tool calls a turn, adds the audio."""
        if self._recording:
            try:
                await asyncio.wait_for(self._recording_stopped.wait(), timeout=min(budget, 3.0))
            except asyncio.TimeoutError:
                pass
        if self._tools_done and self._assistant is None:
            last = next((t for t in reversed(self.report.turns) if t.role == "assistant"), None)
            if last is not None:
                last.tool_calls = (last.tool_calls or []) + self._tools_done
                self._tools_done = []
        if self._post:
            self.report.add_segment(
                AudioSegment(
                    "full_post_rnnoise",
                    "full_post_rnnoise",
                    bytes(self._post),
                    self._post_rate,
                    started_at=self._recording_started,
                )
            )
        if self._pre:
            self.report.add_segment(
                AudioSegment(
                    "full_pre_rnnoise",
                    "full_pre_rnnoise",
                    bytes(self._pre),
                    self._pre_rate,
                    started_at=self._pre_started,
                )
            )

    # -- frames -------------------------------------------------------------------------------------

    async def on_push_frame(self, data: FramePushed) -> None:
        try:
            self._on_frame(data.frame, time.time())
        except Exception:
            log.exception("call-insights: could not map a %s", type(data.frame).__name__)

    def _open_user(self, at: float) -> Turn:
        if self._user is None:
            self._user = self.report.add_turn(Turn(role="user", content="", started_at=at, interrupted=False))
            self._user_turns.append(self._user)
            self._last_user = self._user
        return self._user

    def _open_assistant(self, at: float | None) -> Turn:
        if self._assistant is None:
            self._assistant = self.report.add_turn(
                Turn(
                    role="assistant",
                    content="",
                    started_at=at,
                    interrupted=False,
                    tool_calls=self._tools_done or None,
                )
            )
            self._tools_done = []
            self._llm_text, self._tts_text = [], []
        return self._assistant

    def _close_assistant(self, at: float) -> None:
        a = self._assistant
        if a is None:
            return
        a.ended_at = at
        if self._llm_ttft is not None and a.llm_ttft is None:
            a.llm_ttft = self._llm_ttft
        if self._tts_ttfb is not None and a.tts_ttfb is None:
            a.tts_ttfb = self._tts_ttfb
        self._llm_ttft = self._tts_ttfb = None
        self._assistant = None
        self.tracker.turn_completed()

    def _on_frame(self, f: Any, now: float) -> None:
        r = self.report
        if isinstance(f, StartFrame):
            if not self._pipeline_started:
                # The call starts with the pipeline, not when the observer was made.
                self._pipeline_started = True
                r.started_at = now
        elif isinstance(f, VADUserStartedSpeakingFrame):
            at = now - max(0.0, float(f.start_secs or 0.0))
            self._open_user(at)
            r.add_event("user_started_speaking", at, turn=self._user)
        elif isinstance(f, VADUserStoppedSpeakingFrame):
            at = now - max(0.0, float(f.stop_secs or 0.0))
            u = self._user or self._last_user
            self._speech_end = at
            data = None
            if u is not None:
                u.ended_at = at
                if u.started_at is not None:
                    data = {"speech_duration_ms": round((at - u.started_at) * 1000)}
            r.add_event("user_stopped_speaking", at, turn=u, data=data)
        elif isinstance(f, UserStartedSpeakingFrame):
            self._open_user(now)
        elif isinstance(f, UserStoppedSpeakingFrame):
            u = self._user
            if u is not None:
                if u.ended_at is None:
                    u.ended_at = now
                    self._speech_end = now
                u.end_of_turn_delay = max(0.0, now - u.ended_at)
                self._user = None
                self.tracker.turn_completed()
        elif isinstance(f, TranscriptionFrame):
            u = self._user or self._last_user or self._open_user(now)
            text = (f.text or "").strip()
            if text:
                u.content = f"{u.content} {text}".strip()
            if u.transcription_delay is None and u.ended_at is not None and now >= u.ended_at:
                u.transcription_delay = now - u.ended_at
            said: dict[str, Any] = {"final": True, "transcript": text}
            if f.language is not None:
                said["language"] = str(getattr(f.language, "value", f.language))
            r.add_event("user_transcript", now, turn=u, data=said)
        elif isinstance(f, LLMFullResponseStartFrame):
            self._open_assistant(None)
        elif isinstance(f, LLMTextFrame) and not isinstance(f, TTSTextFrame):
            a = self._open_assistant(None)
            self._llm_text.append(f.text)
            if not self._tts_text:
                a.content = "".join(self._llm_text).strip()
        elif isinstance(f, TTSTextFrame):
            a = self._open_assistant(None)
            self._tts_text.append(f.text)
            a.content = " ".join(t.strip() for t in self._tts_text if t.strip())
        elif isinstance(f, BotStartedSpeakingFrame):
            a = self._open_assistant(now)
            self._bot_speaking = True
            if a.started_at is None:
                a.started_at = now
            if a.e2e_latency is None and self._speech_end is not None and now >= self._speech_end:
                a.e2e_latency = now - self._speech_end
                self._speech_end = None
            r.add_event("agent_started_speaking", now, turn=a)
        elif isinstance(f, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            r.add_event("agent_stopped_speaking", now, turn=self._assistant)
            self._close_assistant(now)
        elif isinstance(f, InterruptionFrame):
            if self._bot_speaking and self._assistant is not None:
                self._assistant.interrupted = True
                r.add_event("interruption", now, turn=self._assistant)
        elif isinstance(f, MetricsFrame):
            for d in f.data:
                if not isinstance(d, TTFBMetricsData):
                    continue
                if d.processor == self._stt_name:
                    u = self._user or self._last_user
                    if u is not None:
                        u.transcription_delay = float(d.value)
                elif d.processor == self._llm_name:
                    if self._assistant is not None and self._assistant.llm_ttft is None:
                        self._assistant.llm_ttft = float(d.value)
                    else:
                        self._llm_ttft = float(d.value)
                elif d.processor == self._tts_name:
                    if self._assistant is not None and self._assistant.tts_ttfb is None:
                        self._assistant.tts_ttfb = float(d.value)
                    else:
                        self._tts_ttfb = float(d.value)
        elif isinstance(f, FunctionCallInProgressFrame):
            self._tools_started[f.tool_call_id] = (f.function_name, f.arguments, now)
        elif isinstance(f, FunctionCallResultFrame):
            name, args, started = self._tools_started.pop(f.tool_call_id, (f.function_name, f.arguments, now))
            duration = round((now - started) * 1000.0, 1)
            error = f.error
            call = ToolCall(
                name=name,
                arguments=args,
                result=None if error else f.result,
                error=error,
                duration_ms=duration,
            )
            if self._assistant is not None:
                self._assistant.tool_calls = (self._assistant.tool_calls or []) + [call]
            else:
                self._tools_done.append(call)
            r.add_event("tool_call", started, data={"name": name, "duration_ms": duration, "error": error})
        elif isinstance(f, ErrorFrame):
            source = getattr(getattr(f, "processor", None), "name", None)
            kind = (
                {self._stt_name: "stt_error", self._llm_name: "llm_error", self._tts_name: "tts_error"}.get(
                    source, "error"
                )
                if source
                else "error"
            )
            r.add_event(kind, now, data={"message": str(f.error)[:500], "recoverable": not f.fatal})
            if f.fatal:
                r.error = r.error or str(f.error)[:500]
        elif isinstance(f, (EndFrame, CancelFrame)):
            reason = "error" if r.error else END_REASONS["end" if isinstance(f, EndFrame) else "cancel"]
            if r.transferred_to:
                reason = "transfer"
            if self._assistant is not None:
                self._close_assistant(now)
            r.end(close_reason=reason, at=now)
            if self._end_task is None:
                self._end_task = asyncio.get_running_loop().create_task(self.tracker.finish(10.0))

"""A watcher around a LiveKit VAD: passes every frame and event through unchanged, and tells the
call about near misses (speech-like audio that stayed below the activation threshold) and about the
audio of each run of speech (what the session's STT is given for the turn)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

from livekit import rtc
from livekit.agents.utils import aio
from livekit.agents.vad import VAD, VADEvent, VADEventType, VADStream

#: Probability above which sub-threshold audio counts as speech-like.
NEAR_MISS_FLOOR = 0.2
#: Shortest near miss worth reporting, seconds.
NEAR_MISS_MIN = 0.2


class _Call(Protocol):
    def on_near_miss(self, at: float, max_probability: float, duration: float) -> None: ...

    def on_speech_run(self, started_at: float, pcm: bytes, sample_rate: int) -> None: ...


class WatchedVAD(VAD):
    _call_insights_watch = True

    def __init__(self, inner: VAD, call: _Call) -> None:
        super().__init__(capabilities=inner.capabilities)
        self._inner = inner
        self._call = call
        self._label = getattr(inner, "_label", self._label)
        threshold = getattr(getattr(inner, "_opts", None), "activation_threshold", None)
        self.threshold = float(threshold) if isinstance(threshold, (int, float)) else 0.5

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def provider(self) -> str:
        return self._inner.provider

    def __getattr__(self, name: str) -> Any:
        # Everything else (options, update_options, …) is the wrapped VAD's.
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def stream(self) -> VADStream:
        return _WatchedStream(self, self._inner.stream())


class _WatchedStream(VADStream):
    def __init__(self, vad: WatchedVAD, inner: VADStream) -> None:
        self._inner = inner
        self._watch = vad
        self._speaking = False
        self._miss_started: float | None = None
        self._miss_max = 0.0
        super().__init__(vad)

    async def _forward_input(self) -> None:
        async for item in self._input_ch:
            if isinstance(item, rtc.AudioFrame):
                self._inner.push_frame(item)
            else:
                self._inner.flush()
        self._inner.end_input()

    async def _main_task(self) -> None:
        feeder = asyncio.create_task(self._forward_input())
        try:
            async for ev in self._inner:
                try:
                    self._observe(ev)
                except Exception:  # watching must never break the VAD
                    pass
                self._event_ch.send_nowait(ev)
        finally:
            await aio.cancel_and_wait(feeder)
            with contextlib.suppress(Exception):
                await self._inner.aclose()

    def _observe(self, ev: VADEvent) -> None:
        call = self._watch._call
        now = time.time()
        if ev.type == VADEventType.START_OF_SPEECH:
            self._speaking = True
            self._miss_started = None
        elif ev.type == VADEventType.END_OF_SPEECH:
            self._speaking = False
            if ev.frames:
                frame = rtc.combine_audio_frames(ev.frames)
                if frame.num_channels == 1:
                    started = now - ev.silence_duration - ev.speech_duration
                    call.on_speech_run(started, bytes(frame.data), frame.sample_rate)
        elif ev.type == VADEventType.INFERENCE_DONE and not self._speaking:
            p = float(ev.probability)
            if NEAR_MISS_FLOOR <= p < self._watch.threshold:
                if self._miss_started is None:
                    self._miss_started, self._miss_max = now, p
                self._miss_max = max(self._miss_max, p)
            elif self._miss_started is not None:
                duration = now - self._miss_started
                if duration >= NEAR_MISS_MIN:
                    call.on_near_miss(self._miss_started, self._miss_max, duration)
                self._miss_started = None

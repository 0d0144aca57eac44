"""Our own fakes of LiveKit Agents' pipeline parts, for running real AgentSessions offline: an LLM
answering from a script (with a chosen time to first token and tool calls), a VAD and an STT that
follow scripted user speech, a TTS producing tone audio, and audio input/output."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, stt, tts, utils
from livekit.agents.llm import (
    LLM,
    ChatChunk,
    ChatContext,
    ChoiceDelta,
    FunctionToolCall,
    LLMStream,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.vad import VAD, VADCapabilities, VADEvent, VADEventType, VADStream
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities


@dataclass
class Reply:
    """What the fake LLM answers to the last user text (or tool output)."""

    content: str
    ttft: float = 0.05
    tool_calls: list[FunctionToolCall] = field(default_factory=list)


class ScriptedLLM(LLM):
    def __init__(self, replies: dict[str, Reply]) -> None:
        super().__init__()
        self.replies = replies

    @property
    def model(self) -> str:
        return "scripted-1"

    @property
    def provider(self) -> str:
        return "fake-llm"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Any = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> LLMStream:
        return _LLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _LLMStream(LLMStream):
    async def _run(self) -> None:
        llm = self._llm
        assert isinstance(llm, ScriptedLLM)
        last = self.chat_ctx.items[-1]
        key = last.text_content if last.type == "message" else getattr(last, "output", "")
        reply = llm.replies.get(key or "")
        if reply is None:
            return
        await asyncio.sleep(reply.ttft)
        for i in range(0, len(reply.content), 8):
            self._event_ch.send_nowait(
                ChatChunk(id="c", delta=ChoiceDelta(role="assistant", content=reply.content[i : i + 8]))
            )
        if reply.tool_calls:
            self._event_ch.send_nowait(
                ChatChunk(
                    id="c", delta=ChoiceDelta(role="assistant", content=None, tool_calls=reply.tool_calls)
                )
            )


@dataclass
class Speech:
    """The user speaking from ``start`` to ``end`` seconds after the audio input starts."""

    start: float
    end: float
    transcript: str


class ScriptedVAD(VAD):
    """Speech as scripted; ``murmurs`` are (start, end, probability) stretches below the threshold."""

    def __init__(
        self,
        speeches: list[Speech],
        silence: float = 0.3,
        murmurs: list[tuple[float, float, float]] | None = None,
    ) -> None:
        super().__init__(capabilities=VADCapabilities(update_interval=0.05))
        self.speeches = speeches
        self.silence = silence
        self.murmurs = murmurs or []

    @property
    def model(self) -> str:
        return "scripted-vad"

    @property
    def provider(self) -> str:
        return "fake-vad"

    def stream(self) -> VADStream:
        return _VADStream(self)


class _VADStream(VADStream):
    """Follows the script on the audio's own clock (the sum of the frames' durations)."""

    async def _main_task(self) -> None:
        vad = self._vad
        assert isinstance(vad, ScriptedVAD)
        t, idx, speaking, since_inference = 0.0, 0, False, 0.0
        frames: list[rtc.AudioFrame] = []

        def send(kind: VADEventType, s: Speech, with_frames: list[rtc.AudioFrame] | None = None) -> None:
            self._event_ch.send_nowait(
                VADEvent(
                    type=kind,
                    samples_index=int(t * 16000),
                    timestamp=t,
                    speech_duration=max(0.0, min(t, s.end) - s.start),
                    silence_duration=max(0.0, t - s.end),
                    frames=with_frames or [],
                    speaking=kind != VADEventType.END_OF_SPEECH,
                    probability=0.9,
                )
            )

        async for frame in self._input_ch:
            if not isinstance(frame, rtc.AudioFrame):
                continue
            t += frame.duration
            if not speaking:
                since_inference += frame.duration
                if since_inference >= 0.05:
                    since_inference = 0.0
                    p = next((m[2] for m in vad.murmurs if m[0] <= t < m[1]), 0.02)
                    self._event_ch.send_nowait(
                        VADEvent(
                            type=VADEventType.INFERENCE_DONE,
                            samples_index=int(t * 16000),
                            timestamp=t,
                            speech_duration=0.0,
                            silence_duration=0.0,
                            speaking=False,
                            probability=p,
                        )
                    )
            if idx >= len(vad.speeches):
                continue
            s = vad.speeches[idx]
            if not speaking and t >= s.start:
                speaking, frames = True, []
                send(VADEventType.START_OF_SPEECH, s)
            if speaking:
                frames.append(frame)
                since_inference += frame.duration
                if since_inference >= 0.05:
                    since_inference = 0.0
                    send(VADEventType.INFERENCE_DONE, s)
                if t >= s.end + vad.silence:
                    speaking = False
                    send(VADEventType.END_OF_SPEECH, s, frames)
                    idx += 1


class ScriptedSTT(stt.STT):
    """A batch STT (the session wraps it in its VAD adapter): one scripted transcript per utterance."""

    def __init__(self, speeches: list[Speech], delay: float = 0.1) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._texts = [s.transcript for s in speeches]
        self._delay = delay

    @property
    def model(self) -> str:
        return "scripted-stt"

    @property
    def provider(self) -> str:
        return "fake-stt"

    async def _recognize_impl(
        self,
        buffer: Any,
        *,
        language: Any = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        await asyncio.sleep(self._delay)
        text = self._texts.pop(0) if self._texts else ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=text, confidence=0.91)],
        )


class ToneTTS(tts.TTS):
    """0.3 s of a 440 Hz tone per sentence after ``ttfb`` seconds."""

    def __init__(self, ttfb: float = 0.05, seconds: float = 0.3) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=16000, num_channels=1)
        self.ttfb = ttfb
        self.seconds = seconds

    @property
    def model(self) -> str:
        return "tone-1"

    @property
    def provider(self) -> str:
        return "fake-tts"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _Chunked(tts=self, input_text=text, conn_options=conn_options)


class _Chunked(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        t = self._tts
        assert isinstance(t, ToneTTS)
        await asyncio.sleep(t.ttfb)
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=16000, num_channels=1, mime_type="audio/pcm"
        )
        n = int(16000 * t.seconds)
        pcm = bytearray()
        for i in range(n):
            v = int(8000 * math.sin(2 * math.pi * 440 * i / 16000))
            pcm += v.to_bytes(2, "little", signed=True)
        output_emitter.push(bytes(pcm))
        output_emitter.flush()


def tone_frame(seconds: float, speaking: bool, rate: int = 16000) -> rtc.AudioFrame:
    n = int(rate * seconds)
    if speaking:
        data = b"".join(
            int(6000 * math.sin(2 * math.pi * 220 * i / rate)).to_bytes(2, "little", signed=True)
            for i in range(n)
        )
    else:
        data = b"\x00\x00" * n
    return rtc.AudioFrame(data=data, sample_rate=rate, num_channels=1, samples_per_channel=n)


class PacedAudioInput(AudioInput):
    """Real-time microphone audio: 20 ms frames, a tone while the script has the user speaking."""

    def __init__(self, speeches: list[Speech], total: float) -> None:
        super().__init__(label="PacedAudioInput")
        self._speeches = speeches
        self._total = total
        self._t0: float | None = None
        self._sent = 0.0

    async def __anext__(self) -> rtc.AudioFrame:
        if self._t0 is None:
            self._t0 = time.perf_counter()
        if self._sent >= self._total:
            await asyncio.sleep(0.02)
            return tone_frame(0.02, False)
        ahead = self._sent - (time.perf_counter() - self._t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
        speaking = any(s.start <= self._sent < s.end for s in self._speeches)
        self._sent += 0.02
        return tone_frame(0.02, speaking)


class PlayoutAudioOutput(AudioOutput):
    """Plays captured frames out in real time and reports playback like a room output would."""

    def __init__(self) -> None:
        super().__init__(
            label="PlayoutAudioOutput",
            next_in_chain=None,
            sample_rate=16000,
            capabilities=AudioOutputCapabilities(pause=False),
        )
        self._pushed = 0.0
        self._started: float | None = None
        self._done: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._started is None:
            self._started = time.time()
            self.on_playback_started(created_at=self._started)
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._started is None:
            return
        pushed = self._pushed
        delay = max(0.0, pushed - (time.time() - self._started))

        def finished() -> None:
            self._pushed, self._started, self._done = 0.0, None, None
            self.on_playback_finished(playback_position=pushed, interrupted=False)

        self._done = asyncio.get_event_loop().call_later(delay, finished)

    def clear_buffer(self) -> None:
        if self._started is None:
            return
        played = min(self._pushed, time.time() - self._started)
        if self._done:
            self._done.cancel()
        self._pushed, self._started, self._done = 0.0, None, None
        self.on_playback_finished(playback_position=played, interrupted=True)

"""Pipecat offline: ``run_test`` drives the observer's own ``AudioBufferProcessor`` with scripted frames
(speaking, transcripts, metrics, tool calls, an interruption, an error, the end) and the observer
publishes the call to a stream on the real Redis."""

from __future__ import annotations

import io
import json
import math
import wave

import pytest

pytest.importorskip("pipecat")

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test

from call_insights.pipecat import CallInsightsObserver

from .conftest import read_entries

STT, LLM, TTS = "DeepgramSTTService#0", "OpenAILLMService#0", "CartesiaTTSService#0"


def tone(seconds: float, hz: float = 220.0, rate: int = 16000) -> bytes:
    n = int(rate * seconds)
    return b"".join(
        int(6000 * math.sin(2 * math.pi * hz * i / rate)).to_bytes(2, "little", signed=True) for i in range(n)
    )


def user_says(text: str, seconds: float, *, stt_ttfb: float = 0.15) -> list:
    frames: list = [VADUserStartedSpeakingFrame(start_secs=0.2), UserStartedSpeakingFrame()]
    for _ in range(int(seconds / 0.1)):
        frames += [InputAudioRawFrame(audio=tone(0.1), sample_rate=16000, num_channels=1), SleepFrame(0.1)]
    frames += [
        VADUserStoppedSpeakingFrame(stop_secs=0.2),
        SleepFrame(0.1),
        TranscriptionFrame(text=text, user_id="caller", timestamp="2026-12-02T10:00:00Z"),
        MetricsFrame(data=[TTFBMetricsData(processor=STT, value=stt_ttfb)]),
        UserStoppedSpeakingFrame(),
    ]
    return frames


def bot_says(
    text: str,
    seconds: float,
    *,
    llm_ttft: float,
    tts_ttfb: float = 0.12,
    tool: bool = False,
    interrupted: bool = False,
) -> list:
    frames: list = [
        LLMFullResponseStartFrame(),
        SleepFrame(llm_ttft),
        MetricsFrame(data=[TTFBMetricsData(processor=LLM, value=llm_ttft)]),
    ]
    if tool:
        frames += [
            FunctionCallInProgressFrame(
                function_name="lookup_order", tool_call_id="call-1", arguments={"order": "A-17"}
            ),
            SleepFrame(0.15),
            FunctionCallResultFrame(
                function_name="lookup_order",
                tool_call_id="call-1",
                arguments={"order": "A-17"},
                result={"charged": 2},
            ),
        ]
    frames += [
        LLMTextFrame(text=text),
        SleepFrame(tts_ttfb),
        MetricsFrame(data=[TTFBMetricsData(processor=TTS, value=tts_ttfb)]),
        BotStartedSpeakingFrame(),
        TTSTextFrame(text=text, text_type="sentence"),
    ]
    for _ in range(int(seconds / 0.1)):
        frames += [
            OutputAudioRawFrame(audio=tone(0.1, 440), sample_rate=16000, num_channels=1),
            SleepFrame(0.1),
        ]
    if interrupted:
        frames += [
            VADUserStartedSpeakingFrame(start_secs=0.2),
            InterruptionFrame(),
            UserStartedSpeakingFrame(),
        ]
    frames += [BotStoppedSpeakingFrame()]
    return frames


async def test_scripted_frames_become_turns_latencies_tool_calls_and_audio(redis_url, stream, validator):
    observer = CallInsightsObserver(
        tenant_id="acme",
        agent_id="support-bot",
        call_id="pc-call-1",
        redis_url=redis_url,
        stream=stream,
        stt=STT,
        llm=LLM,
        tts=TTS,
        vad_threshold=0.6,
        partial_interval=0.01,
    )
    frames = [
        SleepFrame(0.3),
        *user_says("I was charged twice for the same order", 0.8),
        *bot_says("Sorry about that, I see two charges.", 0.6, llm_ttft=0.4, tool=True),
        *user_says("can you refund one", 0.5),
        *bot_says("Yes, I have refunded one of them and", 0.5, llm_ttft=0.2, interrupted=True),
        InputAudioRawFrame(audio=tone(0.1), sample_rate=16000, num_channels=1),
        SleepFrame(0.1),
        VADUserStoppedSpeakingFrame(stop_secs=0.2),
        TranscriptionFrame(text="thanks", user_id="caller", timestamp="2026-12-02T10:00:09Z"),
        UserStoppedSpeakingFrame(),
        ErrorFrame(error="cartesia: websocket closed", fatal=False),
        SleepFrame(0.1),
    ]
    await run_test(
        observer.audio,
        frames_to_send=frames,
        observers=[observer],
        pipeline_params=PipelineParams(enable_metrics=True),
    )
    assert await observer.finish(timeout=5)
    entries = await read_entries(stream)
    for e in entries:
        assert not list(validator.iter_errors(e.payload))
    assert [e.payload["report_type"] for e in entries][-1] == "final"
    assert len(entries) >= 3, "partials after completed turns"
    seqs = [e.payload["seq"] for e in entries]
    assert seqs == list(range(len(entries))), seqs
    final = entries[-1].payload
    if __import__("os").environ.get("DUMP"):
        print(final)
    assert final["call_id"] == "pc-call-1" and final["agent_id"] == "support-bot"
    assert final["pipeline"]["vad"]["threshold"] == 0.6
    turns = [(t["role"], t["content"]) for t in final["turns"]]
    assert turns == [
        ("user", "I was charged twice for the same order"),
        ("assistant", "Sorry about that, I see two charges."),
        ("user", "can you refund one"),
        ("assistant", "Yes, I have refunded one of them and"),
        ("user", "thanks"),
    ], turns
    u0, a0, _u1, a1, _u2 = final["turns"]
    assert u0["transcription_delay_ms"] == 150.0 and u0["end_of_turn_delay_ms"] is not None
    assert u0["end_ms"] - u0["start_ms"] >= 700, u0
    assert a0["llm_ttft_ms"] == 400.0 and a0["tts_ttfb_ms"] == 120.0
    assert a0["e2e_latency_ms"] >= 400, a0
    [tool] = a0["tool_calls"]
    assert tool["name"] == "lookup_order" and tool["result"] == {"charged": 2} and tool["duration_ms"] >= 100
    assert a1["interrupted"] is True and a0["interrupted"] is False
    kinds = [e["type"] for e in final["events"]]
    for k in (
        "user_started_speaking",
        "user_stopped_speaking",
        "user_transcript",
        "agent_started_speaking",
        "agent_stopped_speaking",
        "interruption",
        "tool_call",
        "error",
    ):
        assert k in kinds, (k, kinds)
    assert final["outcome"]["close_reason"] == "agent_hangup"
    segs = {s["segment_id"]: s for s in final["audio_segments"]}
    assert segs["full_post_rnnoise"]["segment_type"] == "full_post_rnnoise"
    with wave.open(io.BytesIO(entries[-1].audio("full_post_rnnoise"))) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 16000)
        assert w.getnframes() / 16000 > 2.0
    clips = [s for s in final["audio_segments"] if s["segment_type"] == "stt_input"]
    assert clips, final["audio_segments"]
    for c in clips:
        assert final["turns"][c["turn_index"]]["role"] == "user"
        assert c["duration_ms"] > 0


async def test_end_to_end_the_service_shows_turns_latency_audio_and_a_slow_llm(service):
    observer = CallInsightsObserver(
        tenant_id="acme",
        agent_id="support-bot",
        call_id="pc-e2e-1",
        stream=service.stream,
        stt=STT,
        llm=LLM,
        tts=TTS,
    )
    frames = [
        SleepFrame(0.3),
        *user_says("where is my order", 0.6),
        *bot_says("It ships tomorrow.", 0.5, llm_ttft=2.5),
        *user_says("thank you", 0.4),
        *bot_says("You're welcome.", 0.3, llm_ttft=0.2),
    ]
    await run_test(
        observer.audio,
        frames_to_send=frames,
        observers=[observer],
        pipeline_params=PipelineParams(enable_metrics=True),
    )
    assert await observer.finish(timeout=10)
    stored = service.session("pc-e2e-1")
    sid = stored["id"]
    assert stored["agent_id"] == "support-bot" and stored["total_user_turns"] == 2
    _, conv = service.get(f"/api/v1/sessions/{sid}/conversation")
    assert [t["content"] for t in conv["turns"]] == [
        "where is my order",
        "It ships tomorrow.",
        "thank you",
        "You're welcome.",
    ]
    slow = conv["turns"][1]
    assert str(2500.0) in json.dumps(slow), slow
    _, diag = service.get(f"/api/v1/sessions/{sid}/diagnosis")
    assert "slow_llm_ttft" in [i["code"] for i in diag["issues"]], diag
    for seg in ("full_post_rnnoise", "stt_input-0", "stt_input-1"):
        code, body = service.get(f"/api/v1/sessions/{sid}/audio/{seg}")
        assert code == 200 and body["status"] == "stored", (seg, code, body)


async def test_the_audio_before_the_input_filter_is_kept_beside_the_filtered_track(redis_url, stream):
    from pipecat.audio.filters.base_audio_filter import BaseAudioFilter

    class Halve(BaseAudioFilter):
        async def start(self, sample_rate: int) -> None:
            self.rate = sample_rate

        async def stop(self) -> None:
            pass

        async def process_frame(self, frame: object) -> None:
            pass

        async def filter(self, audio: bytes) -> bytes:
            import array

            a = array.array("h", audio)
            return array.array("h", (s // 2 for s in a)).tobytes()

    observer = CallInsightsObserver(tenant_id="acme", call_id="pc-tee-1", redis_url=redis_url, stream=stream)
    tee = observer.tee_filter(Halve())
    await tee.start(16000)
    loud = tone(0.5)
    quiet = await tee.filter(loud)
    assert quiet != loud and len(quiet) == len(loud), "the wrapped filter still filters"
    await tee.stop()
    assert await observer.finish(timeout=5)
    [final] = [e for e in await read_entries(stream) if e.payload["report_type"] == "final"]
    vad = final.payload["pipeline"]["vad"]
    assert vad["noise_suppression_enabled"] is True and vad["rnnoise_enabled"] is False
    [pre] = [s for s in final.payload["audio_segments"] if s["segment_type"] == "full_pre_rnnoise"]
    with wave.open(io.BytesIO(final.audio(pre["segment_id"]))) as w:
        frames = w.readframes(w.getnframes())
    assert frames == loud, "the unfiltered audio, byte for byte (16 kHz in, 16 kHz out)"

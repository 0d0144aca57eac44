"""LiveKit Agents offline: real AgentSessions in ``fake_job_context()`` with our own fake LLM (text
turns through ``session.run``) and a full voice pipeline (fake VAD/STT/TTS, real-time audio in and
out, the session's own recorder), reported to a stream on the real Redis."""

from __future__ import annotations

import asyncio
import io
import wave

import pytest

pytest.importorskip("livekit.agents")

from livekit.agents import Agent, AgentSession, function_tool
from livekit.agents.llm import FunctionToolCall
from livekit.agents.testing import fake_job_context

from call_insights.livekit import CallInsights

from .conftest import read_entries
from .lk_fakes import (
    PacedAudioInput,
    PlayoutAudioOutput,
    Reply,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedVAD,
    Speech,
    ToneTTS,
)


class Booking(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You book tables.")

    @function_tool
    async def lookup_slot(self, time: str) -> str:
        """Looks up whether a slot is free."""
        await asyncio.sleep(0.12)
        return "free"


async def test_text_turns_become_partials_and_a_schema_valid_final(redis_url, stream, validator):
    insights = CallInsights(
        tenant_id="acme", agent_id="booking-bot", redis_url=redis_url, stream=stream, partial_interval=0.01
    )
    llm = ScriptedLLM(
        {
            "I'd like a table for two at seven": Reply(
                "",
                ttft=0.05,
                tool_calls=[
                    FunctionToolCall(call_id="t1", name="lookup_slot", arguments='{"time": "19:00"}')
                ],
            ),
            "free": Reply("Seven works, I have booked it.", ttft=0.08),
            "thanks, bye": Reply("Goodbye!", ttft=0.03),
        }
    )
    with fake_job_context() as ctx:
        session = AgentSession(llm=llm)
        call = insights.attach(session, ctx)
        await session.start(Booking())
        await session.run(user_input="I'd like a table for two at seven")
        await session.run(user_input="thanks, bye")
        await asyncio.sleep(0.05)
        await session.aclose()
        assert await insights.finish(timeout=5)
        assert await insights.finish(timeout=5), "finish() is idempotent"
    entries = await read_entries(stream)
    assert len(entries) >= 2
    seqs = [e.payload["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert [e.payload["report_type"] for e in entries][-1] == "final"
    assert all(e.payload["report_type"] == "partial" for e in entries[:-1])
    for e in entries:
        errors = sorted(validator.iter_errors(e.payload), key=str)
        assert not errors, errors
    final = entries[-1].payload
    assert final["call_id"] == call.call_id == f"{ctx.job.room.sid}:{ctx.job.id}"
    assert final["room_id"] == ctx.job.room.sid and final["job_id"] == ctx.job.id
    assert (final["tenant_id"], final["agent_id"]) == ("acme", "booking-bot")
    assert final["pipeline"]["llm"] == {"provider": "fake-llm", "model": "scripted-1"}
    roles = [(t["role"], t["content"]) for t in final["turns"]]
    assert roles == [
        ("user", "I'd like a table for two at seven"),
        ("assistant", "Seven works, I have booked it."),
        ("user", "thanks, bye"),
        ("assistant", "Goodbye!"),
    ], roles
    booked = final["turns"][1]
    assert booked["llm_ttft_ms"] is not None and booked["llm_ttft_ms"] >= 70, booked
    [tool] = booked["tool_calls"]
    assert tool["name"] == "lookup_slot" and tool["arguments"] == {"time": "19:00"}
    assert tool["result"] == "free" and tool["error"] is None
    assert tool["duration_ms"] >= 100, tool
    assert [e["type"] for e in final["events"]].count("tool_call") == 1
    assert final["outcome"]["close_reason"] == "agent_hangup"
    assert final["ended_at"] is not None and final["duration_seconds"] > 0


async def test_a_voice_call_carries_every_per_turn_metric_and_the_recording(redis_url, stream, validator):
    speeches = [
        Speech(0.4, 1.4, "I'd like a table for two at seven"),
        Speech(3.6, 4.3, "thanks, bye"),
    ]
    insights = CallInsights(
        tenant_id="acme", agent_id="booking-bot", redis_url=redis_url, stream=stream, partial_interval=0.5
    )
    llm = ScriptedLLM(
        {
            "I'd like a table for two at seven": Reply("Seven works, I have booked it.", ttft=0.3),
            "thanks, bye": Reply("Goodbye!", ttft=0.05),
        }
    )
    with fake_job_context() as ctx:
        session = AgentSession(
            vad=ScriptedVAD(speeches, murmurs=[(2.8, 3.3, 0.35)]),
            stt=ScriptedSTT(speeches),
            llm=llm,
            tts=ToneTTS(ttfb=0.08),
            turn_handling={
                "turn_detection": None,
                "endpointing": {"min_delay": 0.2, "max_delay": 2.0},
                "preemptive_generation": {"enabled": False},
            },
            aec_warmup_duration=None,
        )
        session.input.audio = PacedAudioInput(speeches, total=6.0)
        session.output.audio = PlayoutAudioOutput()
        insights.attach(session, ctx)
        await session.start(Agent(instructions="You book tables."), record={"audio": True})
        await asyncio.sleep(6.2)
        await session.aclose()
        assert await insights.finish(timeout=10)
    entries = await read_entries(stream)
    for e in entries:
        assert not list(validator.iter_errors(e.payload))
    assert any(e.payload["report_type"] == "partial" for e in entries), "partials while the call ran"
    final = entries[-1].payload
    assert final["report_type"] == "final"
    assert final["pipeline"]["stt"] == {"provider": "fake-stt", "model": "scripted-stt"}
    assert final["pipeline"]["tts"] == {"provider": "fake-tts", "model": "tone-1"}
    users = [t for t in final["turns"] if t["role"] == "user"]
    agents = [t for t in final["turns"] if t["role"] == "assistant"]
    assert [u["content"] for u in users] == ["I'd like a table for two at seven", "thanks, bye"]
    assert [a["content"] for a in agents] == ["Seven works, I have booked it.", "Goodbye!"]
    for u in users:
        assert u["stt_confidence"] == pytest.approx(0.91), u
        assert u["transcription_delay_ms"] is not None and u["end_of_turn_delay_ms"] is not None, u
        assert u["start_ms"] is not None and u["end_ms"] is not None and u["end_ms"] > u["start_ms"], u
    first = users[0]
    assert abs(first["start_ms"] - 400) < 400 and abs(first["end_ms"] - 1400) < 400, first
    for a in agents:
        for k in ("llm_ttft_ms", "tts_ttfb_ms", "e2e_latency_ms", "start_ms", "end_ms"):
            assert a[k] is not None, (k, a)
    assert agents[0]["llm_ttft_ms"] >= 250, agents[0]
    assert agents[0]["e2e_latency_ms"] >= agents[0]["llm_ttft_ms"], agents[0]
    kinds = [e["type"] for e in final["events"]]
    for k in (
        "user_started_speaking",
        "user_stopped_speaking",
        "agent_started_speaking",
        "agent_stopped_speaking",
        "user_transcript",
    ):
        assert k in kinds, (k, kinds)
    assert [e["at_ms"] for e in final["events"]] == sorted(e["at_ms"] for e in final["events"])
    misses = [e for e in final["events"] if e["type"] == "near_miss"]
    assert len(misses) == 1, misses
    [miss] = misses
    assert miss["data"]["max_probability"] == 0.35 and 300 <= miss["data"]["duration_ms"] <= 800, miss
    assert 2500 < miss["at_ms"] < 3600, miss
    segs = {s["segment_id"]: s for s in final["audio_segments"]}
    assert set(segs) == {"full_post_rnnoise", "stt_input-0", "stt_input-1"}, segs
    for i, user_index in enumerate(t["index"] for t in users):
        clip = segs[f"stt_input-{i}"]
        assert clip["segment_type"] == "stt_input" and clip["turn_index"] == user_index, clip
        with wave.open(io.BytesIO(entries[-1].audio(f"stt_input-{i}"))) as w:
            assert w.getframerate() == 16000 and w.getnframes() > 0.5 * 16000
    seg = segs["full_post_rnnoise"]
    assert seg["turn_index"] is None
    wav = entries[-1].audio("full_post_rnnoise")
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        seconds = w.getnframes() / 16000
    assert 5.5 < seconds <= final["duration_seconds"] + 0.5, (seconds, final["duration_seconds"])
    if __import__("os").environ.get("DUMP"):
        print(final)
    assert abs(seg["duration_ms"] - seconds * 1000) < 50


async def test_end_to_end_the_service_shows_the_call_and_diagnoses_a_slow_llm(service):
    insights = CallInsights(tenant_id="acme", agent_id="booking-bot", stream=service.stream)
    llm = ScriptedLLM(
        {
            "is there a table at nine": Reply("Let me check.", ttft=1.3),
            "great": Reply("See you then!", ttft=0.05),
        }
    )
    with fake_job_context() as ctx:
        session = AgentSession(llm=llm)
        call = insights.attach(session, ctx)
        await session.start(Booking())
        await session.run(user_input="is there a table at nine")
        await session.run(user_input="great")
        await session.aclose()
        assert await insights.finish(timeout=10)
    stored = service.session(call.call_id)
    sid = stored["id"]
    _, conv = service.get(f"/api/v1/sessions/{sid}/conversation")
    assert [t["content"] for t in conv["turns"]] == [
        "is there a table at nine",
        "Let me check.",
        "great",
        "See you then!",
    ]
    _, diag = service.get(f"/api/v1/sessions/{sid}/diagnosis")
    codes = [i["code"] for i in diag["issues"]]
    assert "slow_llm_ttft" in codes, diag
    [slow] = [i for i in diag["issues"] if i["code"] == "slow_llm_ttft"]
    assert slow["turn_index"] == 1

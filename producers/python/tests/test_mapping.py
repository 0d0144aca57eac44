"""Pure mapping: reports built from objects directly are schema-valid and, rebuilt from the contract's
own example, say what the example says."""

from __future__ import annotations

import json
from datetime import datetime

from call_insights import AudioSegment, CallReport, ToolCall, Turn

from .conftest import contract_dir


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_contracts_final_example_rebuilt_from_objects(validator):
    ex = json.loads((contract_dir() / "examples" / "final-basic.json").read_text())
    start = epoch(ex["started_at"])
    r = CallReport(
        call_id=ex["call_id"],
        tenant_id=ex["tenant_id"],
        agent_id=ex["agent_id"],
        started_at=start,
        room_id=ex["room_id"],
        job_id=ex["job_id"],
        channel_type=ex["channel_type"],
    )
    p = ex["pipeline"]
    r.pipeline.stt.provider, r.pipeline.stt.model = p["stt"]["provider"], p["stt"]["model"]
    r.pipeline.llm.provider, r.pipeline.llm.model = p["llm"]["provider"], p["llm"]["model"]
    r.pipeline.tts.provider, r.pipeline.tts.model = p["tts"]["provider"], p["tts"]["model"]
    r.pipeline.vad_threshold = p["vad"]["threshold"]
    r.pipeline.noise_suppression_enabled = p["vad"]["noise_suppression_enabled"]
    r.pipeline.rnnoise_enabled = p["vad"]["rnnoise_enabled"]
    s = lambda ms: None if ms is None else ms / 1000.0  # noqa: E731
    turns = []
    for t in ex["turns"]:
        turns.append(
            r.add_turn(
                Turn(
                    role=t["role"],
                    content=t["content"],
                    started_at=start + t["start_ms"] / 1000,
                    ended_at=start + t["end_ms"] / 1000,
                    interrupted=t["interrupted"],
                    stt_confidence=t.get("stt_confidence"),
                    transcription_delay=s(t.get("transcription_delay_ms")),
                    end_of_turn_delay=s(t.get("end_of_turn_delay_ms")),
                    llm_ttft=s(t.get("llm_ttft_ms")),
                    tts_ttfb=s(t.get("tts_ttfb_ms")),
                    e2e_latency=s(t.get("e2e_latency_ms")),
                    tool_calls=[ToolCall(**c) for c in t["tool_calls"]] if t.get("tool_calls") else None,
                )
            )
        )
    for e in ex["events"]:
        r.add_event(
            e["type"],
            start + e["at_ms"] / 1000,
            turn=turns[e["turn_index"]] if e.get("turn_index") is not None else None,
            data=e.get("data"),
        )
    r.end(close_reason=ex["outcome"]["close_reason"], at=epoch(ex["ended_at"]))
    payload, audio = r.snapshot(ex["seq"], final=True)
    assert not list(validator.iter_errors(payload))
    assert audio == {}
    for key in (
        "schema_version",
        "report_type",
        "seq",
        "call_id",
        "room_id",
        "job_id",
        "tenant_id",
        "agent_id",
        "channel_type",
        "pipeline",
        "outcome",
    ):
        assert payload[key] == ex[key], key
    assert abs(payload["duration_seconds"] - ex["duration_seconds"]) < 0.002
    assert len(payload["turns"]) == len(ex["turns"])
    for got, want in zip(payload["turns"], ex["turns"], strict=True):
        for k, v in want.items():
            if isinstance(v, float) and k != "stt_confidence":
                assert abs(got[k] - v) < 0.06, (k, got, want)
            elif k.endswith("_ms") and isinstance(v, int):
                assert abs(got[k] - v) <= 1, (k, got, want)
            else:
                assert got[k] == v, (k, got, want)
    assert [(e["seq"], e["type"], e["at_ms"]) for e in payload["events"]] == [
        (e["seq"], e["type"], e["at_ms"]) for e in ex["events"]
    ]


def test_out_of_order_events_are_numbered_by_time_and_audio_is_only_in_the_final(validator):
    r = CallReport(call_id="c-1", tenant_id="acme", started_at=1000.0)
    u = r.add_turn(Turn(role="user", content="hi", started_at=1001.0, ended_at=1002.0))
    r.add_event("user_stopped_speaking", 1002.0, turn=u)
    r.add_event("user_started_speaking", 1001.0, turn=u)
    r.add_segment(
        AudioSegment("stt_input-0", "stt_input", b"\x00\x00" * 16000, 16000, started_at=1001.0, turn=u)
    )
    partial, audio = r.snapshot(0, final=False)
    assert [e["type"] for e in partial["events"]] == ["user_started_speaking", "user_stopped_speaking"]
    assert [e["seq"] for e in partial["events"]] == [0, 1]
    assert partial["audio_segments"] == [] and audio == {}
    assert partial["ended_at"] is None and partial["outcome"]["close_reason"] is None
    final, audio = r.snapshot(1, final=True)
    assert not list(validator.iter_errors(final))
    [seg] = final["audio_segments"]
    assert seg == {
        "segment_id": "stt_input-0",
        "segment_type": "stt_input",
        "turn_index": 0,
        "offset_ms": 1000,
        "duration_ms": 1000,
        "audio": {"field": "audio:stt_input-0"},
    }
    assert set(audio) == {"audio:stt_input-0"}


def test_a_transfer_is_the_close_reason_and_unknown_values_stay_absent(validator):
    r = CallReport(call_id="c-2", tenant_id="acme", started_at=1000.0)
    r.add_turn(Turn(role="assistant", content="Let me transfer you.", llm_ttft=float("nan"), tts_ttfb=-1.0))
    r.mark_transfer("+15550100", at=1005.0)
    final, _ = r.snapshot(0, final=True)
    assert not list(validator.iter_errors(final))
    assert final["outcome"] == {"close_reason": "transfer", "was_transferred": True, "error": None}
    assert final["turns"][0]["llm_ttft_ms"] is None and final["turns"][0]["tts_ttfb_ms"] is None
    assert final["events"][0]["type"] == "transfer" and final["events"][0]["data"] == {"target": "+15550100"}

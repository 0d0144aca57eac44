"""One call's session report (contract v1), accumulated while the call runs.

Framework adapters (``call_insights.livekit``, ``call_insights.pipecat``) feed a :class:`CallReport`
with what their framework tells them; :meth:`CallReport.snapshot` turns it into the JSON payload the
service accepts (``shared/contract/session-report.schema.json``). Every report is a full snapshot of
the call so far: a later ``seq`` replaces what an earlier one said.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

Role = Literal["user", "assistant"]
SegmentType = Literal["stt_input", "full_pre_rnnoise", "full_post_rnnoise", "near_miss"]


def _ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds, rounded to 0.1 ms; ``None`` and negative values (unknown) stay ``None``."""
    if seconds is None or seconds != seconds or seconds < 0:  # NaN is unknown too
        return None
    return round(seconds * 1000.0, 1)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ToolCall:
    name: str
    arguments: Any = None
    result: Any = None
    error: str | None = None
    duration_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


@dataclass(eq=False)
class Turn:
    """One user or assistant turn. Times are epoch seconds (converted to offsets in the snapshot)."""

    role: Role
    content: str
    started_at: float | None = None
    ended_at: float | None = None
    interrupted: bool | None = None
    stt_confidence: float | None = None
    transcription_delay: float | None = None
    end_of_turn_delay: float | None = None
    llm_ttft: float | None = None
    tts_ttfb: float | None = None
    e2e_latency: float | None = None
    tool_calls: list[ToolCall] | None = None


@dataclass(eq=False)
class Event:
    type: str
    at: float
    """Epoch seconds."""
    turn: Turn | None = None
    data: dict[str, Any] | None = None


@dataclass
class AudioSegment:
    """Audio of the call as 16-bit PCM (mono, interleaved when ``channels`` > 1) at ``sample_rate``."""

    segment_id: str
    segment_type: SegmentType
    pcm: bytes
    sample_rate: int
    channels: int = 1
    started_at: float | None = None
    """Epoch seconds of the first sample; ``None`` means the start of the call."""
    turn: Turn | None = None


@dataclass
class Component:
    provider: str | None = None
    model: str | None = None

    def to_json(self) -> dict[str, Any] | None:
        if self.provider is None and self.model is None:
            return None
        return {"provider": self.provider, "model": self.model}


@dataclass
class Pipeline:
    stt: Component = field(default_factory=Component)
    llm: Component = field(default_factory=Component)
    tts: Component = field(default_factory=Component)
    vad_threshold: float | None = None
    noise_suppression_enabled: bool | None = None
    rnnoise_enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("stt", "llm", "tts"):
            c = getattr(self, name).to_json()
            if c is not None:
                out[name] = c
        out["vad"] = {
            "threshold": self.vad_threshold,
            "noise_suppression_enabled": self.noise_suppression_enabled,
            "rnnoise_enabled": self.rnnoise_enabled,
        }
        return out


class CallReport:
    """What is known of one call. Not thread-safe: feed it from the call's event loop."""

    def __init__(
        self,
        *,
        call_id: str,
        tenant_id: str,
        agent_id: str | None = None,
        started_at: float | None = None,
        room_id: str | None = None,
        job_id: str | None = None,
        channel_type: str | None = None,
    ) -> None:
        if not call_id or len(call_id) > 128:
            raise ValueError("call_id must be 1 to 128 characters")
        if not tenant_id or len(tenant_id) > 64:
            raise ValueError("tenant_id must be 1 to 64 characters")
        self.call_id = call_id
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.started_at = started_at if started_at is not None else time.time()
        self.room_id = room_id
        self.job_id = job_id
        self.channel_type = channel_type
        self.pipeline = Pipeline()
        self.turns: list[Turn] = []
        self.events: list[Event] = []
        self.segments: dict[str, AudioSegment] = {}
        self.ended_at: float | None = None
        self.close_reason: str | None = None
        self.error: str | None = None
        self.transferred_to: str | None = None
        self.extra: dict[str, Any] = {}

    # -- feeding ------------------------------------------------------------------------------------

    def add_turn(self, turn: Turn) -> Turn:
        self.turns.append(turn)
        return turn

    def add_event(
        self,
        type: str,
        at: float | None = None,
        *,
        turn: Turn | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        ev = Event(type=type, at=at if at is not None else time.time(), turn=turn, data=data)
        self.events.append(ev)
        return ev

    def add_segment(self, segment: AudioSegment) -> None:
        self.segments[segment.segment_id] = segment

    def mark_transfer(self, target: str, at: float | None = None) -> None:
        self.transferred_to = target
        self.add_event("transfer", at, data={"target": target})

    def end(self, *, close_reason: str | None, error: str | None = None, at: float | None = None) -> None:
        """Records how the call ended (first call wins: a later, vaguer reason does not replace it)."""
        if self.ended_at is None:
            self.ended_at = at if at is not None else time.time()
        if self.close_reason is None:
            self.close_reason = close_reason
        if error and self.error is None:
            self.error = error

    # -- snapshot -----------------------------------------------------------------------------------

    def _offset(self, ts: float | None) -> int | None:
        if ts is None:
            return None
        return max(0, round((ts - self.started_at) * 1000.0))

    def ordered_turns(self) -> list[Turn]:
        """Turns in conversation order: by start time where known, else as they were added."""
        keyed = [
            (t.started_at if t.started_at is not None else t.ended_at, i, t) for i, t in enumerate(self.turns)
        ]
        last = float("-inf")
        order = []
        for ts, i, t in keyed:
            # A turn without times sits right after the one added before it.
            key = ts if ts is not None else last
            last = key
            order.append((key, i, t))
        order.sort(key=lambda k: (k[0], k[1]))
        return [t for _, _, t in order]

    def snapshot(self, seq: int, final: bool) -> tuple[dict[str, Any], dict[str, AudioSegment]]:
        """The report payload for ``seq`` and the audio segments it refers to by field."""
        turns = self.ordered_turns()
        index_of = {id(t): i for i, t in enumerate(turns)}
        turn_json = []
        for i, t in enumerate(turns):
            j: dict[str, Any] = {
                "index": i,
                "role": t.role,
                "content": t.content,
                "start_ms": self._offset(t.started_at),
                "end_ms": self._offset(t.ended_at),
                "interrupted": t.interrupted,
            }
            if t.role == "user":
                conf = t.stt_confidence
                j["stt_confidence"] = None if conf is None else min(1.0, max(0.0, float(conf)))
                j["transcription_delay_ms"] = _ms(t.transcription_delay)
                j["end_of_turn_delay_ms"] = _ms(t.end_of_turn_delay)
            else:
                j["llm_ttft_ms"] = _ms(t.llm_ttft)
                j["tts_ttfb_ms"] = _ms(t.tts_ttfb)
                j["e2e_latency_ms"] = _ms(t.e2e_latency)
                j["tool_calls"] = [c.to_json() for c in t.tool_calls] if t.tool_calls else None
            turn_json.append(j)
        # Events may be reported out of order: number them by time (stable for equal times).
        events = sorted(enumerate(self.events), key=lambda e: (e[1].at, e[0]))
        event_json = []
        for seq_no, (_, e) in enumerate(events):
            ej: dict[str, Any] = {"seq": seq_no, "type": e.type, "at_ms": self._offset(e.at) or 0}
            if e.turn is not None and id(e.turn) in index_of:
                ej["turn_index"] = index_of[id(e.turn)]
            if e.data is not None:
                ej["data"] = e.data
            event_json.append(ej)
        segments: dict[str, AudioSegment] = {}
        seg_json = []
        if final:
            for s in self.segments.values():
                field_name = f"audio:{s.segment_id}"
                segments[field_name] = s
                turn_index = index_of.get(id(s.turn)) if s.turn is not None else None
                seg_json.append(
                    {
                        "segment_id": s.segment_id,
                        "segment_type": s.segment_type,
                        "turn_index": turn_index,
                        "offset_ms": self._offset(s.started_at) if s.started_at is not None else 0,
                        "duration_ms": round(len(s.pcm) / (2 * s.channels) * 1000 / s.sample_rate),
                        "audio": {"field": field_name},
                    }
                )
        ended = self.ended_at if final else None
        if final and ended is None:
            ended = time.time()
        payload: dict[str, Any] = {
            "schema_version": 1,
            "report_type": "final" if final else "partial",
            "seq": seq,
            "call_id": self.call_id,
            "room_id": self.room_id,
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "agent_id": self.agent_id,
            "channel_type": self.channel_type,
            "pipeline": self.pipeline.to_json(),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(ended) if ended is not None else None,
            "duration_seconds": round(max(0.0, ended - self.started_at), 3) if ended is not None else None,
            "outcome": {
                "close_reason": (self.close_reason or ("transfer" if self.transferred_to else None))
                if final
                else None,
                "was_transferred": self.transferred_to is not None,
                "error": self.error,
            },
            "turns": turn_json,
            "events": event_json,
            "audio_segments": seg_json,
            **self.extra,
        }
        return payload, segments

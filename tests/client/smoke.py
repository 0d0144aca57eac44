"""A Python client generated from the OpenAPI document (openapi-python-client) against a running
service: sessions, a session, its timeline, conversation and diagnosis, and a reported clip's WAV
downloaded as bytes. Run by scripts/api-fuzz.sh with the generated package on PYTHONPATH.

    python smoke.py <base_url> <api_key>
"""
import sys

import httpx

from call_insights_client import AuthenticatedClient
from call_insights_client.api.reports import get_report_audio, list_reports
from call_insights_client.api.sessions import (
    get_conversation,
    get_diagnosis,
    get_session,
    get_timeline,
    list_sessions,
)
from call_insights_client.models import ErrorBody

base, key = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)


def ok(value, what):
    if value is None or isinstance(value, ErrorBody):
        sys.exit(f"client-smoke: {what} failed: {value!r}")
    return value


page = ok(list_sessions.sync(client=client, limit=200), "list_sessions")
if not page.items:
    sys.exit("client-smoke: no sessions to read")
# The calls published for this test (the fuzzing before it may have changed or erased others).
s = next((x for x in page.items if x.call_id.startswith("smoke")), page.items[0])
detail = ok(get_session.sync(client=client, session_id=s.id), "get_session")
assert detail.call_id == s.call_id, (detail.call_id, s.call_id)
timeline = ok(get_timeline.sync(client=client, session_id=s.id), "get_timeline")
assert timeline.items, "an empty timeline"
conversation = ok(get_conversation.sync(client=client, session_id=s.id), "get_conversation")
diagnosis = ok(get_diagnosis.sync(client=client, session_id=s.id), "get_diagnosis")
print(f"client-smoke: {s.call_id}: {len(timeline.items)} timeline items, {len(conversation.turns)} turns, "
      f"{len(diagnosis.issues)} issues, e2e p95 {detail.latency.e2e_latency_ms.p95}")

# A reported clip, downloaded as WAV bytes through the generated client.
user_turn = next(t for t in conversation.turns if t.role == "user")
r = httpx.post(f"{base}/api/v1/reports", headers={"Authorization": f"Bearer {key}"},
               json={"session_id": str(s.id), "turn_index": user_turn.turn_index,
                     "expected_output": "what the user really said", "issue_type": "misrecognition"})
r.raise_for_status()
reports = ok(list_reports.sync(client=client, session_id=s.id), "list_reports")
report = next(x for x in reports.items if x.audio_status == "stored")
audio = get_report_audio.sync_detailed(client=client, report_id=report.id)
assert audio.status_code == 200, audio.status_code
wav = audio.content
assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE", wav[:12]
print(f"client-smoke: report {report.id}: {len(wav)} bytes of WAV")

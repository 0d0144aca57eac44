"""Shared fixtures: the real Redis (``INSIGHTS_TEST_REDIS_URL``), a stream of its own per test, the
contract's JSON schema, and reading back what a producer published."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def contract_dir() -> Path:
    for c in (REPO.parent / "shared" / "contract", REPO / "shared" / "contract"):
        if (c / "session-report.schema.json").exists():
            return c
    raise RuntimeError("shared/contract not found beside the repository (expected ../shared/contract)")


@pytest.fixture(scope="session")
def validator() -> Draft202012Validator:
    schema = json.loads((contract_dir() / "session-report.schema.json").read_text())
    return Draft202012Validator(schema)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    name = f"test:py:{uuid.uuid4().hex[:12]}:sessions"
    yield name
    r = aioredis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{name}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


class Entry:
    def __init__(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        self.id = entry_id
        self.fields = {k.decode(): v for k, v in fields.items()}
        raw = self.fields["payload"]
        if self.fields.get("payload_encoding") == b"gzip":
            raw = gzip.decompress(raw)
        self.payload: dict[str, Any] = json.loads(raw)

    def audio(self, segment_id: str) -> bytes:
        return self.fields[f"audio:{segment_id}"]


async def read_entries(stream: str) -> list[Entry]:
    r = aioredis.from_url(REDIS_URL)
    try:
        rows = await r.xrange(stream)
    finally:
        await r.aclose()
    return [Entry(i.decode(), f) for i, f in rows]


class Service:
    """The real call-insights binary consuming a stream of its own (SQLite and audio in a temp dir)."""

    def __init__(self, base: str, stream: str, proc: Any, log: Path) -> None:
        self.base, self.stream, self.proc, self.log = base, stream, proc, log

    def get(self, path: str) -> tuple[int, Any]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    def session(self, call_id: str, *, final: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """The stored session of ``call_id`` once its final report is in (polls the API)."""
        import time
        import urllib.parse

        deadline = time.time() + timeout
        while time.time() < deadline:
            code, body = self.get(f"/api/v1/sessions/by-call/{urllib.parse.quote(call_id, safe='')}")
            if code == 200 and (not final or body["is_final"]):
                return body  # type: ignore[no-any-return]
            time.sleep(0.2)
        raise AssertionError(
            f"no {'final ' if final else ''}session for {call_id}; log: {self.log.read_text()[-3000:]}"
        )


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import socket
    import subprocess
    import time
    import urllib.request

    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = Path(os.environ.get("CALL_INSIGHTS_BIN", target / "debug" / "call-insights"))
    if not binary.exists():
        raise RuntimeError(
            f"{binary} not found: build it with `cargo build` first (or set CALL_INSIGHTS_BIN)"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("service")
    stream = f"test:py-e2e:{uuid.uuid4().hex[:12]}:sessions"
    env = {
        **os.environ,
        "INSIGHTS_REDIS_URL": REDIS_URL,
        "INSIGHTS_STREAM": stream,
        "INSIGHTS_DATA_DIR": str(data),
        "INSIGHTS_HTTP_ADDR": f"127.0.0.1:{port}",
        "INSIGHTS_BLOCK_MS": "200",
        "RUST_LOG": "info",
    }
    env.pop("INSIGHTS_DATABASE_URL", None)
    log = data / "service.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"the service did not become ready: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield Service(base, stream, proc, log)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    r = __import__("redis").from_url(REDIS_URL)
    for k in r.scan_iter(match=f"{stream}*"):
        r.delete(k)

"""Webhook actuator against a real aiohttp receiver on 127.0.0.1 (a free port per test).

The receiver verifies every delivery with planjson.verify(), validates the body against
docs/edge-plan.schema.json, counts attempts, and can be told to fail N times with 503 (or
429), to answer 400, or to hang past the client's timeout. Time bounds are generous lower
bounds (backoff must have happened) and loose upper bounds (it did not wait far longer)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from controller.actuators.sipedge.document import apply_document, verify
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from controller.actuators.sipedge.webhook import WebhookActuator, load_secret, redact_url

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "edge-plan.schema.json").read_text()
)
SECRET = b"test-secret-\x00\xffbytes"

A1 = TrunkState("carrier-a-sbc1", "sip:192.0.2.10:5060", 1, True)
A2 = TrunkState("carrier-a-sbc2", "sip:192.0.2.11:5060", 1, True)
R1 = DidRoute("+390212345600", "+390212345699", "carrier-a-sbc1", "sip:pbx@203.0.113.5")
R2 = DidRoute("+390298765400", "+390298765499", "carrier-a-sbc2", "sip:pbx@203.0.113.5")
PLAN = EdgePlan((A1, A2), (R1, R2), ())


@dataclass
class Delivery:
    at: float
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class Receiver:
    """A webhook receiver with fault switches; holds the plan the way a real one would."""

    secret: bytes = SECRET
    fail_next: int = 0
    fail_status: int = 503
    answer: int = 204
    hang_seconds: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    held: EdgePlan | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        ok = verify(body, self.secret, request.headers.get("X-Lifeline-Signature"))
        self.deliveries.append(Delivery(time.monotonic(), dict(request.headers), body, ok))
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=self.fail_status, text="busy")
        if not ok:
            return web.Response(status=401, text="bad signature")
        if self.answer >= 300:
            return web.Response(status=self.answer, text="no such site")
        doc = json.loads(body)
        jsonschema.validate(doc, SCHEMA)
        self.held = apply_document(self.held, doc)
        return web.Response(status=self.answer)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    # A real receiver stops working on a request its client gave up on; so does this one,
    # so a hanging delivery does not outlive the test.
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


def actuator(url: str, **kw: Any) -> WebhookActuator:
    kw.setdefault("backoff", 0.05)
    kw.setdefault("timeout", 2.0)
    return WebhookActuator(url, SECRET, site="milano-1", start_generation=1000, **kw)


async def test_full_push_is_signed_valid_and_then_diffs(receiver: Receiver) -> None:
    async with actuator(receiver.url) as hook:
        r1 = await hook.push(PLAN)
        assert r1.ok and r1.attempts == 1 and r1.status == 204 and r1.error is None
        assert r1.full is True and r1.generation == 1000
        d = receiver.deliveries[0]
        assert d.signature_ok
        assert d.headers["Content-Type"] == "application/json"
        assert d.headers["X-Lifeline-Generation"] == "1000"
        assert len(d.headers["X-Lifeline-Delivery"]) == 36
        assert d.headers["X-Lifeline-Signature"].startswith("sha256=")
        assert receiver.held == PLAN

        # Unchanged: nothing is sent.
        r2 = await hook.push(PLAN)
        assert r2.ok and r2.attempts == 0 and len(receiver.deliveries) == 1

        moved = EdgePlan((TrunkState(A1.name, A1.uri, 1, False), A2),
                         (DidRoute(R1.first, R1.last, A2.name, R1.destination_uri), R2),
                         (A2.name,))
        r3 = await hook.push(moved)
        assert r3.ok and r3.full is False and r3.generation == 1001
        doc = json.loads(receiver.deliveries[1].body)
        assert doc["base_generation"] == 1000
        assert doc["routes"]["changed"][0]["trunk"] == A2.name
        assert doc["routes"]["added"] == [] and doc["trunks"]["added"] == []
        assert receiver.held == moved


async def test_503_is_retried_with_doubling_backoff(receiver: Receiver) -> None:
    receiver.fail_next = 2
    async with actuator(receiver.url, backoff=0.2, retries=3) as hook:
        result = await hook.push(PLAN)
    assert result.ok and result.attempts == 3 and result.status == 204
    times = [d.at for d in receiver.deliveries]
    assert len(times) == 3
    # Waits of 0.2 s then 0.4 s; lower bounds are what the backoff guarantees.
    assert times[1] - times[0] >= 0.18
    assert times[2] - times[1] >= 0.38
    assert result.seconds < 10
    # Every attempt is the same delivery, with the same signed body.
    assert len({d.headers["X-Lifeline-Delivery"] for d in receiver.deliveries}) == 1
    assert len({d.body for d in receiver.deliveries}) == 1
    assert receiver.held == PLAN


async def test_retries_exhausted_then_next_push_is_full(receiver: Receiver) -> None:
    receiver.fail_next = 10
    receiver.fail_status = 429
    async with actuator(receiver.url, retries=2) as hook:
        first = await hook.push(PLAN)
        assert not first.ok and not first.permanent
        assert first.attempts == 3 and first.status == 429
        assert first.error is not None and "429" in first.error
        assert len(receiver.deliveries) == 3

        receiver.fail_next = 0
        second = await hook.push(PLAN)  # same plan: must be re-sent, in full
        assert second.ok and second.full is True and second.attempts == 1
        assert second.generation is not None and second.generation > (first.generation or 0)
    assert receiver.held == PLAN


async def test_400_is_permanent_and_not_retried(receiver: Receiver) -> None:
    receiver.answer = 400
    async with actuator(receiver.url, retries=3) as hook:
        result = await hook.push(PLAN)
    assert not result.ok and result.permanent
    assert result.attempts == 1 and result.status == 400
    assert result.error is not None and "no such site" in result.error
    assert len(receiver.deliveries) == 1


async def test_timeout_is_retried_then_reported(receiver: Receiver) -> None:
    receiver.hang_seconds = 5.0
    async with actuator(receiver.url, timeout=0.3, retries=1, backoff=0.05) as hook:
        started = time.monotonic()
        result = await hook.push(PLAN)
        elapsed = time.monotonic() - started
    assert not result.ok and not result.permanent
    assert result.attempts == 2 and result.status is None
    assert result.error is not None and "no answer within 0.3 s" in result.error
    assert len(receiver.deliveries) == 2
    assert 0.6 <= elapsed < 4.0  # two timeouts, not two hangs


async def test_connection_refused_is_retried_and_reported() -> None:
    # A port that was free a moment ago: bound, then closed.
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    async with actuator(f"http://127.0.0.1:{port}/hook", retries=2, backoff=0.01) as hook:
        result = await hook.push(PLAN)
    assert not result.ok and result.attempts == 3 and result.status is None
    assert result.error is not None and "Connect" in result.error


async def test_wrong_secret_is_detected_by_the_receiver(receiver: Receiver) -> None:
    receiver.secret = b"the receiver's different secret"
    async with actuator(receiver.url) as hook:
        result = await hook.push(PLAN)
    assert not result.ok and result.permanent and result.status == 401
    assert [d.signature_ok for d in receiver.deliveries] == [False]
    # The same body verifies under the right secret: it was the key, not the body.
    assert verify(receiver.deliveries[0].body, SECRET,
                  receiver.deliveries[0].headers["X-Lifeline-Signature"])


async def test_body_over_the_limit_is_not_sent(receiver: Receiver) -> None:
    async with actuator(receiver.url, max_body_bytes=100) as hook:
        result = await hook.push(PLAN)
    assert not result.ok and result.permanent and result.attempts == 0
    assert result.error is not None and "100 byte limit" in result.error
    assert receiver.deliveries == []


async def test_secret_never_reaches_logs_or_repr(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"file-secret-value\n")
    secret = load_secret(file=secret_file)
    assert secret == b"file-secret-value"
    receiver.secret = secret
    receiver.fail_next = 1
    url = receiver.url.replace("http://", "http://user:urlpass@")
    caplog.set_level(logging.DEBUG)
    async with WebhookActuator(url, secret, site="s", backoff=0.01) as hook:
        result = await hook.push(PLAN)
        text = repr(hook)
    assert result.ok and result.attempts == 2
    assert "file-secret-value" not in caplog.text + text
    assert "urlpass" not in caplog.text + text
    assert redact_url(url) == receiver.url


def test_load_secret_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIFELINE_TEST_HOOK_SECRET", "from-env")
    assert load_secret(env="LIFELINE_TEST_HOOK_SECRET") == b"from-env"
    monkeypatch.delenv("LIFELINE_TEST_HOOK_SECRET")
    with pytest.raises(ValueError, match="not set"):
        load_secret(env="LIFELINE_TEST_HOOK_SECRET")
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty"):
        load_secret(file=empty)
    with pytest.raises(ValueError, match="exactly one"):
        load_secret()
    with pytest.raises(ValueError, match="http"):
        WebhookActuator("ftp://127.0.0.1/x", b"k", site="s")

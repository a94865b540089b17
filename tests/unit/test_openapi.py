"""docs/api/openapi.yaml is the API's contract: it is a valid OpenAPI 3.0 document, it
names exactly the routes the app serves (built as the daemon builds it, with the status
page), and the app keeps it under schemathesis' generated requests (valid ones and ones
that break the schema): no 5xx, and every status, header, content type and body is the
one the file describes."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from controller.core.snapshot import Snapshot
from controller.runtime.journal import Journal
from exporters.http import make_app
from exporters.operator_api import ApiPolicy
from exporters.statuspage import StatusPage
from tests.unit.apiserver import serving
from tests.unit.fakecontrol import TOKEN, FakeControl, token_file

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch"}


def described() -> set[tuple[str, str]]:
    doc = yaml.safe_load(OPENAPI.read_text())
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


def served(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:  # aiohttp adds HEAD to every GET
            routes.add((route.method, str(path)))
    return routes


def operation(result: Any) -> Any:
    """The operation of a loader result; the error it holds when the file is broken."""
    from schemathesis.core.result import Ok

    if not isinstance(result, Ok):
        raise AssertionError(f"docs/api/openapi.yaml: {result.err()}")
    return result.ok()


def test_the_file_is_a_valid_openapi_30_document() -> None:
    """Checked against the OpenAPI 3.0 meta-schema schemathesis carries (a declared test
    dependency); a broken copy is caught, so the check can fail."""
    import schemathesis

    doc = yaml.safe_load(OPENAPI.read_text())
    assert doc["openapi"].startswith("3.0.")
    loaded = schemathesis.openapi.from_path(OPENAPI)
    loaded.validate()
    operations = [operation(result) for result in loaded.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == described()
    doc["paths"]["/healthz"]["get"]["responses"]["200"].pop("description")
    with pytest.raises(Exception, match="text/plain"):
        schemathesis.openapi.from_dict(doc).validate()


def daemon_app(latest: Callable[[], Snapshot | None], api: ApiPolicy,
               page: StatusPage) -> web.Application:
    """The app as controller.runtime.daemon builds it: the operator API and the status
    page on it (an app built without ``page=`` would hide the page's routes)."""
    return make_app(latest, control=FakeControl(), api=api, page=page)


def test_every_route_is_described_and_every_description_is_served() -> None:
    app = daemon_app(lambda: None, ApiPolicy(), StatusPage())
    missing, stale = served(app) - described(), described() - served(app)
    assert not missing, f"routes the app serves that docs/api/openapi.yaml lacks: {missing}"
    assert not stale, f"routes docs/api/openapi.yaml describes that the app lacks: {stale}"


# -- schemathesis against a real server on loopback --------------------------------------
def _snapshot(tmp: Path) -> Any:
    """A telephony snapshot, so /api/v1/status and /api/v1/dids answer in full."""
    from controller.config import parse_config
    from controller.core.snapshot import Tally
    from controller.runtime.trunks import Telephony
    from tests.unit.test_telephony import CONFIG, LINKS, Recorder, all_up, snap

    tel = Telephony(parse_config(CONFIG), Journal(tmp / "j.sqlite3"), Tally(), [Recorder()])
    tel.decide(all_up(tel), LINKS)
    return snap(tel)


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    snapshot = _snapshot(tmp_path)
    api = ApiPolicy.open(token_file=token_file(tmp_path), burst=1000,
                         writes_per_minute=6000, shared_burst=1000,
                         shared_writes_per_minute=6000)
    journal = Journal(tmp_path / "page-journal.sqlite3")
    journal.record("decision", "internet", "fibre-a -> fibre-b: fibre-a down")
    page = StatusPage(recent_events=journal.recent)
    # Two snapshots a step apart, as the daemon publishes them: the page then has a
    # history point and a closed ``point``, so their shapes are checked too.
    now = time.time()
    for taken_at in (now - 20, now - 5):
        snapshot = dataclasses.replace(snapshot, taken_at=taken_at)
        page.published(snapshot)
    with serving(daemon_app(lambda: snapshot, api, page)) as url:
        yield url


KNOWN = {"group": "voice", "link": "lte", "trunk": "a1", "number": "+390212345601",
         "name": "page.js"}
# The page's event stream never ends (it is pushed to until the client goes), and
# schemathesis reads a whole response before it checks it: every case would hang until
# its timeout. Its contract is checked by test_the_event_stream_carries_the_page_document.
ENDLESS = {"/api/v1/events/stream"}
EXAMPLES = 40  # per operation and mode: about 1,000 requests in all, a few seconds


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_5xx_and_every_answer_conforms(base_url: str,
                                                             mode: str) -> None:
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    loaded = schemathesis.openapi.from_path(OPENAPI)
    seen: dict[int, int] = {}
    barren: list[str] = []
    answered: set[str] = set()
    auths = st.sampled_from([{"Authorization": f"Bearer {TOKEN}"}] * 3 + [{},
                             {"Authorization": "Bearer not-a-token-of-this-daemon"}])
    for result in loaded.get_all_operations():
        op = operation(result)
        if op.path in ENDLESS:
            continue
        strategy = op.as_strategy(generation_mode=GenerationMode(mode))
        known = {k: v for k, v in KNOWN.items() if "{" + k + "}" in op.path}
        if known:  # half the cases name a target the daemon has, to get past the 404
            strategy = st.one_of(strategy, op.as_strategy(
                generation_mode=GenerationMode(mode), path_parameters=known))

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy, auth=auths)
        def run(case: Any, auth: dict[str, str]) -> None:
            if case.headers:
                case.headers.pop("Authorization", None)
            response = case.call(base_url=base_url, headers=auth, timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code == 200:
                answered.add(case.operation.path)
            case.validate_response(response, checks=checks)

        try:
            run()
        except Unsatisfiable:  # nothing to break: no parameter, no body
            barren.append(op.path)
    assert set(barren) <= {"/healthz", "/metrics", "/api/v1/status", "/api/v1/overrides",
                           "/", "/static/{name}", "/api/v1/page", "/api/v1/history"}
    print(f"{mode}: answers by status {dict(sorted(seen.items()))}")
    assert not any(code >= 500 for code in seen)
    # Valid requests got past the token check and were taken; invalid ones were refused
    # at the token check or on their content, never taken.
    assert {200, 401} <= set(seen) if mode == "positive" else {400, 401} <= set(seen)
    if mode == "positive":  # the page's routes were reached, not only refused
        assert {"/", "/static/{name}", "/api/v1/page", "/api/v1/history"} <= answered


def _first_event(lines: Iterator[str | bytes]) -> dict[str, str]:
    """The stream's first event (its fields), skipping the ``retry:`` preamble."""
    event: dict[str, str] = {}
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if not line:
            if "event" in event:
                return event
            event = {}
            continue
        field, _, value = line.partition(":")
        event[field] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended before an event: {event}")


def test_the_event_stream_carries_the_page_document(base_url: str) -> None:
    """The stream is outside the schemathesis run (it never ends): its status, headers
    and content type are the described ones, and its event's data is the /api/v1/page
    document, whose shape the schemathesis run checks."""
    import schemathesis

    loaded = schemathesis.openapi.from_path(OPENAPI)
    ops = {(op.method.upper(), op.path): op
           for op in map(operation, loaded.get_all_operations())}
    described_stream = ops["GET", "/api/v1/events/stream"].definition.raw["responses"]
    page = requests.get(f"{base_url}/api/v1/page", timeout=10)
    ops["GET", "/api/v1/page"].validate_response(page)
    with requests.get(f"{base_url}/api/v1/events/stream", stream=True, timeout=10) as got:
        assert got.status_code == 200
        assert got.headers["Content-Type"] == "text/event-stream"
        described_headers = described_stream["200"]["headers"]
        assert set(described_headers) <= set(got.headers)
        assert list(described_stream["200"]["content"]) == ["text/event-stream"]
        event = _first_event(got.iter_lines())
    assert event["event"] == "status" and event["id"].isdigit()
    document = json.loads(event["data"])
    assert document == page.json()
    assert document["point"] is not None and document["events"], document

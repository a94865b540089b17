"""docs/api/openapi.yaml is the API's contract: it is a valid OpenAPI 3.0 document, it
names exactly the routes the app serves, and the app keeps it under schemathesis'
generated requests (valid ones and ones that break the schema): no 5xx, and every
status, header, content type and body is the one the file describes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from controller.runtime.journal import Journal
from exporters.http import make_app
from exporters.operator_api import ApiPolicy
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


def test_every_route_is_described_and_every_description_is_served() -> None:
    app = make_app(lambda: None, control=FakeControl())
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
    app = make_app(lambda: snapshot, control=FakeControl(), api=api)
    with serving(app) as url:
        yield url


KNOWN = {"group": "voice", "link": "lte", "trunk": "a1", "number": "+390212345601"}
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
    auths = st.sampled_from([{"Authorization": f"Bearer {TOKEN}"}] * 3 + [{},
                             {"Authorization": "Bearer not-a-token-of-this-daemon"}])
    for result in loaded.get_all_operations():
        op = operation(result)
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
            case.validate_response(response, checks=checks)

        try:
            run()
        except Unsatisfiable:  # nothing to break: no parameter, no body
            barren.append(op.path)
    assert set(barren) <= {"/healthz", "/metrics", "/api/v1/status", "/api/v1/overrides"}
    print(f"{mode}: answers by status {dict(sorted(seen.items()))}")
    assert not any(code >= 500 for code in seen)
    # Valid requests got past the token check and were taken; invalid ones were refused
    # at the token check or on their content, never taken.
    assert {200, 401} <= set(seen) if mode == "positive" else {400, 401} <= set(seen)

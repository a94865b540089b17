"""The ``api:`` config section, the daemon refusing to start on a token file others can
read, and the write limiter's buckets (pure, time handed in)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from controller.config import ConfigError, parse_config, summary
from controller.runtime.daemon import run_daemon
from exporters.ratelimit import WriteLimiter
from tests.unit.fakecontrol import token_file

SITE = """
site: rome
state_dir: {state}
links:
  - {{name: fibre-a, interface: wan-a, gateway: 198.51.100.1, source: 198.51.100.2,
     probes: {{targets: [{{icmp: 192.0.2.1}}]}}}}
"""


def config(tmp_path: Path, api: str = "") -> str:
    return SITE.format(state=tmp_path / "state") + api


def test_the_api_section_has_safe_defaults_and_takes_durations(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path))
    assert cfg.api.token_file is None  # writes on the unix socket only
    assert (cfg.api.default_expiry, cfg.api.max_expiry) == (3600.0, 7 * 86400.0)
    cfg = parse_config(config(tmp_path, "api: {token_file: /etc/lifeline/api-tokens, "
                                        "default_expiry: 30m, max_expiry: 24h, burst: 3}\n"))
    assert cfg.api.token_file == Path("/etc/lifeline/api-tokens")
    assert (cfg.api.default_expiry, cfg.api.max_expiry, cfg.api.burst) == (1800, 86400, 3)
    assert ("operator writes: on the CLI socket; over TCP with a token from "
            "/etc/lifeline/api-tokens; overrides last 30m unless told, at most 24h"
            ) in summary(cfg)
    assert "over TCP refused (no api.token_file)" in summary(parse_config(config(tmp_path)))


@pytest.mark.parametrize(("api", "words"), [
    ("api: {token_file: api-tokens}\n", "api.token_file"),
    ("api: {default_expiry: 8d}\n", "api.default_expiry"),
    ("api: {default_expiry: 48h, max_expiry: 24h}\n", "longer than max_expiry"),
    ("api: {burst: 0}\n", "api.burst"),
    ("api: {writes_per_minute: 0}\n", "api.writes_per_minute"),
    ("api: {token: abc}\n", "api.token"),
])
def test_api_mistakes_are_named(tmp_path: Path, api: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(config(tmp_path, api))


async def test_a_token_file_others_can_read_stops_the_daemon_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = token_file(tmp_path, 0o644)
    cfg = parse_config(config(tmp_path, f"api: {{token_file: {path}}}\n"))
    assert await run_daemon(cfg) == 2
    assert "cannot start" in caplog.text and "chmod 0600" in caplog.text


def test_a_caller_gets_its_burst_then_one_write_per_refill() -> None:
    limiter = WriteLimiter(per_minute=10, burst=5, shared_per_minute=30, shared_burst=10)
    assert [limiter.take("noc", 0.0, shared=True) for _ in range(5)] == [0.0] * 5
    assert limiter.take("noc", 0.0, shared=True) == pytest.approx(6.0)
    assert limiter.take("noc", 3.0, shared=True) == pytest.approx(3.0)  # refused: no use
    assert limiter.take("noc", 6.0, shared=True) == 0.0
    assert limiter.take("noc", 6.0, shared=True) > 0
    assert limiter.take("noc", 600.0, shared=True) == 0.0  # refilled, never past the burst
    assert sum(limiter.take("noc", 600.0, shared=True) == 0.0 for _ in range(10)) == 4


def test_the_shared_bucket_holds_every_tcp_caller_but_not_the_console() -> None:
    limiter = WriteLimiter(per_minute=10, burst=5, shared_per_minute=30, shared_burst=10)
    allowed = sum(limiter.take(f"token:{n}", 0.0, shared=True) == 0.0
                  for n in range(8) for _ in range(5))
    assert allowed == 10
    assert limiter.take("unix:0", 0.0, shared=False) == 0.0  # the console still works


def test_a_zero_rate_waits_forever() -> None:
    limiter = WriteLimiter(per_minute=0, burst=1, shared_per_minute=1, shared_burst=1)
    assert limiter.take("a", 0.0, shared=False) == 0.0
    assert math.isinf(limiter.take("a", 1e9, shared=False))

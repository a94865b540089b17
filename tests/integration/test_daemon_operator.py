"""Operator actions end to end on a real daemon in the lab, through the real ``lifeline``
commands an operator types: the route group forced to the backup link over TCP with a
token (the daemon listens on the site namespace's loopback), refused with a wrong token,
kept across a restart, lifted over the unix socket. Each step is checked where the operator
would look: the kernel route, /api/v1/overrides, /api/v1/status, /metrics and the journal
(``lifeline events``); and at a real Alertmanager in the site, which gets lifeline's own
"failed over" ticket for a real failover but not for the operator's moves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_daemon import metric_value
from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.netns import LabError, ns_argv
from tests.lab.topology import Lab
from tests.lab.wait import until

ALERTMANAGER = shutil.which("prometheus-alertmanager")

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(ALERTMANAGER is None,
                       reason="needs prometheus-alertmanager (Debian package)"),
]

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:9730"  # the daemon's listen address, in the site namespace
AM = "http://127.0.0.1:9093"  # Alertmanager, also on the site namespace's loopback
TOKEN = "lab-noc-token-0123456789abcdef"  # a lab token, made for this test
REASON = "carrier works on fibre-a, ticket 4711"


def lifeline(lab: Lab, *args: str, site: bool = False) -> subprocess.CompletedProcess[str]:
    """The ``lifeline`` command as an operator runs it: in the site namespace (to reach the
    daemon's TCP address there) or here (the unix socket works across namespaces)."""
    argv = [sys.executable, "-m", "controller", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(ns_argv(lab.site, argv) if site else argv, capture_output=True,
                          text=True, timeout=30, env=env, cwd=ROOT, check=False)


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def events(state_dir: Path, subject: str) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "controller", "events", "--json", "--state-dir",
                          str(state_dir), "--subject", subject, "-n", "500"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def api_get(lab: Lab, path: str, base: str = URL) -> Any:
    """GET over a TCP address in the site: the daemon's (reads need no token), or
    Alertmanager's. No proxy handler: the request stays on the site's loopback."""
    code = ("import sys, urllib.request as u; "
            "opener = u.build_opener(u.ProxyHandler({})); "
            "sys.stdout.write(opener.open(sys.argv[1], timeout=5).read().decode())")
    out = lab.run(lab.site, [sys.executable, "-c", code, base + path]).stdout
    return json.loads(out) if out.strip() else ""


def start_alertmanager(lab: Lab, workdir: Path) -> None:
    """A real Alertmanager in the site, routing everything to a receiver that sends
    nothing: the test reads what it holds (its v2 API), not what it would notify."""
    assert ALERTMANAGER is not None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(
        {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}))
    with (workdir / "alertmanager.log").open("w") as log:
        lab.popen(lab.site, [ALERTMANAGER, f"--config.file={workdir / 'alertmanager.yml'}",
                             f"--storage.path={workdir / 'data'}",
                             f"--web.listen-address={AM.removeprefix('http://')}",
                             "--cluster.listen-address="], stdout=log, stderr=log)
    until(lambda: _quietly(lambda: bool(api_get(lab, "/api/v2/status", AM))), 30, 0.2,
          "Alertmanager ready")


def _quietly(probe: Callable[[], bool]) -> bool:
    try:
        return probe()
    except (LabError, json.JSONDecodeError):
        return False


def failed_over_tickets(lab: Lab) -> list[dict[str, str]]:
    """The labels of every LifelineFailedOver alert Alertmanager holds."""
    alerts = api_get(lab, "/api/v2/alerts", AM)
    return [a["labels"] for a in alerts if a["labels"]["alertname"] == "LifelineFailedOver"]


@contextmanager
def routes_seen(lab: Lab) -> Iterator[list[list[str]]]:
    """Every default route of the site (its interfaces) seen while the block runs, read
    every 50 ms: a restart that touched the route, even briefly, shows in it."""
    seen: list[list[str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            devices = route_devices(lab)
            if not seen or seen[-1] != devices:
                seen.append(devices)
            stop.wait(0.05)

    thread = threading.Thread(target=poll, name="routes-seen", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)


def test_an_operator_forces_the_backup_link_over_tcp_and_lifts_it_on_the_socket(
        lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens = secret(tmp_path / "api-tokens", f"# who token\nnoc {TOKEN}\n")
    wrong = secret(tmp_path / "wrong-token", "not-a-token-this-daemon-knows-42\n")
    good = secret(tmp_path / "noc-token", TOKEN + "\n")
    config = lifeline_config_dict(lab, state, listen="127.0.0.1:9730")
    config["api"] = {"token_file": str(tokens)}
    config["alertmanager"] = {"urls": [AM], "timeout": "1s"}
    start_alertmanager(lab, tmp_path / "alertmanager")
    daemon = LifelineProcess.with_config(lab, state, config)
    daemon.start()
    try:
        daemon.wait_active(["fibre-a"], 15)
        assert route_devices(lab) == ["wan-a"]
        force = ["force", "internet", "fibre-b", "--reason", REASON, "--for", "2m",
                 "--url", URL]

        # A wrong token: 401, and nothing changed anywhere.
        refused = lifeline(lab, *force, "--token-file", str(wrong), site=True)
        assert refused.returncode == 1, refused
        assert "refused (401)" in refused.stderr, refused.stderr
        time.sleep(0.5)  # a few cycles: a change, had there been one, would show
        assert api_get(lab, "/api/v1/overrides") == []
        assert daemon.active(daemon.wait_for(lambda s: True, 5)) == ["fibre-a"]
        assert route_devices(lab) == ["wan-a"]
        assert "override set" not in json.dumps(events(state, "overrides"))

        # The right token: forced to fibre-b, by the token's name, for two minutes.
        asked = time.time()
        done = lifeline(lab, *force, "--token-file", str(good), site=True)
        assert done.returncode == 0, done
        assert "fibre-b" in done.stdout
        daemon.wait_active(["fibre-b"], 10)
        assert route_devices(lab) == ["wan-b"]
        (held,) = api_get(lab, "/api/v1/overrides")
        assert held | {"until": 0, "since": 0} == {
            "kind": "route", "target": "internet", "value": "fibre-b", "reason": REASON,
            "by": "noc", "since": 0, "until": 0, "applied": True, "why_not": None}
        assert asked + 120 - 2 <= held["until"] <= time.time() + 120 + 2
        status = api_get(lab, "/api/v1/status")
        assert status["overrides"] == [held]
        (group,) = status["groups"]
        assert group["active"] == ["fibre-b"] and "operator" in group["reason"], group
        assert daemon.link_state(status, "fibre-a") == "up"  # forced, not failed over
        metrics = daemon.metrics_text()
        assert metric_value(metrics, "lifeline_override_active", kind="route",
                            target="internet") == 1
        # A route change like any other for the counter (docs/overrides.md).
        assert metric_value(metrics, "lifeline_failovers_total", group="internet",
                            **{"from": "fibre-a", "to": "fibre-b"}) == 1
        (journaled,) = [e for e in events(state, "overrides")
                        if e["message"].startswith("override set")]
        assert journaled["data"] | {"since": 0} == {
            "override": "route", "target": "internet", "value": "fibre-b", "by": "noc",
            "reason": REASON, "since": 0, "until": held["until"]}
        assert "by noc until" in journaled["message"] and REASON in journaled["message"]
        line = lifeline(lab, "events", "--state-dir", str(state), "--subject", "overrides")
        assert "by noc until" in line.stdout and REASON in line.stdout, line.stdout
        moves = [e for e in events(state, "internet")
                 if e["kind"] == "decision" and e["data"].get("operator")]
        assert moves, events(state, "internet")
        time.sleep(2.0)  # lifeline posts within a cycle of a move; a ticket would be in
        assert failed_over_tickets(lab) == []

        # A restart: the override comes back from the state dir, the route never moves.
        with routes_seen(lab) as seen:
            assert daemon.stop() == 0
            daemon.start()
            daemon.wait_for(lambda s: s["overrides"] == [held], 10, "the override back")
            time.sleep(3.0)  # probes in, health known: the policy has had its say
        assert seen == [["wan-b"]], seen
        assert daemon.active(daemon.wait_for(lambda s: True, 5)) == ["fibre-b"]
        assert metric_value(daemon.metrics_text(), "lifeline_override_active",
                            kind="route", target="internet") == 1

        # Lifted over the unix socket (found from the config): back to fibre-a, by unix:root.
        off = lifeline(lab, "force", "internet", "--off", "--reason", "drill over",
                       "-c", str(daemon.config_path))
        assert off.returncode == 0, off
        daemon.wait_active(["fibre-a"], 10)
        assert route_devices(lab) == ["wan-a"]
        assert api_get(lab, "/api/v1/overrides") == []
        assert "lifeline_override_active{" not in daemon.metrics_text()
        cleared = [e for e in events(state, "overrides")
                   if e["message"].startswith("override cleared")]
        (lifted,) = cleared
        assert "by unix:root: drill over" in lifted["message"], lifted  # the socket's peer

        # No ticket for the operator's moves; a real failover gets one (so the path works).
        time.sleep(2.0)
        assert failed_over_tickets(lab) == []
        lab.faults.carrier("fibre-a", False)
        daemon.wait_active(["fibre-b"], 10)
        (ticket,) = until(lambda: failed_over_tickets(lab), 10, 0.2,
                          "lifeline's failed-over ticket at Alertmanager")
        assert ticket["group"] == "internet" and ticket["severity"] == "ticket", ticket
    finally:
        assert daemon.stop() == 0
    assert json.loads((state / "overrides.json").read_text())["overrides"] == []

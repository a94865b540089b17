"""Run the real lifeline daemon inside a lab's site namespace, and look at what it does.

Tests, the demo and the benchmarks start lifeline exactly as an operator would (the
``lifeline run`` command with a YAML config), inside the site router's namespace, and read
its state the way an operator would: the status API over the unix socket in its state dir
(which works across namespaces) and the kernel's routes with ``ip -j route``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.statusview import fetch_status
from lab.config import lifeline_config
from lab.topology import Lab


class LifelineProcess:
    """One lifeline daemon in ``lab.site``; the lab kills it on destroy if a test does not."""

    def __init__(self, lab: Lab, state_dir: Path, *extra_args: str, **overrides: Any) -> None:
        self.lab = lab
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = state_dir / "lifeline.yaml"
        self.config_path.write_text(lifeline_config(lab, state_dir, **overrides))
        self.log_path = state_dir / "lifeline.log"
        self.socket = state_dir / "lifeline.sock"
        self.extra_args = extra_args
        self.proc: Any = None
        self.exit_code: int | None = None

    def start(self, wait: float = 15.0) -> None:
        """Start the daemon and wait until its API answers."""
        log = self.log_path.open("a")
        self.proc = self.lab.popen(
            self.lab.site,
            self.lab.python_argv("controller", "run", "-c", str(self.config_path),
                                 *self.extra_args),
            stdout=log, stderr=log,
        )
        log.close()
        self.wait_for(lambda st: True, wait, "the daemon's API to answer")

    def stop(self) -> int | None:
        """SIGTERM, as systemd would; the daemon leaves the routes in place."""
        if self.proc is not None:
            self.exit_code = self.lab.stop(self.proc, grace=5.0)
            self.proc = None
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any] | None:
        try:
            return asyncio.run(fetch_status(self.socket, timeout=2.0))
        except OSError:
            return None

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str = "a condition") -> dict[str, Any]:
        """Poll the status API until predicate(status) holds; bounded by timeout."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"lifeline exited with {self.proc.returncode}:\n{self.log()}")
            last = self.status()
            if last is not None and predicate(last):
                return last
            time.sleep(0.05)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}; last status: "
                           f"{json.dumps(last, indent=1)[:3000]}\nlog:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    # -- reading state --------------------------------------------------------------------
    def link_state(self, st: dict[str, Any], link: str) -> str:
        return str(next(lk["state"] for lk in st["links"] if lk["name"] == link))

    def active(self, st: dict[str, Any], group: str = "internet") -> list[str]:
        return list(next(g["active"] for g in st["groups"] if g["name"] == group))

    def wait_active(self, links: list[str], timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(lambda st: self.active(st) == links, timeout,
                             f"group internet to use {links}")

    def wait_link(self, link: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(lambda st: self.link_state(st, link) == state, timeout,
                             f"{link} to be {state}")


def default_route(lab: Lab, table: str = "main") -> list[dict[str, Any]]:
    """The site's default route(s) in ``table`` as ``ip -j`` prints them."""
    out = lab.run(lab.site, ["ip", "-j", "route", "show", "table", table, "default"]).stdout
    routes: list[dict[str, Any]] = json.loads(out or "[]")
    return routes


def route_devices(lab: Lab, table: str = "main") -> list[str]:
    """Interfaces the site's default route leaves through (several for multipath)."""
    devs: list[str] = []
    for r in default_route(lab, table):
        if "dev" in r:
            devs.append(r["dev"])
        devs += [h["dev"] for h in r.get("nexthops", [])]
    return devs

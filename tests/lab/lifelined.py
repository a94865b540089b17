"""Run the real lifeline daemon inside a lab's site namespace, and look at what it does.

Tests, the demo and the benchmarks start lifeline exactly as an operator would (the
``lifeline run`` command with a YAML config), inside the site router's namespace, and read
its state the way an operator would: the status API over the unix socket in its state dir
(which works across namespaces) and the kernel's routes with ``ip -j route``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from exporters.statusview import fetch_status
from tests.lab.config import lifeline_config
from tests.lab.topology import Lab
from tests.lab.wait import until


@dataclass(frozen=True, slots=True)
class ProcUsage:
    """Memory and CPU of one process as the kernel counts them (/proc/<pid>/status, stat)."""

    rss_kib: int  # VmRSS
    hwm_kib: int  # VmHWM: the peak RSS so far
    cpu_seconds: float  # utime + stime


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

    @classmethod
    def with_config(cls, lab: Lab, state_dir: Path, config: dict[str, Any] | str,
                    *extra_args: str) -> LifelineProcess:
        """A daemon run with ``config`` (a dict or YAML text) instead of the generated one,
        for setups the ``lab.config`` overrides do not cover (e.g. per-link target lists)."""
        daemon = cls(lab, state_dir, *extra_args)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        daemon.config_path.write_text(text)
        return daemon

    def start(self, wait: float = 15.0, *, env: Mapping[str, str] | None = None,
              wrapper: Sequence[str] = (), python: str | None = None) -> None:
        """Start the daemon and wait until its API answers. ``env`` adds to its environment
        (e.g. NOTIFY_SOCKET), ``wrapper`` goes before the command (e.g. setpriv), ``python``
        replaces this interpreter."""
        log = self.log_path.open("a")
        argv = self.lab.python_argv("controller", "run", "-c", str(self.config_path),
                                    *self.extra_args)
        self.proc = self.lab.popen(
            self.lab.site,
            [*wrapper, python or argv[0], *argv[1:]],
            extra_env=env, stdout=log, stderr=log,
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
        """Poll the status API until predicate(status) holds (that status is returned);
        bounded by timeout, and ended at once if the daemon exits."""
        last: dict[str, Any] | None = None

        def holds() -> dict[str, Any] | None:
            nonlocal last
            self._check_running()
            last = self.status()
            return last if last is not None and predicate(last) else None

        return until(holds, timeout, 0.05, what, detail=lambda: self._story(last))

    def _check_running(self) -> None:
        """A daemon that exited will not answer: say so with its log instead of waiting."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"lifeline exited with {self.proc.returncode}:\n{self.log()}")

    def _story(self, last: dict[str, Any] | None) -> str:
        """What a timed-out wait saw last, and the log's tail: the first things to read."""
        return (f"last status: {json.dumps(last, indent=1)[:3000]}\n"
                f"log:\n{self.log()[-3000:]}")

    @property
    def pid(self) -> int | None:
        """PID of the daemon itself: ``ip netns exec`` execs, so no wrapper sits between."""
        return int(self.proc.pid) if self.running else None

    def usage(self) -> ProcUsage:
        """RSS and CPU seconds of the running daemon, read from /proc."""
        pid = self.pid
        if pid is None:
            raise RuntimeError("lifeline is not running")
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":" in line
        )
        if fields.get("Name", "").strip() == "ip":
            raise RuntimeError(f"PID {pid} is still the `ip netns exec` wrapper, not lifeline")
        # The command name in stat may hold spaces and parentheses: split after the last ')'.
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        # utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
        return ProcUsage(
            rss_kib=int(fields["VmRSS"].split()[0]),
            hwm_kib=int(fields["VmHWM"].split()[0]),
            cpu_seconds=(int(stat[11]) + int(stat[12])) / ticks,
        )

    def metrics_text(self, timeout: float = 5.0) -> str:
        """The daemon's /metrics page, fetched over the unix socket (works across netns)."""

        async def fetch() -> str:
            conn = aiohttp.UnixConnector(path=str(self.socket))
            async with aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session, session.get("http://lifeline/metrics") as resp:
                resp.raise_for_status()
                return await resp.text()

        try:
            return asyncio.run(fetch())
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc

    def wait_active_at(self, links: list[str], timeout: float = 20.0,
                       group: str = "internet") -> float:
        """Wait until ``group`` uses ``links``; return when it switched, as
        ``time.monotonic()`` (the daemon's loop clock is the same CLOCK_MONOTONIC), to a few
        ms: the status says how long ago the change was, the request's midpoint says when."""
        last: dict[str, Any] | None = None

        def switched_at() -> float | None:
            nonlocal last
            self._check_running()
            before = time.monotonic()
            last = self.status()
            after = time.monotonic()
            if last is not None and self.active(last, group) == links:
                g = next(g for g in last["groups"] if g["name"] == group)
                if g["since_change"] is not None:
                    return (before + after) / 2 - float(g["since_change"])
            return None

        return until(switched_at, timeout, 0.05, f"group {group} to use {links}",
                     detail=lambda: self._story(last))

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

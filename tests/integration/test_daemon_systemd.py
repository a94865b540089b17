"""What examples/systemd/lifeline.service promises, on the real daemon in the lab's site.

systemd hears READY=1 after the first reconcile, STATUS= when the routes change, WATCHDOG=1
while the control loop lives and STOPPING=1 at the end, over a real notify socket. And the
daemon protects the site as the unit runs it: a dedicated user, not root, holding only the
unit's AmbientCapabilities= (CAP_NET_ADMIN and CAP_NET_RAW; ``setpriv`` does what User=
and AmbientCapabilities= do): it sets the route, probes through every link, fails over
when the active link is blackholed and flushes the conntrack entries of the flows it left.

The unprivileged daemon needs an interpreter and libraries its user can read: this
machine's Python may live in a home it cannot enter, so the libraries the daemon imports
are copied to a world-readable directory first, as a package would install them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.runtime.journal import read_events
from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.stream import Stream
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "lifeline.service"
FAST = {"reliability": 2, "hold_down": "2s"}
NOBODY = 65534
_CAP_NUMBERS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def unit_capabilities() -> list[str]:
    """The unit's AmbientCapabilities=, which this test grants and nothing else."""
    line = next(ln for ln in UNIT.read_text().splitlines()
                if ln.startswith("AmbientCapabilities="))
    return line.partition("=")[2].split()


CAPS = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in unit_capabilities())
CAP_MASK = sum(1 << _CAP_NUMBERS[c] for c in unit_capabilities())
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}", f"--bounding-set={CAPS}"]


class Systemd:
    """The notify socket systemd would listen on, read in a thread as systemd does (a unix
    datagram queue holds only a few messages: unread, the daemon's pings would be dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.told: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.told.append(self._sock.recv(4096).decode())

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        return self.told


def test_systemd_hears_ready_status_watchdog_and_stopping(lab: Lab, tmp_path: Path) -> None:
    systemd = Systemd(tmp_path / "notify")
    d = LifelineProcess(lab, tmp_path / "state", **FAST)
    try:
        # A 1 s watchdog: a ping every 0.5 s. Unix sockets cross network namespaces.
        d.start(env={"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "1000000"})
        d.wait_active(["fibre-a"], 15)
        time.sleep(1.5)
        lab.faults.blackhole("fibre-a")
        d.wait_active(["fibre-b"], 15)
        time.sleep(0.5)
    finally:
        assert d.stop() == 0, d.log()
        time.sleep(0.2)
        told = systemd.close()
    pings = told.count("WATCHDOG=1")
    others = [m for m in told if m != "WATCHDOG=1"]
    assert pings >= 4, f"{pings} watchdog pings in more than 2 s: {told}"
    assert others[0].startswith("READY=1\nSTATUS="), others
    assert sum("READY=1" in m for m in others) == 1, others
    assert others[-1].startswith("STOPPING=1"), others
    statuses = [line.removeprefix("STATUS=") for m in others[:-1] for line in m.splitlines()
                if line.startswith("STATUS=")]
    # "no route yet" first if the first reconcile came before fibre-a was known to be up
    routed = [s for s in statuses if s != "internet via no route yet"]
    assert routed == ["internet via fibre-a", "internet via fibre-b"], others
    assert "cannot notify systemd" not in d.log()


# -- the unit's user and capabilities ---------------------------------------------------------


def _run_as_nobody(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SETPRIV, *argv], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def unprivileged_python() -> Iterator[tuple[str, dict[str, str]]]:
    """(interpreter, environment) with which user nobody can run this tree's daemon."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs `setpriv` (Debian package util-linux) on PATH")
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, controller.cli, controller.runtime.daemon; "
         "print('\\n'.join(sorted({m.partition('.')[0] for m in sys.modules})))"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout.split()
    owners = metadata.packages_distributions()
    dists = sorted({d for top in imported for d in owners.get(top, [])} - {"lifeline"})
    site = Path(tempfile.mkdtemp(prefix="lifeline-site-"))
    try:
        for name in dists:
            dist = metadata.distribution(name)
            for file in dist.files or []:
                src = Path(str(dist.locate_file(file)))
                if file.parts[0] != ".." and src.is_file():
                    (site / file).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, site / file)
        site.chmod(0o755)
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "PYTHONDONTWRITEBYTECODE": "1"}
        minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
        tried = []
        for python in dict.fromkeys([sys.executable, shutil.which(minor) or minor]):
            probe = _run_as_nobody([python, "-c", "import controller.runtime.daemon"], env)
            if probe.returncode == 0:
                yield python, env
                return
            tried.append(f"{python}: {probe.stderr.strip()[-300:]}")
        pytest.skip("user nobody cannot run the daemon with any interpreter here: "
                    + "; ".join(tried))
    finally:
        shutil.rmtree(site, ignore_errors=True)


def _proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def test_the_daemon_protects_the_site_as_nobody_with_only_the_units_capabilities(
    lab: Lab, unprivileged_python: tuple[str, dict[str, str]]
) -> None:
    python, env = unprivileged_python
    # A state dir the user owns, as StateDirectory= makes it (pytest's tmp_path is root's).
    state = Path(tempfile.mkdtemp(prefix="lifeline-state-"))
    try:
        os.chown(state, NOBODY, NOBODY)
        config = lifeline_config_dict(lab, state, **FAST)
        for link in config["links"]:
            link["probes"]["arp_gateway"] = True  # an AF_PACKET socket: CAP_NET_RAW too
        d = LifelineProcess.with_config(lab, state, config)
        d.start(env=env, wrapper=SETPRIV, python=python)
        try:
            assert d.pid is not None
            proc = _proc_status(d.pid)
            assert proc["Uid"].split() == [str(NOBODY)] * 4, proc["Uid"]
            for caps in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
                assert int(proc[caps], 16) == CAP_MASK, (caps, proc[caps])
            d.wait_active(["fibre-a"], 15)
            assert route_devices(lab) == ["wan-a"]
            d.wait_link("fibre-b", "up", 15)  # probed through its own table: raw ICMP, bound
            answered = {(x.labels["kind"], x.labels["link"])
                        for family in text_string_to_metric_families(d.metrics_text())
                        for x in family.samples
                        if x.name == "lifeline_probes_total" and x.labels["result"] == "ok"}
            assert {("icmp", "fibre-b"), ("arp", "fibre-b")} <= answered, answered
            with Stream(lab, interval=0.01, max_seconds=15, two_way=True) as stream:
                time.sleep(1.0)
                lab.faults.blackhole("fibre-a")
                switched_at = d.wait_active_at(["fibre-b"], 15)
                assert route_devices(lab) == ["wan-b"]
                time.sleep(2.0)
                result = stream.stop()
        finally:
            assert d.stop() == 0, d.log()
        # Replies come back by fibre-b only because the flow's conntrack entry, SNAT'ed to
        # fibre-a's address, was deleted: conntrack over netlink works with these caps.
        assert sum(1 for when, _ in result.replies if when > switched_at + 0.5) >= 50
        flushes = [e for e in read_events(state / "journal.sqlite3", 500, "action")
                   if e.subject == "internet"]
        assert flushes and flushes[-1].data["deleted"] >= 1, flushes
        assert flushes[-1].data["errors"] == 0, flushes
        assert (state / "journal.sqlite3").stat().st_uid == NOBODY
        for refusal in ("Operation not permitted", "Permission denied", "Traceback", " ERROR "):
            assert refusal not in d.log(), d.log()
    finally:
        shutil.rmtree(state, ignore_errors=True)

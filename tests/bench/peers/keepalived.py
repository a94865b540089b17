"""keepalived (the Debian package) as a peer: a single-node VRRP instance that owns the route.

The site's static config is a fibre-b default route at metric 200. keepalived runs one
VRRP instance on the LAN port, tracking wan-a's link state (``track_interface``) and a
``vrrp_script`` that pings a far target through wan-a; while the instance is MASTER its
``virtual_routes`` add the fibre-a default at metric 100, and in FAULT keepalived removes
it, so the kernel falls back to fibre-b. Two variants: ``FAST`` writes the fastest sane
tracking out (interval 1 s, timeout 1 s, fall 1, rise 1), ``DEFAULTS`` writes none of
them so keepalived's built-in defaults decide (which are the same; BENCHMARKS.md cites the
source). keepalived runs in the foreground (``-n``) as a tracked lab process, with its
own config, pid files and log under the trial's directory; ``-P`` says VRRP only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bench.peers.base import BACKUP, PRIMARY, PeerKind, ProcessPeer, add_probe_paths
from tests.lab.netns import LabError
from tests.lab.topology import LAN_SITE_IFNAME, Lab

__all__ = ["DEFAULTS", "FAST", "KeepalivedPeer", "config_text"]

KEEPALIVED = "keepalived"
PING = "/usr/bin/ping"
BACKUP_METRIC = 200
PRIMARY_METRIC = 100
# A VRRP instance needs an address to own; one of the LAN's, unused by the lab.
VIP = "192.0.2.190/26"


def config_text(lab: Lab, *, fast: bool) -> str:
    """keepalived.conf for the site: see the module docstring."""
    a = lab.link(PRIMARY)
    target = lab.targets[0]
    tracking = ("  interval 1\n  timeout 1\n  fall 1\n  rise 1\n" if fast else "")
    return f"""\
# keepalived for lab {lab.prefix.rstrip('-')} (tests.bench.peers.keepalived)
global_defs {{
  router_id lab-site
  script_user root
  enable_script_security
}}
vrrp_script chk_fibre_a {{
  script "{PING} -n -q -c1 -W1 -I {a.site_ifname} {target}"
{tracking}}}
vrrp_instance fibre_a {{
  state MASTER
  interface {LAN_SITE_IFNAME}
  virtual_router_id 51
  priority 100
  advert_int 1
  virtual_ipaddress {{
    {VIP} dev {LAN_SITE_IFNAME}
  }}
  track_interface {{
    {a.site_ifname}
  }}
  track_script {{
    chk_fibre_a
  }}
  virtual_routes {{
    default via {a.gateway} dev {a.site_ifname} metric {PRIMARY_METRIC}
  }}
}}
"""


class KeepalivedPeer(ProcessPeer):
    """keepalived in the site namespace; stopping it (SIGTERM) stops its VRRP child."""

    stop_grace = 5.0

    def __init__(self, fast: bool) -> None:
        super().__init__()
        self.fast = fast

    def start(self, lab: Lab, workdir: Path) -> None:
        self._lab = lab
        workdir.mkdir(parents=True, exist_ok=True)
        b = lab.link(BACKUP)
        add_probe_paths(lab)
        lab.ip_batch(lab.site, [f"route add default via {b.gateway} dev {b.site_ifname} "
                                f"metric {BACKUP_METRIC}"])
        conf = workdir / "keepalived.conf"
        conf.write_text(config_text(lab, fast=self.fast))
        check = lab.run(lab.site, [KEEPALIVED, "-t", "-f", str(conf)], check=False)
        if check.returncode != 0:
            raise LabError(f"keepalived -t refused {conf}: {check.stderr.strip()}")
        self._log = workdir / "keepalived.log"
        with self._log.open("w") as log:
            self._proc = lab.popen(lab.site, [
                KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-f", str(conf),
                "-p", str(workdir / "keepalived.pid"), "-r", str(workdir / "vrrp.pid"),
            ], stdout=log, stderr=subprocess.STDOUT)


_COMMON = ("single-node VRRP on lan0, track_interface wan-a, vrrp_script "
           "'ping -c1 -W1 -I wan-a 192.0.2.1'; MASTER adds the fibre-a default "
           "(virtual_routes, metric 100) over a static fibre-b default (metric 200); "
           "no conntrack flush")
FAST = PeerKind(
    name="keepalived-fast",
    label="keepalived, interval 1 s, fall 1",
    settings=f"keepalived {_COMMON}; script interval 1, timeout 1, fall 1, rise 1 (written)",
    make=lambda: KeepalivedPeer(fast=True),
    period=1.0,
    move_bound=10.0,
    tools=(KEEPALIVED, PING),
)
DEFAULTS = PeerKind(
    name="keepalived-defaults",
    label="keepalived, script defaults",
    settings=f"keepalived {_COMMON}; no interval/timeout/fall/rise written (built-in "
             "defaults: interval 1 s, timeout = interval, fall 1, rise 1)",
    make=lambda: KeepalivedPeer(fast=False),
    period=1.0,
    move_bound=10.0,
    tools=(KEEPALIVED, PING),
)

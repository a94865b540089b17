"""The reference SIP edge set up as the README says, on the lab's site, carries calls.

``test_the_readme_sets_up_an_edge_that_carries_calls`` reads the command block of the
README's "Setting up the SIP edge" and runs it line by line on a built lab: a temporary
directory stands in for /etc/kamailio and a YAML file for /etc/lifeline/lifeline.yaml;
the copy, ``lifeline edge-config`` (the real CLI, a subprocess in the site namespace, where
it finds the address of the link the config gives no source) and ``kamailio -c`` run as
written; ``systemctl restart kamailio`` becomes Kamailio in the foreground on that same
cfg (what the Debian unit starts: the same binary on the same file), ``systemctl reload
lifeline`` the daemon with that config. Then calls go in and out through the edge, and
``lifeline status`` must show the edge in sync. A README line the test does not know fails
it, so the README cannot drift from what is tested. The other tests check that Kamailio
itself accepts what edge-config writes for other sites (IPv6, TLS) and that the package the
README installs ships every module the cfg loads.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.kamailio import REFERENCE_CFG
from tests.lab.lifelined import LifelineProcess
from tests.lab.sipsite import DID_RANGES, SipSite, sip_site_skip_reason, site_ready
from tests.lab.topology import Lab

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
BLOCK_MARK = "<!-- tests/integration/test_edge_setup.py runs the commands of the next block -->"

needs_kamailio = pytest.mark.skipif(
    not Path(KAMAILIO).exists(), reason="needs `kamailio` (Debian package kamailio)")


def readme_commands() -> list[list[str]]:
    """The argv of each line of the README's edge set-up block, comments dropped."""
    text = README.read_text()
    assert BLOCK_MARK in text, "the README lost its edge set-up block"
    block = re.search(r"```sh\n(.*?)```", text.split(BLOCK_MARK, 1)[1], re.DOTALL)
    assert block is not None, "no ```sh block after the marker"
    commands = [shlex.split(line, comments=True) for line in block[1].splitlines()]
    return [argv for argv in commands if argv]


def edge_section() -> str:
    text = README.read_text()
    return text.split("## Setting up the SIP edge", 1)[1].split("\n## ", 1)[0]


def test_the_readme_block_is_read_as_commands() -> None:
    commands = readme_commands()
    assert commands[0][:2] == ["apt-get", "install"]
    assert ["systemctl", "restart", "kamailio"] in commands
    assert any(argv[:2] == ["lifeline", "edge-config"] for argv in commands)


# -------------------------------------------------------------------- Kamailio's own check


def kamailio_check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KAMAILIO, "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=30, check=False)


def edge_config(config: Path, confdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", "edge-config", "-c", str(config),
                           "--dir", str(confdir)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=False)


@needs_kamailio
@pytest.mark.parametrize("sample", ["examples/lifeline.yaml",
                                    "tests/unit/data/configs/good-ipv6.yaml"])
def test_kamailio_accepts_what_edge_config_writes(tmp_path: Path, sample: str) -> None:
    """Three IPv4 uplinks with TLS (the example's sips: trunk), and two IPv6 uplinks."""
    data = yaml.safe_load((ROOT / sample).read_text())
    data.setdefault("sip_edge", {"kamailio": {}})
    for i, link in enumerate(data["links"]):
        link.setdefault("source", f"2001:db8:{i + 1:x}::2")
    config = tmp_path / "lifeline.yaml"
    config.write_text(yaml.safe_dump(data))
    confdir = tmp_path / "etc"
    confdir.mkdir()
    shutil.copy(REFERENCE_CFG, confdir)
    shutil.copy(REFERENCE_CFG.parent / "tls.cfg", confdir)
    done = edge_config(config, confdir)
    assert done.returncode == 0, done.stderr
    tls = "#!trydef WITH_TLS" in (confdir / "lifeline-site.cfg").read_text()
    if tls and not Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists() \
            and not list(Path("/usr/lib").glob("*/kamailio/modules/tls.so")):
        pytest.skip("needs Kamailio's tls module (Debian package kamailio-tls-modules)")
    check = kamailio_check(confdir / "kamailio.cfg")
    assert check.returncode == 0, check.stdout + check.stderr
    listening = check.stdout + check.stderr
    for link in data["links"]:
        assert f"udp: {link['source']} [{link['source']}]:5060" in listening, listening
    assert "tcp: 127.0.0.1 [127.0.0.1]:5071" in listening  # JSON-RPC, lifeline's default
    assert ("tls: " in listening) == tls == (sample == "examples/lifeline.yaml")


@needs_kamailio
def test_without_the_site_file_kamailio_says_which_file_is_missing(tmp_path: Path) -> None:
    shutil.copy(REFERENCE_CFG, tmp_path)
    check = kamailio_check(tmp_path / "kamailio.cfg")
    assert check.returncode != 0
    assert f"cannot open included file: lifeline-site.cfg ({tmp_path}/lifeline-site.cfg)" in \
        check.stdout + check.stderr


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (a Debian machine)")
def test_the_packages_the_readme_installs_ship_every_module_the_cfg_loads() -> None:
    """Modules loaded unconditionally come from the apt-get line; the others (tls) from a
    package the section names."""
    packages = next(argv[2:] for argv in readme_commands() if argv[:2] == ["apt-get", "install"])
    section = edge_section()
    optional = False
    for line in REFERENCE_CFG.read_text().splitlines():
        if line.startswith("#!ifdef"):
            optional = True
        elif line.startswith("#!endif"):
            optional = False
        module = re.fullmatch(r'loadmodule "(\w+)\.so"', line)
        if module is None:
            continue
        found = subprocess.run(["dpkg", "-S", f"*/kamailio/modules/{module[1]}.so"],
                               capture_output=True, text=True, timeout=30, check=False)
        if found.returncode != 0:
            pytest.skip(f"module {module[1]} is not installed here: {found.stderr.strip()}")
        package = found.stdout.split(":")[0]
        if optional:
            assert f"`{package}`" in section, (module[1], package)
        else:
            assert package in packages, (module[1], package)


# -------------------------------------------------------------------- the README, run


def lab_config(lab: Lab, sip: SipSite, state_dir: Path) -> dict[str, Any]:
    """The lab site's lifeline config as an operator would write it for this edge: the
    defaults of sip_edge.kamailio but the PBX side, and fibre-b without a source (so
    edge-config looks it up on the interface, as the daemon does)."""
    config = sip.config_dict(state_dir)
    config["sip_edge"] = {"kamailio": {"pbx_address": str(lab.lan_site_addr),
                                       "pbx_port": sip.pbx_port}}
    del config["links"][1]["source"]
    return config


def run_in_site(lab: Lab, argv: list[str]) -> tuple[int, str]:
    """argv in the site namespace; (exit code, stdout and stderr)."""
    proc = lab.popen(lab.site, argv, cwd=str(ROOT), stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        lab.stop(proc)
    return proc.returncode, out


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)")
@pytest.mark.skipif(sip_site_skip_reason() is not None, reason=str(sip_site_skip_reason()))
def test_the_readme_sets_up_an_edge_that_carries_calls(lab: Lab, tmp_path: Path) -> None:
    etc = tmp_path / "etc-kamailio"
    etc.mkdir()
    state_dir = tmp_path / "state"
    config_path = tmp_path / "lifeline.yaml"
    sip = SipSite(lab, tmp_path / "sip", edge_dir=etc)
    config = lab_config(lab, sip, state_dir)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    paths = {"/etc/kamailio": str(etc), "/etc/lifeline/lifeline.yaml": str(config_path)}

    def here(arg: str) -> str:
        for path, ours in paths.items():
            if arg == path or arg.startswith(path + "/"):
                return ours + arg[len(path):]
        return arg

    daemon: LifelineProcess | None = None
    ran: list[str] = []
    for argv in readme_commands():
        line = shlex.join(argv)
        args = [here(a) for a in argv]
        if argv[:2] == ["apt-get", "install"]:
            continue  # installed here (sip_site_skip_reason); the packages are checked above
        if argv[0] in ("install", "cp"):
            done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30,
                                  check=False)
            assert done.returncode == 0, f"{line}: {done.stderr}"
        elif argv[:2] == ["lifeline", "edge-config"]:
            code, out = run_in_site(lab, [sys.executable, "-m", "controller", *args[1:]])
            assert code == 0, f"{line}: {out}"
            assert str(lab.link("fibre-b").site_addr) in (etc / "lifeline-site.cfg").read_text()
        elif argv[:2] == ["kamailio", "-c"]:
            code, out = run_in_site(lab, [KAMAILIO, *args[1:]])
            assert code == 0 and "config file ok" in out, f"{line}: {out}"
        elif argv == ["systemctl", "restart", "kamailio"]:
            sip.start()  # Kamailio on etc/kamailio.cfg, the SBCs and the PBX
        elif argv[:2] in (["systemctl", "reload"], ["systemctl", "start"]) \
                and argv[2] == "lifeline":
            daemon = LifelineProcess.with_config(lab, state_dir, config_path.read_text())
            daemon.start()
            daemon.wait_for(site_ready, 30, "trunks up, plan routable and pushed")
        elif argv[:2] == ["lifeline", "status"]:
            code, out = run_in_site(lab, [sys.executable, "-m", "controller", *args[1:]])
            assert code == 0 and "edge kamailio: in sync" in out, f"{line}: {out}"
        else:
            pytest.fail(f"the README's edge set-up runs `{line}`, which this test does not "
                        "know how to run: teach it, so the README stays tested")
        ran.append(line)
    assert daemon is not None and sip.kamailio is not None, f"ran only: {ran}"
    # Kamailio really runs the copied cfg from that directory, with the site file beside it.
    assert sip.edge.cfg_path == etc / "kamailio.cfg"

    # Calls through the edge: in from a carrier to every range, out from the PBX.
    pbx = sip.peers["pbx"]
    for numbers, _ in DID_RANGES:
        did = numbers.split("-")[0]
        assert sip.inbound(did) == 0, f"inbound call to {did} failed: {sip.edge.log_tail()}"
        assert pbx.invites_to(did) >= 1, f"{did} did not reach the PBX"
    caller = DID_RANGES[0][0].split("-")[0]
    assert sip.outbound(caller) == 0, f"outbound call failed: {sip.edge.log_tail()}"
    assert sip.peers["carrier-a-sbc1"].invites_from(caller) == 1

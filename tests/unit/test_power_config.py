"""Tests of the ``power:`` config section: defaults, secrets, errors by path, the summary."""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import parse_config, summary
from controller.core.power import PolicyParams, UpsParams
from tests.unit.test_config import build, errors_of

NUT: dict[str, Any] = {"name": "ups-a", "nut": {"host": "127.0.0.1", "ups": "dummy"}}
SNMP: dict[str, Any] = {"name": "ups-b",
                        "snmp": {"host": "192.0.2.9", "community_file": "/etc/lifeline/snmp"}}


def with_power(power: dict[str, Any]) -> str:
    return build(lambda d: d.__setitem__("power", power))


def power_errors(power: dict[str, Any]) -> list[str]:
    return errors_of(with_power(power))


def test_defaults_are_filled_in_and_reach_the_core() -> None:
    cfg = parse_config(with_power({"ups": [NUT, SNMP]}))
    assert cfg.power is not None
    assert cfg.power.policy() == PolicyParams(grace=30.0, dr_after=None, runtime_margin=300.0,
                                              hold_down=300.0, command=False)
    assert cfg.power.ups_params() == {"ups-a": UpsParams(2.0, 2.0, None, 3),
                                      "ups-b": UpsParams(2.0, 2.0, None, 3)}
    nut = cfg.power.ups[0].nut
    assert nut is not None and (nut.port, nut.username, nut.tls) == (3493, None, None)
    snmp = cfg.power.ups[1].snmp
    assert snmp is not None and snmp.port == 161


def test_no_power_section_is_none() -> None:
    assert parse_config(build()).power is None


def test_every_setting_is_read() -> None:
    cfg = parse_config(with_power({
        "ups": [{"name": "rack-1", "interval": "1s", "timeout": "500ms", "stale_after": None,
                 "fail_after": 5,
                 "nut": {"host": "ups.example.net", "port": 3494, "ups": "apc_1",
                         "username": "monitor", "password_env": "NUT_PASSWORD",
                         "tls": {"ca_file": "/etc/ssl/nut-ca.pem",
                                 "server_name": "ups.example.net"}}},
                {"name": "rack-2", "snmp": {"host": "192.0.2.10", "v3": {
                    "user": "lifeline", "auth_protocol": "sha256",
                    "auth_key_file": "/etc/lifeline/snmp-auth", "priv_protocol": "aes256",
                    "priv_key_file": "/etc/lifeline/snmp-priv"}}}],
        "grace": "1m", "dr_after": "10m", "runtime_margin": "8m", "hold_down": "15m",
        "on_battery_low": ["/usr/local/sbin/site-shutdown", "--in", "60"]}))
    assert cfg.power is not None
    assert cfg.power.policy() == PolicyParams(60.0, 600.0, 480.0, 900.0, command=True)
    assert cfg.power.ups_params()["rack-1"] == UpsParams(1.0, 0.5, None, 5)
    v3 = cfg.power.ups[1].snmp.v3  # type: ignore[union-attr]
    assert v3 is not None and (v3.auth_protocol, v3.priv_protocol) == ("sha256", "aes256")


@pytest.mark.parametrize(("power", "error"), [
    ({"ups": []}, "power.ups: must not be empty"),
    ({"ups": [{"name": "ups-a"}]}, "power.ups[0]: needs exactly one of nut or snmp"),
    ({"ups": [{**NUT, **SNMP, "name": "ups-a"}]},
     "power.ups[0]: needs exactly one of nut or snmp"),
    ({"ups": [NUT, NUT]}, "power: two UPSes are named ups-a"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "password": "hunter2"}}]},
     "power.ups[0].nut.password: an inline password is not accepted: use password_file or "
     "password_env, so the secret stays out of config files, backups and logs"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "username": "mon"}}]},
     "power.ups[0].nut: username needs exactly one of password_file or password_env"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "username": "mon", "password_env": "A",
                              "password_file": "/etc/p"}}]},
     "power.ups[0].nut: username needs exactly one of password_file or password_env"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "password_file": "/etc/p"}}]},
     "power.ups[0].nut: a password_file or password_env needs a username"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "username": "mon", "password_env": "1BAD"}}]},
     "power.ups[0].nut.password_env: must be an environment variable name"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "username": "m", "password_file": "rel/p"}}]},
     "power.ups[0].nut.password_file: must be an absolute path"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "ups": "my ups"}}]},
     "power.ups[0].nut.ups: must be the UPS's name in upsd"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "port": 0}}]}, "power.ups[0].nut.port: must be >= 1"),
    ({"ups": [{**NUT, "nut": {**NUT["nut"], "tls": {"ca_fle": "/x"}}}]},
     "power.ups[0].nut.tls.ca_fle: unknown field (did you mean ca_file?)"),
    ({"ups": [{**SNMP, "snmp": {"host": "192.0.2.9", "community": "public"}}]},
     "power.ups[0].snmp.community: an inline community is not accepted: use community_file"),
    ({"ups": [{**SNMP, "snmp": {"host": "192.0.2.9"}}]},
     "power.ups[0].snmp: needs exactly one of community_file (SNMP v2c) or v3"),
    ({"ups": [{**SNMP, "snmp": {"host": "192.0.2.9", "v3": {
        "user": "u", "auth_key_file": "/k", "auth_key": "secret"}}}]},
     "power.ups[0].snmp.v3.auth_key: an inline auth_key is not accepted: use auth_key_file"),
    ({"ups": [{**SNMP, "snmp": {"host": "192.0.2.9", "v3": {
        "user": "u", "auth_key_file": "/k"}}}]},
     "power.ups[0].snmp.v3: priv_protocol aes needs a priv_key_file"),
    ({"ups": [{**SNMP, "snmp": {"host": "192.0.2.9", "v3": {
        "user": "u", "auth_key_file": "/k", "auth_protocol": "sha1"}}}]},
     "power.ups[0].snmp.v3.auth_protocol: must be 'md5', 'sha', "),
    ({"ups": [{**NUT, "timeout": "3s"}]},
     "power.ups[0]: timeout 3s is longer than the interval 2s"),
    ({"ups": [{**NUT, "stale_after": "4s"}]},
     "power.ups[0]: stale_after 4s is not longer than two intervals (4s)"),
    ({"ups": [{**NUT, "interval": "0s"}]}, "power.ups[0].interval: must be longer than 0"),
    ({"ups": [NUT], "grace": "-1s"}, "power.grace: must not be negative"),
    ({"ups": [NUT], "on_battery_low": "/sbin/shutdown -h now"},
     "power.on_battery_low: must be a list (argv, run without a shell)"),
    ({"ups": [NUT], "on_battery_low": ["shutdown", "-h"]},
     "power.on_battery_low: 'shutdown': the program must be an absolute path"),
    ({"ups": [NUT], "on_battery_low": []},
     "power.on_battery_low: must be a non-empty list of arguments"),
    ({"ups": [NUT], "grace_time": "1m"}, "power.grace_time: unknown field (did you mean grace?)"),
])
def test_mistakes_are_named_by_path(power: dict[str, Any], error: str) -> None:
    errors = power_errors(power)
    assert any(e.startswith(error) for e in errors), errors


def test_an_inline_secret_never_reaches_the_error_text() -> None:
    errors = power_errors({"ups": [{**NUT, "nut": {**NUT["nut"], "password": "hunter2"}}]})
    assert errors and not any("hunter2" in e for e in errors)


def test_summary_says_what_power_lifeline_watches_and_does() -> None:
    text = summary(parse_config(with_power({
        "ups": [{**NUT, "stale_after": "1m",
                 "nut": {**NUT["nut"], "username": "mon", "password_file": "/etc/lifeline/nut"}},
                SNMP],
        "dr_after": "10m", "on_battery_low": ["/usr/local/sbin/site-shutdown", "60"]})))
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("power:"))
    assert head == ("power: 2 UPSes; page after 30s on battery; DIDs to DR on LB/FSD, runtime "
                    "below 5m, or on battery for 10m; back after 5m of stable mains; "
                    "on_battery_low: /usr/local/sbin/site-shutdown 60")
    at = lines.index(head)
    assert lines[at + 1] == ("  ups-a: NUT dummy@127.0.0.1:3493, login mon, every 2s (timeout "
                             "2s); unknown after 3 failed reads or unchanged for 1m")
    assert lines[at + 2].startswith("  ups-b: SNMP 192.0.2.9:161 v2c, every 2s")
    assert lines[at + 2].endswith("never stale by sameness")  # the default: off
    assert "/etc/lifeline/nut" not in text


def test_summary_of_a_site_without_power() -> None:
    assert "power: not watched (no power section)" in summary(parse_config(build()))


def test_power_without_any_dr_destination_is_a_warning() -> None:
    warned = parse_config(with_power({"ups": [NUT]})).warnings
    assert any(w.startswith("power: no DID range names a dr_destination") for w in warned)


def test_power_with_a_dr_destination_is_not_warned() -> None:
    def site(d: dict[str, Any]) -> None:
        d["power"] = {"ups": [NUT]}
        d["trunks"] = [{"name": "a-sbc1", "carrier": "carrier-a", "uri": "sip:192.0.2.7"}]
        d["destinations"] = [{"name": "pbx", "uri": "sip:192.0.2.8"},
                             {"name": "dr", "uri": "sip:203.0.113.8"}]
        d["dids"] = [{"numbers": "+390212345600-+390212345699", "trunks": ["a-sbc1"],
                      "destination": "pbx", "dr_destination": "dr"}]

    warned = parse_config(build(site)).warnings
    assert not any(w.startswith("power:") for w in warned), warned


def test_summary_brackets_an_ipv6_host() -> None:
    text = summary(parse_config(with_power({"ups": [
        {**NUT, "nut": {"host": "2001:db8::9", "ups": "dummy"}}]})))
    assert "NUT dummy@[2001:db8::9]:3493" in text

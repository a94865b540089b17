"""``services:`` in the config: what loads, what is refused and how the error reads, what
``check-config`` says, and the probe spec and health parameters a service hands on."""

from __future__ import annotations

import pytest

from controller.config import ConfigError, parse_config, summary
from controller.core.health import HealthParams

BASE = """
site: svc
links:
  - {name: fibre-a, interface: wan-a, gateway: 198.51.100.1,
     probes: {targets: [{icmp: 192.0.2.1}]}}
route_groups: [{name: internet, links: [fibre-a]}]
destinations:
  - {name: pbx, uri: "sip:192.0.2.130"}
  - {name: dr, uri: "sip:192.0.2.140"}
"""


def load(services: str) -> object:
    return parse_config(BASE + "services:\n" + services)


def errors(services: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(services)
    return info.value.errors


def test_an_http_and_a_tcp_service_load_with_their_defaults() -> None:
    cfg = parse_config(BASE + """
services:
  - name: crm
    http: {url: "https://crm.example.test/health", expect_status: [200, 204],
           body_match: "ready", ca_file: /etc/lifeline/ca.pem}
    needed_by: [pbx]
  - name: sbc
    tcp: {host: 192.0.2.50, port: 5060}
""")
    crm, sbc = cfg.services
    assert (crm.interval, crm.timeout, crm.cert_warn_days) == (5.0, 2.0, 21)
    assert crm.thresholds.down_after == 3 and crm.thresholds.hold_down == 60.0
    spec = crm.probe_spec()
    assert (spec.kind, spec.host, spec.port) == ("http", "crm.example.test", 443)
    assert spec.http is not None
    assert spec.http.expect_status == frozenset({200, 204})
    assert spec.http.ca_file == "/etc/lifeline/ca.pem" and spec.http.verify
    tcp = sbc.probe_spec()
    assert (tcp.kind, tcp.host, tcp.port, tcp.http) == ("tcp", "192.0.2.50", 5060, None)
    assert cfg.service("sbc") is sbc
    assert sbc.needed_by == []


def test_health_params_follow_the_service_thresholds() -> None:
    cfg = load("""
  - name: crm
    http: {url: "http://192.0.2.60:8080/"}
    interval: 10s
    timeout: 3s
    thresholds: {down_after: 2, hold_down: 2m, slow: 1s}
""")
    hp = cfg.services[0].health_params()  # type: ignore[attr-defined]
    assert isinstance(hp, HealthParams)
    assert (hp.interval, hp.down_after, hp.hold_down) == (10.0, 2, 120.0)
    assert hp.degraded_latency == 1.0
    assert hp.flap_max_hold_down >= hp.hold_down
    assert cfg.services[0].probe_spec().port == 8080  # type: ignore[attr-defined]


def test_needed_by_must_name_a_destination_with_a_did_you_mean() -> None:
    errs = errors("""
  - name: crm
    http: {url: "https://crm.example.test/"}
    needed_by: [pbz, dr, dr]
""")
    assert any("services[0].needed_by[0]: unknown destination 'pbz' (did you mean pbx?)"
               in e for e in errs), errs
    assert any("services[0].needed_by[2]: dr is listed twice" in e for e in errs), errs


def test_needed_by_is_checked_even_when_another_service_is_bad() -> None:
    errs = errors("""
  - name: crm
    http: {url: "https://crm.example.test/"}
    interval: soon
  - name: erp
    tcp: {host: 192.0.2.9, port: 443}
    needed_by: [nowhere]
""")
    assert any("services[0].interval" in e for e in errs), errs
    assert any("services[1].needed_by[0]: unknown destination 'nowhere'" in e
               for e in errs), errs


@pytest.mark.parametrize(("service", "expected"), [
    ("{name: a, http: {url: 'https://x.test/'}, tcp: {host: 192.0.2.1, port: 1}}",
     "exactly one of http"),
    ("{name: a}", "exactly one of http"),
    ("{name: a, http: {url: 'ftp://x.test/'}}", "not http:// or https://"),
    ("{name: a, http: {url: 'https://u:secret@x.test/'}}", "puts a secret"),
    ("{name: a, http: {url: 'https://x.test:99999/'}}", "no usable port"),
    ("{name: a, http: {url: 'https://x.test/', body_match: a, body_regex: b}}", "not both"),
    ("{name: a, http: {url: 'https://x.test/', body_regex: '(unclosed'}}",
     "not a regular expression"),
    ("{name: a, http: {url: 'https://x.test/', method: HEAD, body_match: ok}}",
     "has no body"),
    ("{name: a, http: {url: 'http://x.test/', ca_file: /etc/ca.pem}}", "is for https://"),
    ("{name: a, http: {url: 'https://x.test/', expect_status: [700]}}",
     "expect_status"),
    ("{name: a, http: {url: 'https://x.test/'}, timeout: 6s}", "longer than the interval"),
    ("{name: a, http: {url: 'https://x.test/'}, thresholds: {slow: 3s}}",
     "not below the timeout"),
    ("{name: a, tcp: {host: 192.0.2.1, port: 0}}", "tcp.port"),
    ("{name: a, tcp: {host: 192.0.2.1, port: 1}, colour: red}", "colour"),
])
def test_bad_services_are_refused_with_a_reason(service: str, expected: str) -> None:
    errs = errors(f"  - {service}\n")
    assert any(expected in e and "services[0]" in e for e in errs), errs


def test_duplicate_service_names_are_refused() -> None:
    errs = errors("""
  - {name: crm, tcp: {host: 192.0.2.1, port: 80}}
  - {name: crm, tcp: {host: 192.0.2.2, port: 80}}
""")
    assert any("services[1].name: duplicate service name crm (also services[0])" in e
               for e in errs), errs


def test_check_config_says_what_each_service_does() -> None:
    cfg = load("""
  - name: crm
    http: {url: "https://crm.example.test/health"}
    needed_by: [pbx]
  - name: sbc-gui
    http: {url: "https://192.0.2.51/", verify: false}
""")
    text = summary(cfg)  # type: ignore[arg-type]
    assert "services: 2 watched, 1 needed by a destination" in text
    assert ("  crm: GET https://crm.example.test/health every 5s (timeout 2s), down after 3 "
            "failed, back after 1m good; needed by pbx (down -> their DIDs go to DR)") in text
    assert "sbc-gui: GET https://192.0.2.51/" in text and "alerts only" in text
    assert "certificate alert 21 days before it expires" in text
    assert any("services[1].http.verify: false" in w
               for w in cfg.warnings)  # type: ignore[attr-defined]


def test_a_config_without_services_has_none_and_says_nothing_of_them() -> None:
    cfg = parse_config(BASE)
    assert cfg.services == []
    assert "services:" not in summary(cfg)

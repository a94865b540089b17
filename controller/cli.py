"""The ``lifeline`` command: run, check-config, status, events, report, edge-config,
recordings verify, demo (and ``--version``); the operator's force, pin, maintenance and
overrides live in controller.cli_override.

Exit codes: 0 fine, 1 runtime failure (daemon not reachable, lab needs root), 2 bad input
(config errors, bad arguments). Every subcommand prints errors as plain sentences.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from controller.cli_override import add_commands as add_override_commands
from controller.runtime.journal import KINDS
from controller.version import VERSION

if TYPE_CHECKING:
    from controller.actuators.sipedge.kamailio.sitecfg import EdgeSite
    from controller.actuators.sipedge.kamailio.sitefiles import FileAction

DEFAULT_CONFIG = "/etc/lifeline/lifeline.yaml"
# Where Debian's kamailio package keeps its config (its systemd unit runs kamailio.cfg there).
DEFAULT_EDGE_DIR = "/etc/kamailio"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lifeline", description="Keeps a contact center reachable.")
    p.add_argument("--version", action="version", version=f"lifeline {VERSION}")
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    run.add_argument("--dry-run", action="store_true",
                     help="probe and decide, print what would change, change nothing")
    run.add_argument("--log-format", choices=("text", "json"), default=None)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file and summarize it")
    check.add_argument("-c", "--config", help=f"the config file (default {DEFAULT_CONFIG})")
    check.add_argument("file", nargs="?", help="the config file, as -c gives it")
    check.set_defaults(func=cmd_check_config)

    status = sub.add_parser("status", help="links and routes, from the running daemon")
    status.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    status.add_argument("--socket", help="API unix socket (default: from the config)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    add_override_commands(sub)  # force, pin, maintenance, overrides

    events = sub.add_parser("events", help="recent journal events")
    events.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    events.add_argument("--state-dir", help="read this state dir instead of the config's")
    events.add_argument("-n", "--limit", type=int, default=50)
    events.add_argument("--kind", help=f"only events of this kind: {', '.join(KINDS)}")
    events.add_argument("--subject")
    events.add_argument("--json", action="store_true")
    events.set_defaults(func=cmd_events)

    report = sub.add_parser(
        "report", help="SLA report from the journal: availability, failovers, time in DR",
        description="Availability per link, trunk and site, failovers with their time to "
                    "fail over and to recover, and time on the DR destination, replayed "
                    "from the journal (docs/report.md). Times are UTC.")
    report.add_argument("--since", default="30d",
                        help="start: an age before --until (30d, 12h, 1w) or a UTC date/time "
                             "(2026-11-01, 2026-11-01T08:00); default 30d")
    report.add_argument("--until", default="now", help="end: now (default), an age or a date")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    where = report.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                       help="read the journal in this config's state_dir")
    where.add_argument("--journal", help="read this journal file instead")
    report.set_defaults(func=cmd_report)

    edge = sub.add_parser("edge-config",
                          help="write this site's values for the reference Kamailio edge")
    edge.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    edge.add_argument("--dir", default=DEFAULT_EDGE_DIR,
                      help="Kamailio's config directory, where kamailio.cfg runs from "
                           f"(default {DEFAULT_EDGE_DIR})")
    edge.add_argument("--dry-run", action="store_true",
                      help="print the site file and what would be written; write nothing")
    edge.set_defaults(func=cmd_edge_config)

    recordings = sub.add_parser("recordings", help="call recordings and their backups")
    rec_sub = recordings.add_subparsers(metavar="COMMAND")
    verify = rec_sub.add_parser(
        "verify", help="check now that recent recordings are in every backup, equal by SHA-256",
        description="Scans the store and each backup now (no daemon needed), and for the "
                    "recordings of the window reports per backup the missing ones, those of "
                    "another size, and those whose copy's SHA-256 differs (every copy is read "
                    "back). Exit 0 all good, 1 findings, 2 could not check.")
    verify.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    verify.add_argument("--since", default="7d",
                        help="the window: recordings with an mtime this recent (default 7d)")
    verify.add_argument("--backup", action="extend", nargs="+", default=[], metavar="NAME",
                        help="check only these backups (default: every one)")
    verify.add_argument("--json", action="store_true", help="the report as JSON, for machines")
    verify.add_argument("--progress", action="store_true",
                        help="show progress on stderr even when it is not a terminal")
    verify.set_defaults(func=cmd_recordings_verify)
    recordings.set_defaults(func=lambda _args: _help(recordings))

    demo = sub.add_parser("demo", help="build the lab and play the failover scenario")
    demo.add_argument("--quick", action="store_true", help="shorter hold-down and pauses")
    demo.add_argument("--keep-going", action="store_true",
                      help="do not stop at the first failed expectation")
    demo.add_argument("--no-sip", action="store_true",
                      help="skip the telephony act (Kamailio, SBCs, calls during a trunk failover)")
    demo.add_argument("--no-power", action="store_true",
                      help="skip the power act (a UPS runs down: calls to the DR PBX and back)")
    demo.add_argument("--no-recordings", action="store_true",
                      help="skip the recordings act (a night's copy misses files: paged)")
    demo.set_defaults(func=cmd_demo)
    return p


def _load(path: str) -> Any:
    from controller.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_recordings_verify(args: argparse.Namespace) -> int:
    import difflib

    from controller.core.durations import parse_duration
    from controller.runtime import recverify_cli

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"lifeline recordings verify: --since {args.since}: {exc}", file=sys.stderr)
        return 2
    if since <= 0:
        print("lifeline recordings verify: --since must be more than 0", file=sys.stderr)
        return 2
    cfg = _load(args.config)
    if cfg is None:
        return 2
    rec = cfg.recordings
    if rec is None:
        print(f"lifeline recordings verify: {args.config} has no recordings: section",
              file=sys.stderr)
        return 2
    known = [b.name for b in rec.backups]
    for name in args.backup:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            print(f"lifeline recordings verify: no backup {name!r}"
                  + (f" (did you mean {hint[0]!r}?)" if hint else "")
                  + f"; the config has {', '.join(known)}", file=sys.stderr)
            return 2
    progress = recverify_cli.Progress(recverify_cli.progress_stream(args.progress))
    run = recverify_cli.run_verify(rec, since_s=since, names=args.backup, progress=progress)
    if args.json:
        print(json.dumps(recverify_cli.to_json(run), indent=2))
    else:
        sys.stdout.write(recverify_cli.render_text(run))
    if run.error:
        print(f"lifeline recordings verify: {run.error}", file=sys.stderr)
    return run.exit_code


def cmd_check_config(args: argparse.Namespace) -> int:
    from controller.config import summary

    if args.config and args.file:
        print(f"lifeline check-config: two config files given ({args.config} with -c and "
              f"{args.file}); name one, with -c or without", file=sys.stderr)
        return 2
    cfg = _load(args.config or args.file or DEFAULT_CONFIG)
    if cfg is None:
        return 2
    print(summary(cfg))
    for warning in cfg.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from controller.runtime.daemon import run_daemon
    from controller.runtime.logs import setup_logging

    cfg = _load(args.config)
    if cfg is None:
        return 2
    setup_logging(args.log_format or cfg.log_format, 10 if args.verbose else 20)
    return asyncio.run(run_daemon(cfg, dry_run=args.dry_run, config_path=Path(args.config)))


def _socket_path(args: argparse.Namespace) -> Path | None:
    if getattr(args, "socket", None):
        return Path(args.socket)
    cfg = _load(args.config)
    return None if cfg is None else Path(cfg.api_socket_path)


def cmd_status(args: argparse.Namespace) -> int:
    from exporters.statusview import fetch_status, render_status

    sock = _socket_path(args)
    if sock is None:
        return 2
    try:
        doc = asyncio.run(fetch_status(sock))
    except OSError as exc:
        print(f"lifeline status: no daemon answers on {sock}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.json else render_status(doc))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from controller.runtime.journal import read_events

    if args.kind is not None and args.kind not in KINDS:
        print(f"lifeline events: unknown event kind {args.kind!r}; the journal's kinds are "
              f"{', '.join(KINDS)}", file=sys.stderr)
        return 2
    if args.state_dir:
        state_dir = Path(args.state_dir)
    else:
        cfg = _load(args.config)
        if cfg is None:
            return 2
        state_dir = Path(cfg.state_dir)
    path = state_dir / "journal.sqlite3"
    try:
        events = read_events(path, args.limit, args.kind, args.subject)
    except sqlite3.Error as exc:
        print(f"lifeline events: cannot read the journal {path}: {exc}", file=sys.stderr)
        return 1
    for ev in events:
        if args.json:
            print(json.dumps({"ts": ev.ts, "kind": ev.kind, "subject": ev.subject,
                              "message": ev.message, "data": ev.data}))
        else:
            print(ev.line())
    if not events and not args.json:
        print(f"no events in {state_dir}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from controller.core.sla import compute
    from controller.runtime.history import NoJournal, read_history
    from exporters.slareport import parse_when, render

    now = time.time()
    try:
        until = parse_when(args.until, now=now)
        since = parse_when(args.since, now=now, relative_to=until)
    except ValueError as exc:
        print(f"lifeline report: {exc}", file=sys.stderr)
        return 2
    if since >= until:
        print("lifeline report: --since must be before --until", file=sys.stderr)
        return 2
    if args.journal:
        path = Path(args.journal)
    else:
        cfg = _load(args.config)
        if cfg is None:
            return 2
        path = Path(cfg.state_dir) / "journal.sqlite3"
    print(f"reading {path} ...", file=sys.stderr, flush=True)
    try:
        history = read_history(path, until, progress=lambda n: print(
            f"  {n} events ...", file=sys.stderr, flush=True))
    except NoJournal as exc:
        print(f"lifeline report: {exc}", file=sys.stderr)
        return 1
    print(f"{len(history.events)} events read", file=sys.stderr)
    report = compute(history.events, since, until, now, pruned=history.pruned)
    sys.stdout.write(render(report, args.format))
    return 0


def _interface_addresses() -> dict[str, list[str]]:
    """Every interface here and its addresses now (read-only netlink dumps)."""
    from controller.actuators.netlink import Netlink

    async def read() -> dict[str, list[str]]:
        async with Netlink() as nl:
            names = [li.ifname for li in await nl.links()]
            found = await nl.addresses()
        return {name: found.get(name, []) for name in names}

    return asyncio.run(read())


def cmd_edge_config(args: argparse.Namespace) -> int:
    from controller.actuators.sipedge.kamailio import sitecfg, sitefiles
    from controller.actuators.sipedge.kamailio.sitecfg import SiteError

    cfg = _load(args.config)
    if cfg is None:
        return 2
    confdir = Path(args.dir).absolute()
    try:
        found = None
        if any(link.source is None for link in cfg.links):
            try:
                found = _interface_addresses()
            except OSError as exc:
                print(f"lifeline edge-config: cannot read this machine's interfaces to find "
                      f"the links' addresses: {exc}", file=sys.stderr)
                return 1
        uplinks = sitecfg.link_sources(cfg, found)
        site = sitecfg.site_from_config(cfg, uplinks, PurePosixPath(confdir),
                                        str(Path(args.config).absolute()))
        files = sitecfg.site_files(site)
        act = sitefiles.preview if args.dry_run else sitefiles.install
        actions = act(confdir, files)
    except SiteError as exc:
        print(f"lifeline edge-config: {exc}", file=sys.stderr)
        return 2
    except sitefiles.SiteIOError as exc:
        print(f"lifeline edge-config: {exc}", file=sys.stderr)
        return 1
    print(_edge_report(args, confdir, site, actions))
    return 0


def _edge_report(args: argparse.Namespace, confdir: Path, site: EdgeSite,
                 actions: list[FileAction]) -> str:
    """What was (or would be) written and what the operator does next."""
    from controller.actuators.sipedge.kamailio import sitecfg

    cfg_file = confdir / sitecfg.CFG_FILE
    done = ({"create": "would create", "update": "would update"} if args.dry_run
            else {"create": "created", "update": "updated"})
    done |= {"unchanged": "unchanged", "keep": "kept (exists)"}
    out: list[str] = []
    if args.dry_run:
        out += [f"{confdir / sitecfg.SITE_FILE} would hold:", "", sitecfg.site_file(site)]
    out.append(f"the reference SIP edge in {confdir}: uplinks "
               f"{', '.join(site.uplinks)} port {site.carrier_port}, PBX side "
               f"{site.pbx_address}:{site.pbx_port}, JSON-RPC 127.0.0.1:{site.rpc_port}"
               + (f", TLS on port {site.carrier_tls_port}" if site.tls else ""))
    out += [f"  {done[a.action]:<14} {a.path}" for a in actions]
    steps: list[str] = []
    try:
        text = cfg_file.read_text()
    except OSError:
        steps.append(f"copy lifeline's reference cfg there: install -m 644 "
                     f"examples/kamailio/kamailio.cfg {confdir}/")
    else:
        if f'include_file "{sitecfg.SITE_FILE}"' not in text:
            steps.append(f"{cfg_file} does not include {sitecfg.SITE_FILE}: it is not "
                         "lifeline's reference cfg (or an older one); copy "
                         "examples/kamailio/kamailio.cfg over it")
    if site.tls:
        steps.append(f"a trunk is reached over TLS: install the Debian package "
                     f"kamailio-tls-modules and put this edge's certificate in "
                     f"{site.tls_path} (examples/kamailio/tls.cfg shows how)")
    steps += [f"check it: kamailio -c -f {cfg_file}",
              "start it: systemctl restart kamailio (Debian's unit runs "
              "/etc/kamailio/kamailio.cfg)" if confdir == Path(DEFAULT_EDGE_DIR)
              else f"start it: kamailio -f {cfg_file}",
              "let lifeline push to it: systemctl reload lifeline (it reads sip_edge at "
              "start and on reload)",
              f"see it in sync: lifeline status -c {args.config} shows "
              "\"edge kamailio: in sync\""]
    out += ["next:", *(f"  {i}. {step}" for i, step in enumerate(steps, 1))]
    return "\n".join(out)


def cmd_demo(args: argparse.Namespace) -> int:
    # The lab belongs to the tests: it ships in the source tree, not on a router.
    try:
        from tests.lab.demo import run_demo
    except ImportError:
        print("lifeline demo: the lab lives in the source tree (tests/lab); run `make demo` "
              "or `python -m controller demo` from a checkout", file=sys.stderr)
        return 2
    return run_demo(quick=args.quick, keep_going=args.keep_going, sip=not args.no_sip,
                    power=not args.no_power, recordings=not args.no_recordings)


if __name__ == "__main__":
    sys.exit(main())

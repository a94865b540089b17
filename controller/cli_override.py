"""The operator's override commands of ``lifeline``: ``force``, ``pin``, ``maintenance``
and ``overrides`` (registered by controller.cli).

Each sends one request to the running daemon: over its unix socket by default (what
``lifeline status`` uses; the socket's mode is the access control and the journal names
the unix user), or over TCP with ``--url`` and ``--token-file`` (docs/api.md). Every
change carries a reason and lapses at its expiry (``--for`` or ``--until``, else the
daemon's ``api.default_expiry``); ``--off`` lifts it early.
``lifeline maintenance TRUNK`` keeps its old form: a trunk mark with no ``--for``, which
lapses after the longest an override may last (7 days) unless lifted before.

Exit codes as in controller.cli: 0 done, 1 the daemon did not answer or refused the
caller (token, rate limit), 2 the request itself was refused (unknown name, bad value).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]

TOKEN_ENV = "LIFELINE_API_TOKEN"  # noqa: S105 (the variable's name, not a secret)


def add_commands(sub: Any) -> None:
    """Add force, pin, maintenance and overrides to the ``lifeline`` subparsers."""
    force = sub.add_parser(
        "force", help="force a route group to one link (until the expiry or --off)",
        description="Routes the group through LINK whatever the policy would pick, until "
                    "the expiry; then the policy decides again. While the forced link is down "
                    "or in maintenance "
                    "the force is held but not applied (the group fails over as usual; "
                    "status says why) and it applies again when the link is back.")
    force.add_argument("group")
    force.add_argument("link", nargs="?", help="the link to use (not with --off)")
    _change_options(force)
    force.set_defaults(func=cmd_force)

    pin = sub.add_parser(
        "pin", help="pin a number's DID range to a trunk, or to its DR destination ('dr')",
        description="Routes the DID range holding NUMBER through TRUNK (or, with 'dr', to "
                    "the range's disaster-recovery destination: a DR drill) until the "
                    "expiry; then the plan decides again. While that trunk (or the DR "
                    "destination) is down or in maintenance the pin is held but not "
                    "applied, and it applies again when it is back.")
    pin.add_argument("number", help="any number of the range, e.g. +390212345601")
    pin.add_argument("trunk", nargs="?", help="a trunk that can carry the range, or dr")
    _change_options(pin)
    pin.set_defaults(func=cmd_pin)

    maint = sub.add_parser(
        "maintenance", help="take a link or a trunk out of use, or put it back",
        usage="lifeline maintenance [link|trunk] NAME [--reason R] [--for 2h] [--off]",
        description="`maintenance link NAME` keeps the group routes off a link (a group "
                    "with no other usable link keeps it); "
                    "`maintenance trunk NAME` gives a trunk no calls; both lapse at the "
                    "expiry. `maintenance TRUNK` (no kind) sets the trunk mark of before, "
                    "which lapses after 7 days (the longest an override lasts) unless "
                    "lifted with --off. Marks survive restarts (state_dir/overrides.json). "
                    "A mark the config sets stays until the config changes.")
    maint.add_argument("kind_or_trunk", metavar="link|trunk")
    maint.add_argument("name", nargs="?", metavar="NAME")
    _change_options(maint, reason_required=False)
    maint.set_defaults(func=cmd_maintenance)

    listing = sub.add_parser("overrides", help="the operator's overrides in force")
    _where_options(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_overrides)


def _where_options(p: argparse.ArgumentParser) -> None:
    from controller.cli import DEFAULT_CONFIG  # imported by now: cli.py calls us

    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--socket", help="API unix socket (default: from the config)")
    p.add_argument("--url", help="the daemon's HTTP address instead of the socket, e.g. "
                                 "http://192.0.2.10:9730 (needs a token)")
    p.add_argument("--token-file", help=f"file holding the API token for --url (or set "
                                        f"{TOKEN_ENV})")


def _change_options(p: argparse.ArgumentParser, reason_required: bool = True) -> None:
    p.add_argument("--reason", default="",
                   help="why, for the journal, status and the on-call engineer"
                        + (" (required)" if reason_required else ""))
    when = p.add_mutually_exclusive_group()
    when.add_argument("--for", dest="duration", help="how long, e.g. 30m, 2h "
                                                     "(default: the daemon's default_expiry)")
    when.add_argument("--until", help="when it lapses, RFC 3339, e.g. 2026-12-04T06:00:00Z")
    p.add_argument("--off", action="store_true", help="lift it now")
    _where_options(p)


class Refusal(Exception):
    """Bad arguments, said before anything is sent (exit 2)."""


def _daemon(args: argparse.Namespace) -> Any:
    from controller.config import ConfigError, load_config
    from exporters.operator_client import Daemon, read_token

    if args.url:
        if args.token_file:
            token = read_token(Path(args.token_file))
        elif os.environ.get(TOKEN_ENV):
            token = os.environ[TOKEN_ENV].strip()
        else:
            raise Refusal(f"--url needs a token: --token-file FILE or {TOKEN_ENV}")
        return Daemon(url=args.url, token=token)
    if args.socket:
        return Daemon(socket=Path(args.socket))
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise Refusal(str(exc)) from None
    return Daemon(socket=Path(cfg.api_socket_path))


def _setting(args: argparse.Namespace, **fields: str) -> dict[str, Any]:
    """The body of a change: the fields, the reason and the expiry, checked here first."""
    from controller.core.durations import parse_duration

    if not args.reason.strip():
        raise Refusal("--reason is required: say why, for the journal and the on-call "
                      "engineer")
    body: dict[str, Any] = {**fields, "reason": args.reason}
    if args.duration:
        try:
            if parse_duration(args.duration) <= 0:
                raise ValueError("must be longer than zero")
        except ValueError as exc:
            raise Refusal(f"--for: {exc}") from None
        body["for"] = args.duration
    if args.until:
        body["until"] = args.until
    return body


def _lifting(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"reason": args.reason} if args.reason.strip() else None


def _run(args: argparse.Namespace, what: str, method: str, path_parts: tuple[str, ...],
         body: Callable[[], dict[str, Any] | None]) -> tuple[int, Any] | int:
    """Check the arguments (``body``), then send; the exit code when either failed, else
    (status, answer). The body is built first so a bad argument is said before the daemon
    is looked for."""
    from exporters.operator_client import call, path_of

    command = f"lifeline {args.command_name}"
    try:
        sent = body()
        daemon = _daemon(args)
        code, doc = asyncio.run(call(daemon, method, path_of(*path_parts), sent))
    except (Refusal, ValueError) as exc:  # ValueError: the token file
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = args.url or args.socket or "the daemon's socket"
        print(f"{command}: no daemon answers on {where}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if code == 200:
        return code, doc
    error = doc.get("error", doc) if isinstance(doc, dict) else doc
    print(f"{command}: {what}: refused ({code}): {error}", file=sys.stderr)
    return 2 if code in (400, 404, 413, 422) else 1


def _change(args: argparse.Namespace, what: str, method: str, path_parts: tuple[str, ...],
            body: Callable[[], dict[str, Any] | None], line: Callable[[Any], str]) -> int:
    """A set or a lift: send it, then print ``line(answer)`` and the notes it calls for."""
    done = _run(args, what, method, path_parts, body)
    return done if isinstance(done, int) else _report(done[1], line(done[1]))


def _named(value: str | None, hint: str) -> str:
    if not value:
        raise Refusal(hint)
    return value


def _until_text(doc: Any) -> str:
    until = doc.get("until") if isinstance(doc, dict) else None
    if not isinstance(until, int | float):
        return ""
    left = until - time.time()
    return (f" until {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(until))}"
            f" ({max(0, round(left / 60))} min from now)")


def _report(doc: Any, line: str) -> int:
    print(line)
    if isinstance(doc, dict):
        if doc.get("applied") is False:
            print("note: the daemon keeps it but it is not in force yet (see "
                  "`lifeline status`)")
        if doc.get("kept_on_disk") is False:
            print("warning: the daemon could not write it to its state dir; it holds until "
                  "the daemon stops", file=sys.stderr)
    return 0


def cmd_force(args: argparse.Namespace) -> int:
    args.command_name = "force"
    what, parts = f"route group {args.group}", ("groups", args.group, "force")
    if args.off:
        return _change(args, what, "DELETE", parts, lambda: _lifting(args),
                       lambda _: f"{what}: force lifted; the policy decides again")
    return _change(
        args, what, "PUT", parts,
        lambda: _setting(args, link=_named(
            args.link, "name the link: lifeline force GROUP LINK --reason ...")),
        lambda doc: f"{what}: forced to {args.link}{_until_text(doc)}")


def cmd_pin(args: argparse.Namespace) -> int:
    args.command_name = "pin"
    number = args.number.strip()
    parts = ("dids", number, "pin")
    if args.off:
        return _change(args, number, "DELETE", parts, lambda: _lifting(args),
                       lambda _: f"{number}: pin lifted; the plan decides again")
    where = "its DR destination" if args.trunk == "dr" else f"trunk {args.trunk}"

    def line(doc: Any) -> str:
        target = doc.get("target") if isinstance(doc, dict) else None
        return f"DID range {target or 'of ' + number}: pinned to {where}{_until_text(doc)}"

    return _change(
        args, number, "PUT", parts,
        lambda: _setting(args, trunk=_named(
            args.trunk, "name the trunk (or dr): lifeline pin NUMBER TRUNK --reason ...")),
        line)


def cmd_maintenance(args: argparse.Namespace) -> int:
    args.command_name = "maintenance"
    if args.name is None:  # `lifeline maintenance TRUNK`: the mark with no expiry of its own
        kind, name = "trunk", args.kind_or_trunk
        legacy = not (args.duration or args.until)
    elif args.kind_or_trunk in ("link", "trunk"):
        kind, name, legacy = args.kind_or_trunk, args.name, False
    else:
        print(f"lifeline maintenance: the kind is link or trunk, not "
              f"{args.kind_or_trunk!r}", file=sys.stderr)
        return 2
    parts = (f"{kind}s", name, "maintenance")
    what = f"{kind} {name}"
    if args.off:
        return _change(args, what, "DELETE", parts, lambda: _lifting(args),
                       lambda doc: _maintenance_line(kind, name, doc, on=False))
    return _change(args, what, "PUT", parts,
                   (lambda: {"reason": args.reason, "open": True}) if legacy
                   else (lambda: _setting(args)),
                   lambda doc: _maintenance_line(kind, name, doc, on=True))


def _maintenance_line(kind: str, name: str, doc: Any, *, on: bool) -> str:
    if kind == "trunk" and isinstance(doc, dict) and "maintenance" in doc:
        why = doc.get("maintenance")  # the answer says what holds now
        return f"trunk {name}: " + (f"in maintenance, gets no calls ({why})" if why
                                    else "in service")
    if not on:
        return f"{kind} {name}: back in service"
    if kind == "trunk":
        return f"trunk {name}: in maintenance, gets no calls{_until_text(doc)}"
    # A group with no other usable link keeps this one (a link in maintenance beats none).
    return (f"link {name}: in maintenance, carries no group route{_until_text(doc)} "
            "while its groups have another usable link")


def cmd_overrides(args: argparse.Namespace) -> int:
    args.command_name = "overrides"
    done = _run(args, "overrides", "GET", ("overrides",), lambda: None)
    if isinstance(done, int):
        return done
    found = done[1] if isinstance(done[1], list) else []
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no overrides: the policy and the plan decide everything")
    for item in found:
        if isinstance(item, dict):
            value = f" -> {item['value']}" if item.get("value") else ""
            print(f"{item.get('kind', '?')} {item.get('target', '?')}{value}"
                  f"{_until_text(item)} by {item.get('by', '?')}: {item.get('reason', '')}")
            if item.get("applied") is False:  # held: its link or trunk is down
                print(f"  held, not applied: {item.get('why_not') or 'see lifeline status'}")
    return 0

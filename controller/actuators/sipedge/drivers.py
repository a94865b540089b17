"""The SIP edges the daemon pushes the DID plan to, behind one protocol, and their set-up.

Every edge is a `SipEdge`: it turns the plan into what it understands (Kamailio: htable
blocks and dispatcher states over JSON-RPC, reconciled level-triggered; webhook and
command: the signed JSON document of docs/edge-actuators.md), answers an outcome with `ok`
and `describe()` (an ApplyResult, or a webhook's or command's PushResult) and never raises.
Each is also an Actuator (controller.actuators.base). This module only names the protocol
and builds the configured edges; the actuators hold the logic.
"""

from __future__ import annotations

from typing import Protocol

from controller.actuators.sipedge.command import CommandActuator
from controller.actuators.sipedge.kamailio import KamailioActuator, KamailioClient
from controller.actuators.sipedge.plan import EdgePlan
from controller.actuators.sipedge.webhook import WebhookActuator, load_secret
from controller.config import Config

__all__ = ["PushOutcome", "SipEdge", "drivers_from_config"]


class PushOutcome(Protocol):
    """What a push answers: whether the edge took the plan, and the words for the log."""

    @property
    def ok(self) -> bool: ...

    def describe(self) -> str: ...


class SipEdge(Protocol):
    """A SIP edge lifeline pushes the plan to; nothing here raises."""

    name: str

    async def push(self, plan: EdgePlan) -> PushOutcome: ...

    async def failures(self) -> dict[str, int]:
        """Failed calls per trunk name as the edge counts them (the edge signal)."""
        ...

    async def close(self) -> None: ...


def drivers_from_config(cfg: Config) -> list[SipEdge]:
    """The configured edges; a missing webhook secret is a start-up error (ValueError)."""
    edge = cfg.sip_edge
    out: list[SipEdge] = []
    if edge.kamailio is not None:
        out.append(KamailioActuator(KamailioClient(edge.kamailio.rpc_url,
                                                   timeout=edge.kamailio.timeout)))
    if edge.webhook is not None:
        wh = edge.webhook
        secret = load_secret(file=wh.secret_file, env=wh.secret_env) if wh.secret_file \
            else load_secret(env=wh.secret_env)
        out.append(WebhookActuator(wh.url, secret, site=cfg.site,
                                   timeout=wh.timeout, retries=wh.retries))
    if edge.command is not None:
        out.append(CommandActuator(list(edge.command.argv), site=cfg.site,
                                   timeout=edge.command.timeout))
    return out

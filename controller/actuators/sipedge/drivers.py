"""The SIP edge drivers the daemon pushes the DID plan to, behind one small interface.

Each driver turns the plan into what its edge understands (Kamailio: htable blocks and
dispatcher states over JSON-RPC, reconciled level-triggered; webhook and command: the signed
JSON document of docs/edge-actuators.md) and answers ``(ok, what it did or why not)``; none
raises. This module only adapts; the actuators hold the logic.
"""

from __future__ import annotations

import logging

from controller.actuators.sipedge.command import CommandActuator
from controller.actuators.sipedge.document import PushResult
from controller.actuators.sipedge.kamailio import KamailioActuator, KamailioClient, KamailioError
from controller.actuators.sipedge.plan import EdgePlan
from controller.actuators.sipedge.webhook import WebhookActuator, load_secret
from controller.config import Config

log = logging.getLogger(__name__)


class KamailioDriver:
    name = "kamailio"

    def __init__(self, url: str, timeout: float) -> None:
        self.client = KamailioClient(url, timeout=timeout)
        self.actuator = KamailioActuator(self.client)
        self._warned: tuple[str, ...] = ()

    async def push(self, plan: EdgePlan) -> tuple[bool, str]:
        try:
            steps, result = await self.actuator.reconcile(plan)
        except (KamailioError, OSError) as exc:
            return False, str(exc)
        # Said once per change, not every cycle: the plan is carried, only not in full.
        for warning in sorted(set(steps.warnings) - set(self._warned)):
            log.warning("%s: %s", self.name, warning)
        self._warned = steps.warnings
        if result.errors:
            return False, "; ".join(str(e) for e in result.errors[:3])
        if steps.conflicts:
            return False, "; ".join(steps.conflicts[:3])
        if not steps.steps:
            return True, ""
        return True, (f"{len(steps.steps)} change(s) in {result.rpc_calls} RPCs "
                      f"({result.seconds * 1000:.0f} ms)")

    async def failures(self) -> dict[str, int]:
        return await self.actuator.edge_failures()

    async def close(self) -> None:
        await self.client.close()


class _DocumentDriver:
    """Webhook and command: both send the plan document and answer a PushResult."""

    name = "document"
    actuator: WebhookActuator | CommandActuator

    async def push(self, plan: EdgePlan) -> tuple[bool, str]:
        res: PushResult = await self.actuator.push(plan)
        if not res.ok:
            return False, res.error or f"failed (status {res.status})"
        if res.attempts == 0:
            return True, ""
        kind = "full plan" if res.full else "changes"
        return True, f"pushed {kind} (generation {res.generation}) in {res.attempts} attempt(s)"

    async def failures(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        if isinstance(self.actuator, WebhookActuator):
            await self.actuator.aclose()


class WebhookDriver(_DocumentDriver):
    name = "webhook"

    def __init__(self, actuator: WebhookActuator) -> None:
        self.actuator = actuator


class CommandDriver(_DocumentDriver):
    name = "command"

    def __init__(self, actuator: CommandActuator) -> None:
        self.actuator = actuator


Driver = KamailioDriver | WebhookDriver | CommandDriver


def drivers_from_config(cfg: Config) -> list[Driver]:
    """The configured edges; a missing webhook secret is a start-up error (ValueError)."""
    edge = cfg.sip_edge
    out: list[Driver] = []
    if edge.kamailio is not None:
        out.append(KamailioDriver(edge.kamailio.rpc_url, edge.kamailio.timeout))
    if edge.webhook is not None:
        wh = edge.webhook
        secret = load_secret(file=wh.secret_file, env=wh.secret_env) if wh.secret_file \
            else load_secret(env=wh.secret_env)
        out.append(WebhookDriver(WebhookActuator(wh.url, secret, site=cfg.site,
                                                 timeout=wh.timeout, retries=wh.retries)))
    if edge.command is not None:
        out.append(CommandDriver(CommandActuator(list(edge.command.argv), site=cfg.site,
                                                 timeout=edge.command.timeout)))
    return out

"""The Kamailio actuator: observe / plan / apply against one Kamailio's JSON-RPC endpoint.

`observe()` reads what Kamailio holds (the `did`, `edgestat` and `edgecfg` htables, the
dispatcher sets, the uac records, the sockets: six read RPCs), `plan()` is the planner's
PURE difference, and `apply()` turns each step into its RPC, recording a failed one
instead of raising. `reconcile()` does all three, so a restarted Kamailio (empty htable, no
trunks) gets the whole plan again on the next cycle, and one already in sync costs the six
reads and no writes. It is also the SIP edge the daemon pushes to (`push`, `failures`,
`close`, see sipedge.drivers). It decides nothing: the DID policy made the plan.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Final, TypeAlias

from controller.actuators.base import Actuator, ApplyResult, StepError
from controller.actuators.sipedge.kamailio.answers import (
    EdgeActual,
    EdgeSocket,
    Registration,
    edge_carrier,
    parse_ds_list,
    parse_dump,
    parse_registrations,
    parse_sockets,
    string_values,
    trunk_failures,
)
from controller.actuators.sipedge.kamailio.client import KamailioClient, KamailioError
from controller.actuators.sipedge.kamailio.planner import (
    DEFAULT_MAX_WILD,
    AddRegistration,
    AddTrunk,
    DeleteDid,
    DeleteSetting,
    EdgeSteps,
    RemoveRegistration,
    RemoveTrunk,
    SetDid,
    SetSetting,
    SetTrunkState,
    Step,
    hazard,
    phases,
    plan,
    refresh_steps,
    simulate,
)
from controller.actuators.sipedge.plan import EdgePlan

__all__ = ["EdgeResult", "KamailioActuator"]

log = logging.getLogger(__name__)

DID_TABLE: Final = "did"
STAT_TABLE: Final = "edgestat"
CFG_TABLE: Final = "edgecfg"

EdgeResult: TypeAlias = ApplyResult[EdgeSteps, Step]


def _failed(error: str) -> EdgeResult:
    """A result for a cycle that got no further than `error` (nothing was written)."""
    return ApplyResult(EdgeSteps(), errors=(StepError(None, error),))


class KamailioActuator:
    """observe / plan / apply / reconcile, and push as the daemon's SIP edge."""

    name = "kamailio"

    def __init__(self, client: KamailioClient, *, max_wild: int = DEFAULT_MAX_WILD) -> None:
        self.client = client
        self.max_wild = max_wild
        self._refreshed: tuple[str, ...] = ()
        self._warned: tuple[str, ...] = ()

    async def observe(self) -> EdgeActual:
        """Read the edge; raises KamailioError when it cannot be read (then do not plan)."""
        dids = string_values(parse_dump(await self.client.call("htable.dump", DID_TABLE)))
        try:
            targets = parse_ds_list(await self.client.call("dispatcher.list"))
        except KamailioError as exc:
            if "No Destination Sets" not in exc.message:
                raise
            targets = ()
        stats = parse_dump(await self.client.call("htable.dump", STAT_TABLE))
        return EdgeActual(
            dids,
            targets,
            trunk_failures(stats),
            await self.registrations(),
            edge_carrier(stats),
            await self.settings(),
            await self.sockets(),
        )

    async def settings(self) -> dict[str, str] | None:
        """The `edgecfg` htable, or None when the cfg has none."""
        try:
            raw = parse_dump(await self.client.call("htable.dump", CFG_TABLE))
        except KamailioError as exc:
            if exc.message == "No such htable":
                return None
            raise
        return string_values(raw)

    async def sockets(self) -> tuple[EdgeSocket, ...] | None:
        """The edge's listening sockets, or None without the corex module."""
        try:
            return parse_sockets(await self.client.call("corex.list_sockets"))
        except KamailioError as exc:
            if exc.message == "Method Not Found":
                return None
            raise

    async def failures(self) -> dict[str, int]:
        """INVITE failures (408/5xx/timeout) per trunk name since Kamailio started."""
        return trunk_failures(parse_dump(await self.client.call("htable.dump", STAT_TABLE)))

    async def registrations(self) -> tuple[Registration, ...]:
        """The uac records; none on an edge without uac registrations configured."""
        try:
            return parse_registrations(await self.client.call("uac.reg_dump"))
        except KamailioError as exc:
            # 5.6 registers the uac RPCs only with reg_db_url set.
            if exc.message in ("Method Not Found", "Not enabled"):
                return ()
            raise

    def plan(self, desired: EdgePlan, actual: EdgeActual) -> EdgeSteps:
        return plan(desired, actual, self.max_wild)

    async def _run(self, step: Step) -> None:
        c = self.client
        if isinstance(step, SetDid):
            await c.call("htable.sets", DID_TABLE, step.key, step.value)
        elif isinstance(step, DeleteDid):
            await c.call("htable.delete", DID_TABLE, step.key)
        elif isinstance(step, SetSetting):
            await c.call("htable.sets", CFG_TABLE, step.key, step.value)
        elif isinstance(step, DeleteSetting):
            await c.call("htable.delete", CFG_TABLE, step.key)
        elif isinstance(step, AddTrunk):
            await c.call("dispatcher.add", step.group, step.uri, 0, step.priority, step.attrs)
        elif isinstance(step, RemoveTrunk):
            await c.call("dispatcher.remove", step.group, step.uri)
        elif isinstance(step, SetTrunkState):
            await c.call("dispatcher.set_state", step.state, step.group, step.uri)
        elif isinstance(step, AddRegistration):
            r = step.registration
            # 5.6 order: l_uuid, l_username, l_domain, r_username, r_domain, realm,
            # auth_username, auth_password, auth_ha1, auth_proxy, expires, flags, reg_delay,
            # socket, contact_addr ("" = the cfg's reg_contact_addr). All 15 are required.
            await c.call(
                "uac.reg_add", r.uuid, r.user, r.domain, r.user, r.domain, "",
                r.user, r.password, "", r.proxy, r.expires, 0, 0, r.socket, r.contact,
            )  # fmt: skip
        else:
            await c.call("uac.reg_remove", step.uuid)

    async def apply(self, steps: EdgeSteps) -> EdgeResult:
        """Run the steps; htable writes go `concurrency` at a time, the rest in order.

        Never raises for a failed RPC: the error is collected and the next cycle retries.
        `done` and `errors` keep the plan's order, whatever order the writes finished in.
        """
        start, calls0 = time.monotonic(), self.client.calls
        outcomes: dict[int, float | KamailioError] = {}
        sem = asyncio.Semaphore(self.client.concurrency)

        async def one(i: int, step: Step) -> None:
            async with sem:
                t0 = time.monotonic()
                try:
                    await self._run(step)
                except KamailioError as exc:
                    outcomes[i] = exc
                else:
                    outcomes[i] = time.monotonic() - t0

        # Keep the order between kinds (see EdgeSteps); only runs of htable writes overlap.
        for is_did, group in itertools.groupby(
            enumerate(steps.steps), key=lambda item: isinstance(item[1], SetDid | DeleteDid)
        ):
            batch = list(group)
            if is_did:
                await asyncio.gather(*(one(i, s) for i, s in batch))
            else:
                for i, s in batch:
                    await one(i, s)
        ran = [(s, outcomes[i]) for i, s in enumerate(steps.steps)]
        return ApplyResult(
            steps,
            done=tuple(s for s, o in ran if isinstance(o, float)),
            errors=tuple(StepError(s, str(o)) for s, o in ran if isinstance(o, KamailioError)),
            durations_s=tuple(o for _, o in ran if isinstance(o, float)),
            calls=self.client.calls - calls0,
            seconds=time.monotonic() - start,
        )

    async def reconcile(self, desired: EdgePlan) -> tuple[EdgeSteps, EdgeResult]:
        """One level-triggered cycle; a failed read gives an empty plan and that error.

        Registration refreshes are edge-triggered on purpose (Kamailio cannot show that a
        refresh over the new link happened): each distinct request is sent until it succeeds.
        """
        try:
            actual = await self.observe()
        except KamailioError as exc:
            return EdgeSteps(), _failed(str(exc))
        steps = self.plan(desired, actual)
        if desired.refresh_registrations and desired.refresh_registrations != self._refreshed:
            steps = replace(steps, steps=steps.steps + refresh_steps(desired, actual, steps.steps))
        result = await self._apply_guarded(actual, steps)
        # A request is done once no uac RPC failed, also when it needed no step of its own
        # (the record was being added anyway): re-sending it later would re-REGISTER again.
        if desired.refresh_registrations and not any(
            isinstance(e.step, AddRegistration | RemoveRegistration) for e in result.errors
        ):
            self._refreshed = desired.refresh_registrations
        if not desired.refresh_registrations:
            self._refreshed = ()
        return steps, result

    async def _apply_guarded(self, actual: EdgeActual, steps: EdgeSteps) -> EdgeResult:
        """`apply`, phase by phase (planner.phases); once a step failed, a later step that
        would leave calls with no trunk (planner.hazard) is skipped and reported, for the
        next cycle to plan again. With no failure this is exactly `apply(steps)`."""
        start = time.monotonic()
        done: list[Step] = []
        errors: list[StepError[Step]] = []
        durations: list[float] = []
        calls = 0
        for phase in phases(steps.steps):
            # What the edge holds now, needed only to judge hazards once a step failed.
            state = simulate(actual, done) if errors else actual
            run: list[Step] = []
            for step in phase:
                why = hazard(state, step) if errors else None
                if why is None:
                    run.append(step)
                else:
                    errors.append(StepError(step, f"skipped after a failed step: {why}"))
            part = await self.apply(replace(steps, steps=tuple(run)))
            done += part.done
            errors += part.errors
            durations += part.durations_s
            calls += part.calls
        return ApplyResult(steps, done=tuple(done), errors=tuple(errors),
                           durations_s=tuple(durations), calls=calls,
                           seconds=time.monotonic() - start)

    async def push(self, desired: EdgePlan) -> EdgeResult:
        """The SIP edge's push: one reconcile; never raises.

        A plan with conflicts does not count as pushed even when every step took: the edge
        does not hold it in full, and the conflicts are the reasons given.
        """
        try:
            steps, result = await self.reconcile(desired)
        except (KamailioError, OSError) as exc:
            return _failed(str(exc))
        # Said once per change, not every cycle: the plan is carried, only not in full.
        for warning in sorted(set(steps.warnings) - set(self._warned)):
            log.warning("%s: %s", self.name, warning)
        self._warned = steps.warnings
        if result.ok and steps.conflicts:
            return replace(result, errors=tuple(StepError(None, c) for c in steps.conflicts))
        return result

    async def close(self) -> None:
        await self.client.close()


if TYPE_CHECKING:  # mypy holds it to the one actuator shape

    def _is_an_actuator(k: KamailioActuator) -> Actuator[EdgePlan, EdgeActual, EdgeSteps, Step]:
        return k

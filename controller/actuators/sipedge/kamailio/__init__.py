"""Kamailio as the SIP edge: holds a running Kamailio to lifeline's EdgePlan over JSON-RPC.

Level-triggered like every actuator: observe what Kamailio holds, plan only the
differences (PURE), apply them, so a restarted Kamailio gets the whole plan again on the
next cycle and one already in sync costs six read RPCs and no writes. One job per module:
`client` speaks JSON-RPC over HTTP, `answers` reads Kamailio's answers into typed values
(PURE), `planner` lists what must change and says how the plan is stored in Kamailio
(PURE), `actuator` observes, applies and is the SIP edge the daemon pushes to. Boundary:
the only package that speaks Kamailio's RPC; it decides nothing.
"""

from controller.actuators.sipedge.kamailio.actuator import EdgeResult, KamailioActuator
from controller.actuators.sipedge.kamailio.answers import (
    REG_FLAG_INITIALISED,
    REG_FLAG_REGISTERED,
    REG_UUID_PREFIX,
    DsTarget,
    EdgeActual,
    EdgeSocket,
    Registration,
    sip_host,
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
    contact_addr,
    desired_registrations,
    desired_settings,
    did_table,
    plan,
    refresh_steps,
    simulate,
    trunk_socket,
)

__all__ = [
    "DEFAULT_MAX_WILD",
    "REG_FLAG_INITIALISED",
    "REG_FLAG_REGISTERED",
    "REG_UUID_PREFIX",
    "AddRegistration",
    "AddTrunk",
    "DeleteDid",
    "DeleteSetting",
    "DsTarget",
    "EdgeActual",
    "EdgeResult",
    "EdgeSocket",
    "EdgeSteps",
    "KamailioActuator",
    "KamailioClient",
    "KamailioError",
    "Registration",
    "RemoveRegistration",
    "RemoveTrunk",
    "SetDid",
    "SetSetting",
    "SetTrunkState",
    "Step",
    "contact_addr",
    "desired_registrations",
    "desired_settings",
    "did_table",
    "plan",
    "refresh_steps",
    "simulate",
    "sip_host",
    "trunk_socket",
]

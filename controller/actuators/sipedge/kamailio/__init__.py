"""Kamailio as the SIP edge: holds a running Kamailio to lifeline's EdgePlan over JSON-RPC.

Level-triggered like every actuator: observe what Kamailio holds, plan only the
differences (PURE), apply them, so a restarted Kamailio gets the whole plan again on the
next cycle and one already in sync costs six read RPCs and no writes. One job per module:
`client` speaks JSON-RPC over HTTP, `answers` reads Kamailio's answers into typed values
(PURE), `planner` lists what must change and says how the plan is stored in Kamailio
(PURE), `actuator` observes, applies and is the SIP edge the daemon pushes to. `sitecfg` (PURE)
and `sitefiles` give the reference edge (examples/kamailio/kamailio.cfg) its site file for
`lifeline edge-config`; the CLI imports them, the daemon does not. Boundary: the only
package that speaks Kamailio's RPC or writes its config; it decides nothing.
"""

# Each module's __all__ is its one list of public names; the package offers them all.
from controller.actuators.sipedge.kamailio import actuator, answers, client, planner
from controller.actuators.sipedge.kamailio.actuator import *  # noqa: F403
from controller.actuators.sipedge.kamailio.answers import *  # noqa: F403
from controller.actuators.sipedge.kamailio.client import *  # noqa: F403
from controller.actuators.sipedge.kamailio.planner import *  # noqa: F403

__all__ = [*actuator.__all__, *answers.__all__, *client.__all__, *planner.__all__]

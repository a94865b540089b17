"""The one way a lab network is built: namespaces, veth pairs between them, addresses, routes.

Every lab variant is a plan written with ``NetBuilder``: the site lab (``lab.topology.Lab``:
three ISPs, the internet and the LAN, IPv4 or dual stack), the router labs of the route,
conntrack and link-watch tests, the prober/targets pair of the probe tests and benchmark.
Namespaces are named ``<prefix><role>`` with a role of ``netns.LAB_ROLES`` and an owner
record for the prefix, so ``netns.cleanup_stale`` removes what a killed run leaves; the
builder deletes every namespace it made on ``destroy()`` (or when its ``with`` block ends),
and a failed ``create`` leaves none behind. Commands for one namespace go in one
``ip -batch``. A veth pair is created from one lab namespace with its peer placed straight
into the other, so nothing is ever made in the machine's own namespace. Processes are not
its business: whoever starts one stops it (``Lab`` tracks its own).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from ipaddress import ip_interface
from types import TracebackType

from tests.lab import netns

__all__ = ["NetBuilder"]


class NetBuilder:
    """The namespaces of one lab run and the commands that wire them; see the module doc.

    ``ipv6=True`` turns duplicate address detection off in every namespace before any
    interface exists (link-local addresses too), so IPv6 is usable the moment a link is up:
    while an address is tentative the first probes of a just-started daemon would be lost.
    """

    def __init__(self, roles: Sequence[str], prefix: str | None = None, *,
                 ipv6: bool = False) -> None:
        self.prefix = prefix if prefix is not None else netns.new_prefix()
        self.ipv6 = ipv6
        self.roles: list[str] = []
        self._plan(roles)
        self._created: list[str] = []

    def _plan(self, roles: Iterable[str]) -> list[str]:
        new = [r for r in roles if r not in self.roles]
        unknown = sorted(set(new) - set(netns.LAB_ROLES))
        if unknown:
            # cleanup_stale would not recognise them after a crash: refuse up front.
            raise ValueError(f"roles {unknown} are not lab roles {netns.LAB_ROLES}")
        self.roles += new
        return new

    def ns(self, role: str) -> str:
        """The namespace name of ``role``, e.g. ``ll-3fa94c-site``."""
        return f"{self.prefix}{role}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the plan, in the order the roles were given."""
        return [self.ns(r) for r in self.roles]

    @property
    def created(self) -> list[str]:
        """The namespaces made so far and not yet deleted."""
        return list(self._created)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> NetBuilder:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def create(self, roles: Sequence[str] | None = None) -> None:
        """Create the plan's namespaces not made yet (``roles`` adds more to the plan), each
        with its loopback up. Refuses to adopt a namespace that already exists."""
        if roles is not None:
            self._plan(roles)
        todo = [n for n in self.namespaces if n not in self._created]
        if not todo:
            return
        netns.write_owner(self.prefix)
        try:
            existing = set(netns.list_namespaces()) & set(todo)
            if existing:
                raise netns.LabError(f"namespaces already exist: {sorted(existing)}")
            self._created += todo
            netns.add_namespaces(todo)
            for name in todo:
                if self.ipv6:
                    netns.run_cmd(netns.ns_argv(name, [
                        "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0"]))
                netns.ip_batch(name, ["link set lo up"])
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Delete every namespace this builder made; safe to call twice. Processes still in
        them must be stopped first by whoever started them."""
        created, self._created = self._created, []
        if created:
            netns.delete_namespaces(created)
        netns.remove_owner(self.prefix)

    # -- wiring --------------------------------------------------------------------------------

    def veth(self, a: str, a_ifname: str, b: str, b_ifname: str, *,
             a_index: int | None = None, b_index: int | None = None) -> None:
        """A veth pair: ``a_ifname`` in role ``a``, ``b_ifname`` in role ``b``.

        Give the two ends distinct ifindexes (``a_index``/``b_index``) where carrier events
        matter: the kernel reports a carrier change at once only for "urgent" devices, and a
        veth whose index equals its peer's is not one (its event may come up to 1 s late).
        """
        self.ip(a, self.veth_cmd(a_ifname, b, b_ifname, a_index=a_index, b_index=b_index))

    def veth_cmd(self, a_ifname: str, b: str, b_ifname: str, *, a_index: int | None = None,
                 b_index: int | None = None) -> str:
        """The ``ip`` command of ``veth`` to run in the ``a`` end's namespace, for batching
        several pairs made from one namespace into one fork."""
        a_idx = f" index {a_index}" if a_index is not None else ""
        b_idx = f" index {b_index}" if b_index is not None else ""
        return (f"link add {a_ifname}{a_idx} type veth peer name {b_ifname}{b_idx} "
                f"netns {self.ns(b)}")

    def iface(self, role: str, ifname: str, *addresses: str) -> None:
        """Address ``ifname`` in ``role`` (CIDRs; IPv6 ones ``nodad``) and set it up."""
        cmds = [f"address add {a} dev {ifname}" + (" nodad" if ip_interface(a).version == 6
                                                   else "")
                for a in addresses]
        self.ip(role, *cmds, f"link set {ifname} up")

    def ip(self, role: str, *commands: str) -> None:
        """``ip`` commands (without the ``ip``) in ``role``'s namespace, one fork for all."""
        netns.ip_batch(self.ns(role), commands)

    def run(self, role: str, argv: Sequence[str], check: bool = True,
            timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run argv inside ``role``'s namespace and wait; ``check`` raises LabError."""
        return netns.run_cmd(netns.ns_argv(self.ns(role), argv), check=check, timeout=timeout)

    def sysctl(self, role: str, *settings: str) -> None:
        self.run(role, ["sysctl", "-q", "-w", *settings])

"""The Kamailio actuator: DID range -> blocks, plan, plan after apply (simulated, and
against a fake Kamailio answering its RPCs), and the SIP edge's push."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.actuators.sipedge.kamailio import (
    AddTrunk,
    DeleteDid,
    DsTarget,
    EdgeActual,
    EdgeSteps,
    KamailioActuator,
    KamailioClient,
    KamailioError,
    RemoveTrunk,
    SetDid,
    SetTrunkState,
    did_table,
    plan,
    simulate,
)
from controller.actuators.sipedge.kamailio.answers import parse_ds_list, parse_dump
from controller.actuators.sipedge.kamailio.planner import trunk_sets
from controller.actuators.sipedge.plan import (
    DidRoute,
    EdgePlan,
    TrunkState,
    block_lookup,
    split_range,
)
from tests.unit.isolated_loop import run


def _expand(block: str) -> range:
    wild = len(block) - len(block.rstrip("x"))
    base = int(block[1 : len(block) - wild] + "0" * wild)
    return range(base, base + 10**wild)


# ------------------------------------------------------------------ split_range


def test_aligned_range_is_one_block() -> None:
    assert split_range("+390212345600", "+390212345699", 6) == ("+3902123456xx",)


def test_single_number_is_itself() -> None:
    assert split_range("+390212345617", "+390212345617", 6) == ("+390212345617",)


def test_unaligned_range_is_split() -> None:
    blocks = split_range("+390212345605", "+390212345617", 6)
    assert blocks == (
        "+390212345605",
        "+390212345606",
        "+390212345607",
        "+390212345608",
        "+390212345609",
        "+390212345610",
        "+390212345611",
        "+390212345612",
        "+390212345613",
        "+390212345614",
        "+390212345615",
        "+390212345616",
        "+390212345617",
    )
    assert split_range("+390212345605", "+390212345619", 6)[-1] == "+39021234561x"


def test_max_wild_caps_block_size() -> None:
    blocks = split_range("+3902000000", "+3902999999", 4)
    assert len(blocks) == 100 and all(
        b.endswith("xxxx") and not b.endswith("xxxxx") for b in blocks
    )


@pytest.mark.parametrize(
    ("first", "last"),
    [("+39021", "+3902"), ("+3902", "+3901"), ("3902", "3903"), ("+39a", "+39b")],
)
def test_bad_ranges_rejected(first: str, last: str) -> None:
    with pytest.raises(ValueError):
        split_range(first, last, 6)


@settings(max_examples=300)
@given(
    width=st.integers(min_value=2, max_value=9),
    a=st.integers(min_value=0),
    size=st.integers(min_value=0, max_value=5000),
    max_wild=st.integers(min_value=0, max_value=6),
)
def test_blocks_cover_range_exactly(width: int, a: int, size: int, max_wild: int) -> None:
    lo = a % 10**width
    hi = min(lo + size, 10**width - 1)
    first, last = "+" + str(lo).zfill(width), "+" + str(hi).zfill(width)
    blocks = split_range(first, last, max_wild)
    covered: list[int] = []
    for b in blocks:
        assert len(b) == width + 1
        assert len(b) - len(b.rstrip("x")) <= max_wild
        covered.extend(_expand(b))
    assert sorted(covered) == list(range(lo, hi + 1))  # exact cover, and no overlap
    top = min(max_wild, width - 1)
    assert len(blocks) <= 18 * top + 1 + (hi - lo + 1) // 10**top
    # The cfg's walk finds every number of the range in these blocks, and nothing else.
    table = dict.fromkeys(blocks, "v")
    for n in (lo, hi, (lo + hi) // 2):
        assert block_lookup("+" + str(n).zfill(width), table, max_wild) == "v"
    if hi + 1 < 10**width:
        assert block_lookup("+" + str(hi + 1).zfill(width), table, max_wild) is None
    if lo > 0:
        assert block_lookup("+" + str(lo - 1).zfill(width), table, max_wild) is None


# ------------------------------------------------------------------ plan

A = TrunkState("carrierA-sbc1", "sip:127.0.0.1:5081", 1, True)
B = TrunkState("carrierA-sbc2", "sip:127.0.0.1:5082", 1, True)
C = TrunkState("carrierB", "sip:127.0.0.1:5083;transport=tcp", 2, False)
PBX = "sip:127.0.0.1:5090"
DESIRED = EdgePlan(
    trunks=(A, B, C),
    routes=(
        DidRoute("+390212345600", "+390212345699", "carrierA-sbc1", PBX),
        DidRoute("+390298765000", "+390298765009", "carrierB", None),
        DidRoute("+390211110005", "+390211110005", None, PBX),
    ),
)


def test_empty_edge_gets_everything_in_order() -> None:
    steps = plan(DESIRED, EdgeActual()).steps
    kinds = [type(s).__name__ for s in steps]
    # Disabling comes after the DID blocks: no block may name a trunk while it is off.
    assert kinds == ["AddTrunk"] * 3 + ["SetDid"] * 3 + ["SetTrunkState"]
    # One set per trunk, in plan order; every set has one destination, so one priority.
    assert steps[0] == AddTrunk(1, A.uri, 1, "name=carrierA-sbc1;owner=lifeline")
    assert steps[1] == AddTrunk(2, B.uri, 1, "name=carrierA-sbc2;owner=lifeline")
    assert steps[2] == AddTrunk(3, C.uri, 1, "name=carrierB;owner=lifeline")
    # carrierA-sbc2 is in no route: disabled, though healthy (`enabled` does not decide).
    assert steps[-1] == SetTrunkState(2, B.uri, "d")
    assert SetDid("+3902123456xx", f"1|{PBX}") in steps
    assert SetDid("+39029876500x", "3|") in steps
    assert SetDid("+390211110005", f"|{PBX}") in steps


def test_a_range_names_its_trunk_then_its_fallback() -> None:
    with_fallback = EdgePlan(trunks=(A, B, C), routes=(
        DidRoute("+390212345600", "+390212345699", "carrierA-sbc2", PBX,
                 fallback=("carrierA-sbc1",)),
        DidRoute("+390298765000", "+390298765009", "carrierB", None, fallback=("ghost",)),
    ))
    table, conflicts = did_table(with_fallback)
    assert table["+3902123456xx"] == f"2:1|{PBX}"
    assert table["+39029876500x"] == "3|"  # an unknown fallback trunk is dropped, reported
    assert conflicts == ("+390298765000-+390298765009: unknown trunk ghost",)
    actual = simulate(EdgeActual(), plan(with_fallback, EdgeActual()).steps)
    assert {t.uri: t.state for t in actual.targets} == {A.uri: "a", B.uri: "a", C.uri: "a"}
    # The range's trunk is tripped: it leaves the range and every set holding only it is off.
    tripped = EdgePlan(trunks=(A, B, C), routes=(
        DidRoute("+390212345600", "+390212345699", "carrierA-sbc1", PBX),
        DidRoute("+390298765000", "+390298765009", "carrierB", None),
    ))
    steps = plan(tripped, actual).steps
    assert steps == (SetDid("+3902123456xx", f"1|{PBX}"), SetTrunkState(2, B.uri, "d"))


def test_a_hand_change_at_the_edge_is_put_back() -> None:
    actual = simulate(EdgeActual(), plan(DESIRED, EdgeActual()).steps)
    sbc2 = next(t for t in actual.targets if t.uri == B.uri)
    by_hand = replace(actual, targets=tuple(
        replace(t, state="a") if t is sbc2 else t for t in actual.targets
    ), dids={**actual.dids, "+3902123456xx": f"2|{PBX}"})
    assert set(plan(DESIRED, by_hand).steps) == {
        SetTrunkState(2, B.uri, "d"), SetDid("+3902123456xx", f"1|{PBX}")}


def test_a_stranger_in_a_trunk_set_is_reported() -> None:
    actual = simulate(EdgeActual(), plan(DESIRED, EdgeActual()).steps)
    stranger = DsTarget(1, "sip:198.51.100.9:5060", "a", 5, "")
    out = plan(DESIRED, replace(actual, targets=(*actual.targets, stranger)))
    assert out.steps == ()  # not ours: never removed
    assert out.warnings == ("set 1 (trunk carrierA-sbc1) also holds sip:198.51.100.9:5060, "
                            "which lifeline did not add: calls of that trunk may go there",)


def test_in_sync_plans_nothing() -> None:
    actual = simulate(EdgeActual(), plan(DESIRED, EdgeActual()).steps)
    assert plan(DESIRED, actual).empty


def test_only_the_difference() -> None:
    actual = simulate(EdgeActual(), plan(DESIRED, EdgeActual()).steps)
    moved = EdgePlan(
        trunks=(TrunkState(A.name, A.uri, 1, False), B, C),
        routes=(
            DidRoute("+390212345600", "+390212345699", "carrierA-sbc2", PBX),
            *DESIRED.routes[1:],
        ),
    )
    assert plan(moved, actual).steps == (
        SetTrunkState(2, B.uri, "a"), SetDid("+3902123456xx", f"2|{PBX}"),
        SetTrunkState(1, A.uri, "d"))
    fewer = EdgePlan(trunks=(A, B), routes=DESIRED.routes[:1])
    assert set(plan(fewer, actual).steps) == {
        DeleteDid("+39029876500x"),
        DeleteDid("+390211110005"),
        RemoveTrunk(3, C.uri),
    }


def test_foreign_destinations_are_left_alone() -> None:
    foreign = DsTarget(7, "sip:198.51.100.1:5060", "a", 0, "name=manual")
    actual = simulate(EdgeActual(targets=(foreign,)), plan(DESIRED, EdgeActual()).steps)
    assert plan(DESIRED, actual).empty
    assert foreign in actual.targets


def test_unknown_trunk_and_overlap_are_reported() -> None:
    bad = EdgePlan(
        trunks=(A,),
        routes=(
            DidRoute("+390212345600", "+390212345699", "ghost", PBX),
            DidRoute("+390212345600", "+390212345600", "carrierA-sbc1", PBX),
            DidRoute("+390212345650", "+390212345650", "carrierA-sbc1", PBX),
        ),
    )
    table, conflicts = did_table(bad)
    assert table["+3902123456xx"] == f"|{PBX}"
    assert any("ghost" in c for c in conflicts)
    assert "+390212345600" in table  # same length, other key: the exact one wins in the walk
    assert block_lookup("+390212345600", table, 6) == f"1|{PBX}"


_names = st.sampled_from(["t1", "t2", "t3", "t4"])
_trunks = st.lists(
    st.builds(
        TrunkState,
        name=_names,
        uri=st.sampled_from(
            ["sip:127.0.0.1:5001", "sip:127.0.0.1:5002", "sip:h:5003;transport=tls"]
        ),
        group=st.integers(1, 3),
        enabled=st.booleans(),
    ),
    max_size=4,
    unique_by=lambda t: t.name,
)


@st.composite
def _routes(draw: st.DrawFn) -> DidRoute:
    lo = draw(st.integers(0, 9999))
    hi = lo + draw(st.integers(0, 300))
    return DidRoute(
        "+3902" + str(lo).zfill(6),
        "+3902" + str(min(hi, 999999)).zfill(6),
        draw(st.none() | _names),
        draw(st.none() | st.sampled_from([PBX, "sip:dr.example.net;transport=tls"])),
        tuple(draw(st.lists(_names, max_size=2, unique=True))),
    )


_plans = st.builds(
    EdgePlan, trunks=_trunks.map(tuple), routes=st.lists(_routes(), max_size=5).map(tuple)
)


def _active_sets(state: EdgeActual) -> dict[int, tuple[str, ...]]:
    by_set: dict[int, list[str]] = {}
    for t in state.targets:
        if t.state == "a":
            by_set.setdefault(t.group, []).append(t.name or t.uri)
    return {group: tuple(sorted(names)) for group, names in by_set.items()}


def _routing(state: EdgeActual) -> dict[str, tuple[tuple[tuple[str, ...], ...], str]]:
    """What every block does at the edge, set numbers aside: the trunks of each set of
    its chain (active ones) and its destination."""
    sets = _active_sets(state)
    out = {}
    for key, value in state.dids.items():
        chain, _, dest = value.partition("|")
        out[key] = (tuple(sets.get(int(g), ()) for g in chain.split(":") if g), dest)
    return out


def _first_call_goes_to(state: EdgeActual, key: str) -> tuple[str, ...]:
    """The trunk(s) a new call of block ``key`` reaches first, as the cfg's NEXT_TRUNK
    walks the chain: the first set with an active destination."""
    chain = state.dids.get(key, "|").partition("|")[0]
    sets = _active_sets(state)
    return next((sets[int(g)] for g in chain.split(":") if g and sets.get(int(g))), ())


@settings(max_examples=200)
@given(before=_plans, after=_plans)
def test_apply_then_plan_is_empty(before: EdgePlan, after: EdgePlan) -> None:
    start = simulate(EdgeActual(), plan(before, EdgeActual()).steps)
    assert plan(before, start).empty
    moved = simulate(start, plan(after, start).steps)
    assert plan(after, moved).empty
    # Level-triggered: a restarted (empty) edge gets the whole plan back (its sets may be
    # numbered otherwise; what each block does is the same).
    fresh = simulate(EdgeActual(), plan(after, EdgeActual()).steps)
    assert _routing(fresh) == _routing(moved)


@settings(max_examples=300)
@given(before=_plans, after=_plans)
def test_no_step_sends_a_call_to_a_trunk_neither_plan_names(before: EdgePlan,
                                                            after: EdgePlan) -> None:
    """Between any two steps of a change, a block's new call goes to its trunk of the old
    plan or of the new one, never to a third (e.g. a set renumbered under it), and a block
    routable before and after is routable all along (no call finds a gap)."""
    start = simulate(EdgeActual(), plan(before, EdgeActual()).steps)
    steps = plan(after, start).steps
    final = simulate(start, steps)
    keys = set(start.dids) & set(final.dids)
    state = start
    for step in steps:
        state = simulate(state, (step,))
        for key in keys:
            old, new = _first_call_goes_to(start, key), _first_call_goes_to(final, key)
            now = _first_call_goes_to(state, key)
            assert set(now) <= set(old) | set(new), (step, key, old, now, new)
            if old and new:
                assert now, (step, key)


def test_set_numbers_are_kept_when_the_config_changes() -> None:
    """Removing the first trunk renumbers nothing: the others keep their sets, so no
    block ever names a set that holds another trunk."""
    actual = simulate(EdgeActual(), plan(DESIRED, EdgeActual()).steps)
    assert trunk_sets(DESIRED, actual) == {A.name: 1, B.name: 2, C.name: 3}
    without_a = EdgePlan(trunks=(B, C), routes=(
        DidRoute("+390212345600", "+390212345699", B.name, PBX),))
    assert trunk_sets(without_a, actual) == {B.name: 2, C.name: 3}
    steps = plan(without_a, actual).steps
    assert SetDid("+3902123456xx", f"2|{PBX}") in steps
    assert steps[-1] == RemoveTrunk(1, A.uri)
    # A new trunk takes a number no destination uses, not a freed one still in use.
    d = TrunkState("carrierD", "sip:127.0.0.1:5084", 3, True)
    assert trunk_sets(EdgePlan(trunks=(d, B, C)), actual)["carrierD"] == 4
    # The one-set-per-carrier layout of earlier versions: the first trunk keeps set 1,
    # the other of its carrier moves to a new set, out of set 1 only at the end.
    old = EdgeActual(targets=(
        DsTarget(1, A.uri, "a", 2, "name=carrierA-sbc1;owner=lifeline"),
        DsTarget(1, B.uri, "a", 1, "name=carrierA-sbc2;owner=lifeline"),
        DsTarget(2, C.uri, "a", 1, "name=carrierB;owner=lifeline")))
    assert trunk_sets(DESIRED, old) == {A.name: 1, B.name: 3, C.name: 2}
    steps = plan(DESIRED, old).steps
    assert steps[0] == AddTrunk(3, B.uri, 1, "name=carrierA-sbc2;owner=lifeline")
    assert steps[-1] == RemoveTrunk(1, B.uri)


def test_parse_rpc_answers() -> None:
    dump = [{"entry": 1, "size": 1, "slot": [{"name": "k", "value": "v", "type": "str"}]}, "junk"]
    assert parse_dump(dump) == {"k": "v"}
    assert parse_dump({"not": "a list"}) == {}
    ds = {
        "NRSETS": 1,
        "RECORDS": [
            {
                "SET": {
                    "ID": 1,
                    "TARGETS": [
                        {
                            "DEST": {
                                "URI": "sip:a",
                                "FLAGS": "DX",
                                "PRIORITY": 2,
                                "ATTRS": {"BODY": "name=a;owner=lifeline"},
                            }
                        },
                        {"DEST": "bad"},
                    ],
                }
            }
        ],
    }
    (t,) = parse_ds_list(ds)
    assert (t.group, t.uri, t.state, t.priority, t.name, t.owned) == (1, "sip:a", "d", 2, "a", True)
    assert parse_ds_list(None) == ()


# ------------------------------------------------------------------ apply against a fake

CARRIER_ADDR = "192.0.2.10"
SECOND_UPLINK = "198.51.100.2"


class FakeKamailio(KamailioClient):
    """Kamailio's RPCs on in-memory tables, answering in the JSON shapes Kamailio 5.6 uses:
    what the actuator writes is read back through the same parsers as on a real edge."""

    def __init__(self) -> None:
        super().__init__("http://kamailio.invalid/RPC")
        self.tables: dict[str, dict[str, object]] = {
            "did": {},
            "edgecfg": {},
            "edgestat": {"edge::carrier": f"{CARRIER_ADDR}:5060", "trunk_fail::t1": 2},
        }
        self.targets: dict[tuple[int, str], dict[str, object]] = {}
        self.regs: dict[str, dict[str, object]] = {}

    async def call(self, method: str, *params: str | int) -> Any:
        self.calls += 1
        try:
            return self._answer(method, params)
        except KeyError as exc:
            raise KamailioError(method, f"not found: {exc}", 404) from None

    def _answer(self, method: str, p: tuple[str | int, ...]) -> Any:
        if method == "htable.dump":
            table = self.tables[str(p[0])]
            slot = [{"name": k, "value": v, "type": "str"} for k, v in table.items()]
            return [{"entry": 0, "size": len(slot), "slot": slot}] if slot else []
        if method == "htable.sets":
            self.tables[str(p[0])][str(p[1])] = p[2]
        elif method == "htable.delete":
            self.tables[str(p[0])].pop(str(p[1]))
        elif method == "dispatcher.list":
            if not self.targets:
                raise KamailioError(method, "No Destination Sets", 500)
            groups = sorted({g for g, _ in self.targets})
            return {"NRSETS": len(groups), "RECORDS": [
                {"SET": {"ID": g, "TARGETS": [{"DEST": d} for (gg, _), d in self.targets.items()
                                              if gg == g]}}
                for g in groups]}
        elif method == "dispatcher.add":
            self.targets[(int(p[0]), str(p[1]))] = {
                "URI": p[1], "FLAGS": "AP", "PRIORITY": p[3], "ATTRS": {"BODY": p[4]}}
        elif method == "dispatcher.remove":
            del self.targets[(int(p[0]), str(p[1]))]
        elif method == "dispatcher.set_state":
            self.targets[(int(p[1]), str(p[2]))]["FLAGS"] = f"{str(p[0]).upper()}P"
        elif method == "uac.reg_dump":
            return list(self.regs.values())
        elif method == "uac.reg_add":
            if p[0] in self.regs:
                raise KamailioError(method, "uuid already exists", 409)
            self.regs[str(p[0])] = {
                "l_uuid": p[0], "r_username": p[3], "r_domain": p[4], "auth_password": p[7],
                "auth_proxy": p[9], "expires": p[10], "socket": p[13], "flags": 0,
                # "" is the cfg's reg_contact_addr, which reg_dump shows resolved.
                "contact_addr": p[14] or f"{CARRIER_ADDR}:5060"}
        elif method == "uac.reg_remove":
            del self.regs[str(p[0])]
        elif method == "corex.list_sockets":
            return [{"PROTO": proto, "NAME": addr, "PORT": 5060, "ADVERTISE": "-"}
                    for proto in ("udp", "tcp") for addr in (CARRIER_ADDR, SECOND_UPLINK)]
        else:
            raise KamailioError(method, "Method Not Found", -32601)
        return None


@st.composite
def _edge_plans(draw: st.DrawFn) -> EdgePlan:
    """Plans with registering trunks and trunks leaving from either uplink, or from an
    address the edge does not listen on."""
    names = draw(st.lists(_names, unique=True, max_size=4))

    def trunk(i: int, name: str) -> TrunkState:
        registers = draw(st.booleans())
        return TrunkState(
            name, f"sip:198.51.100.{50 + i}:5060" + draw(st.sampled_from(["", ";transport=tcp"])),
            draw(st.integers(1, 2)), draw(st.booleans()),
            source=draw(st.sampled_from([None, CARRIER_ADDR, SECOND_UPLINK, "203.0.113.9"])),
            register_user=f"site-{name}" if registers else None,
            register_domain="carrier.test" if registers else None,
            register_password=draw(st.sampled_from(["a", "b"])) if registers else None,
            register_expires=draw(st.sampled_from([300, 600])) if registers else 600,
        )

    trunks = tuple(trunk(i, name) for i, name in enumerate(names))
    routes = tuple(draw(st.lists(_routes(), max_size=4)))
    refresh = tuple(draw(st.lists(st.sampled_from(names), max_size=2))) if names else ()
    return EdgePlan(trunks, routes, refresh)


@settings(max_examples=150, deadline=None)
@given(plans=st.lists(_edge_plans(), min_size=1, max_size=3))
def test_apply_against_a_fake_kamailio_then_plan_is_empty(plans: list[EdgePlan]) -> None:
    async def cycles() -> None:
        actuator = KamailioActuator(FakeKamailio())
        for desired in plans:
            steps, result = await actuator.reconcile(desired)
            assert result.ok, result.describe()
            assert result.done == steps.steps
            again = actuator.plan(desired, await actuator.observe())
            assert again.empty, again.describe()

    run(cycles())


def test_a_push_with_conflicts_is_not_taken_and_says_why() -> None:
    async def push() -> None:
        actuator = KamailioActuator(FakeKamailio())
        assert await actuator.failures() == {"t1": 2}
        ok = await actuator.push(DESIRED)
        assert ok.ok and ok.describe().startswith("7 change(s) in ")
        assert (await actuator.push(DESIRED)).describe() == ""
        ghost = EdgePlan(DESIRED.trunks,
                         (DidRoute("+390212345600", "+390212345699", "ghost", PBX),))
        result = await actuator.push(ghost)
        assert not result.ok and result.done  # carried what it could, yet not in sync
        assert result.describe() == "+390212345600-+390212345699: unknown trunk ghost"

    run(push())


def test_a_failed_rpc_names_its_step_and_the_others_still_run() -> None:
    async def push() -> None:
        actuator = KamailioActuator(FakeKamailio())
        result = await actuator.apply(EdgeSteps((SetDid("+39021x", "1|"), RemoveTrunk(1, "sip:x"))))
        assert result.done == (SetDid("+39021x", "1|"),)
        (err,) = result.errors
        assert err.step == RemoveTrunk(1, "sip:x")
        assert err.describe().startswith("FAILED remove trunk sip:x from set 1: dispatcher.remove")

    run(push())


class FailingKamailio(FakeKamailio):
    """Refuses the RPCs whose (method, first params) are listed, like an edge that is short
    of memory or has a stale entry."""

    def __init__(self, refuse: set[tuple[str, str]]) -> None:
        super().__init__()
        self.refuse = refuse

    async def call(self, method: str, *params: str | int) -> Any:
        if (method, ":".join(str(p) for p in params[:2])) in self.refuse:
            self.calls += 1
            raise KamailioError(method, "refused (test)", 500)
        return await super().call(method, *params)


def test_after_a_failed_step_no_call_is_left_without_a_trunk() -> None:
    """sbc1 -> sbc2 for range A. If adding sbc2 fails, A's blocks are not pointed at its
    empty set; if a block's rewrite fails, sbc1 is not disabled under it. Both are skipped,
    reported, and done by the next cycle once the edge takes them."""
    moved = EdgePlan(trunks=(A, B, C), routes=(
        DidRoute("+390212345600", "+390212345699", B.name, PBX), *DESIRED.routes[1:]))

    async def cycles() -> None:
        edge = FailingKamailio(set())
        actuator = KamailioActuator(edge)
        await actuator.reconcile(EdgePlan(trunks=(A, C), routes=(
            DidRoute("+390212345600", "+390212345699", A.name, PBX), *DESIRED.routes[1:])))
        sets = trunk_sets(moved, await actuator.observe())
        assert sets == {A.name: 1, B.name: 3, C.name: 2}
        edge.refuse = {("dispatcher.add", f"3:{B.uri}")}
        _, result = await actuator.reconcile(moved)
        assert not result.ok
        skipped = [e for e in result.errors if "skipped" in e.error]
        assert [type(e.step).__name__ for e in skipped] == ["SetDid", "SetTrunkState"]
        assert edge.tables["did"]["+3902123456xx"] == f"1|{PBX}"  # still on sbc1, active
        assert str(edge.targets[(1, A.uri)]["FLAGS"]).startswith("A")
        edge.refuse = {("htable.sets", "did:+3902123456xx")}
        _, result = await actuator.reconcile(moved)
        assert not result.ok
        assert [type(e.step).__name__ for e in result.errors] == ["SetDid", "SetTrunkState"]
        assert str(edge.targets[(1, A.uri)]["FLAGS"]).startswith("A")  # not disabled under A
        edge.refuse = set()
        _, result = await actuator.reconcile(moved)
        assert result.ok and edge.tables["did"]["+3902123456xx"] == f"3|{PBX}"
        assert str(edge.targets[(1, A.uri)]["FLAGS"]).startswith("D")
        assert actuator.plan(moved, await actuator.observe()).empty

    run(cycles())

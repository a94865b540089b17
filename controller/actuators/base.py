"""The one shape every actuator has: observe the actual state, plan the difference, apply it.

Level-triggered, as a Kubernetes controller is: `observe()` reads what the outside system
holds (the kernel's routes, Kamailio's tables, what a receiver was last handed), the PURE
`plan(desired, actual)` lists the steps that make it match the desired state (no I/O, no
clock), and an idempotent `apply(plan)` carries them out and answers an `ApplyResult`
instead of raising, so the next cycle retries what failed. A restart, a manual change or a
lost event converges by itself, and applying a plan then planning again gives an empty plan
(each actuator's tests prove it against a fake). This module holds only the shape: the
protocol and the one result type; it imports nothing of the systems it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["Actuator", "ApplyResult", "PlanLike", "StepError", "StepLike"]


class StepLike(Protocol):
    """What each actuator's steps have in common: one change, said in the operator's words.
    (Each actuator's own `Step` is the union of its step types.)"""

    def describe(self) -> str: ...


class PlanLike(Protocol):
    """What each actuator's plan has in common: the difference between desired and actual,
    empty when they match."""

    @property
    def empty(self) -> bool: ...

    def describe(self) -> str: ...


S = TypeVar("S", bound=StepLike)
P = TypeVar("P", bound=PlanLike)
A = TypeVar("A")
D = TypeVar("D", contravariant=True)


# Frozen without slots: on 3.11 a frozen, slotted generic dataclass cannot be built
# through a parametrised alias (`RouteResult(plan)`): typing's __orig_class__ write fails.
@dataclass(frozen=True)
class StepError(Generic[S]):
    """Why a step failed; `step` None: no step of the plan failed, the actuator could not
    get that far (the actual state could not be read, or the plan cannot be held in full)."""

    step: S | None
    error: str

    def describe(self) -> str:
        if self.step is None:
            return self.error
        return f"FAILED {self.step.describe()}: {self.error}"


@dataclass(frozen=True)
class ApplyResult(Generic[P, S]):
    """What apply() did with a plan: the steps that took, the ones that failed and why.

    A failed step never stops the others and never raises: it is here, and the next cycle
    plans it again. `calls` and `seconds` are the cost, for logs and benchmarks.
    """

    plan: P
    done: tuple[S, ...] = ()
    errors: tuple[StepError[S], ...] = ()
    durations_s: tuple[float, ...] = ()  # one per step in `done`, in the same order
    calls: int = 0  # requests sent to the system (netlink messages, RPCs), retries included
    seconds: float = 0.0  # the whole apply, wall clock

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe(self) -> str:
        """One line: the first three failures, else the changes and their cost; "" when
        there was nothing to do. Free of counters when it fails, so a standing failure
        reads the same each cycle and is reported once."""
        if self.errors:
            return "; ".join(e.describe() for e in self.errors[:3])
        if not self.done:
            return ""
        return f"{len(self.done)} change(s) in {self.calls} requests ({self.seconds * 1000:.0f} ms)"


class Actuator(Protocol[D, A, P, S]):
    """observe / plan / apply for one outside system; `plan` is PURE, `apply` idempotent."""

    async def observe(self) -> A: ...

    def plan(self, desired: D, actual: A) -> P: ...

    async def apply(self, plan: P) -> ApplyResult[P, S]: ...

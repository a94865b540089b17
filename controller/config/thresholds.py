"""Health thresholds and the ``defaults:`` section, and their mapping onto HealthParams.

Links and trunks share one Thresholds model, whose defaults are controller.core.health's,
so a default is written once. ``defaults:`` is merged into each link and trunk before
validation (prefill.py), not here.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated

from pydantic import Field, Strict

from controller.config.fields import ConfigModel, Count, Duration, PositiveDuration, Ratio
from controller.core.health import HealthParams

_HP = HealthParams()


class Thresholds(ConfigModel):
    """Health thresholds; every field maps 1:1 onto HealthParams, which holds the defaults."""

    window: PositiveDuration = _HP.window
    down_after: Count = _HP.down_after
    down_loss: Annotated[Ratio, Field(gt=0.0)] = _HP.down_loss
    rise: Count = _HP.rise
    hold_down: Duration = _HP.hold_down
    degraded_loss: Ratio = _HP.degraded_loss
    degraded_latency: PositiveDuration = _HP.degraded_latency
    degraded_jitter: PositiveDuration = _HP.degraded_jitter
    degraded_mos: Annotated[float, Strict(), Field(ge=1.0, le=4.5)] = _HP.degraded_mos
    flap_half_life: PositiveDuration = _HP.flap_half_life
    flap_max_hold_down: Duration = _HP.flap_max_hold_down


def health_params(interval: float, thresholds: Thresholds) -> HealthParams:
    # Only the knobs the config exposes are passed; HealthParams keeps its own defaults
    # for the rest, so health.py can grow a parameter without a config change.
    known = {f.name for f in fields(HealthParams)}
    overrides = {
        name: getattr(thresholds, name) for name in Thresholds.model_fields if name in known
    }
    return HealthParams(interval=interval, **overrides)


class Defaults(ConfigModel):
    """``defaults:``: links inherit its probe interval and timeout, links and trunks its
    thresholds."""

    interval: PositiveDuration = _HP.interval
    timeout: PositiveDuration = _HP.interval
    thresholds: Thresholds = Thresholds()

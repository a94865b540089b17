"""The ``api:`` section: who may write through the HTTP API and how often, and how long an
operator's override lasts when the request does not say.

Only the settings live here; the token file itself is read by the daemon at start (a file
others can read, or none, refuses the start) and re-read when it changes
(exporters.api_tokens). Without a token file, writes are taken on the unix socket only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict, model_validator

from controller.config.fields import AbsPath, ConfigModel, Count, PositiveDuration

PerMinute = Annotated[float, Field(gt=0, le=6000)]


class ApiSettings(ConfigModel):
    """``api: {token_file, default_expiry, max_expiry, writes_per_minute, burst, ...}``."""

    token_file: AbsPath | None = None
    # An override the operator does not give an expiry lapses after this: a forgotten
    # 3 a.m. pin must not outlive the shift that set it.
    default_expiry: PositiveDuration = 3600.0
    max_expiry: PositiveDuration = 7 * 86400.0
    # Per token (or unix user on the socket), and shared by every TCP caller.
    writes_per_minute: PerMinute = 10.0
    burst: Annotated[int, Strict(), Field(ge=1, le=1000)] = 5
    shared_writes_per_minute: PerMinute = 30.0
    shared_burst: Count = 10

    @model_validator(mode="after")
    def _default_within_max(self) -> ApiSettings:
        if self.default_expiry > self.max_expiry:
            raise ValueError("default_expiry is longer than max_expiry: an override without "
                             "an expiry would be refused")
        return self

"""What one check of a site service says (the CRM, the PBX's web side, the SBC).

A service is checked over HTTP(S) (``probes.http``) or by a TCP handshake
(``probes.tcp``); both answers become a ``ServiceReading``: a Sample's verdict, latency,
error kind and detail, plus what only HTTP has (the status code) and what only HTTPS has
(the certificate's notAfter and the days left when it was read). The controller judges a
service's health from ``ok`` and ``latency`` and alerts on the certificate; a check that
went wrong is a reading with ``ok=False``, never an exception
(``probes.registry.read_service`` is the guard).
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.sample import ErrorKind, Sample

__all__ = ["ServiceReading"]


@dataclass(frozen=True, slots=True)
class ServiceReading:
    """One check of one service."""

    ok: bool
    latency: float | None = None  # seconds to the answer (HTTP headers, TCP handshake)
    error: ErrorKind | None = None
    detail: str = ""  # e.g. "HTTP 500 Internal Server Error", "certificate has expired"
    code: int | None = None  # the HTTP status, when an answer came
    cert_not_after: float | None = None  # the peer certificate's notAfter, Unix seconds
    cert_days_left: float | None = None  # days from the check to notAfter (< 0: expired)

    @classmethod
    def failure(cls, error: ErrorKind, detail: str) -> ServiceReading:
        return cls(False, error=error, detail=detail)

    @classmethod
    def from_sample(cls, sample: Sample) -> ServiceReading:
        return cls(sample.ok, sample.rtt, sample.error, sample.detail, sample.code)

    def to_sample(self) -> Sample:
        return Sample(self.ok, self.latency, self.error, self.detail, self.code)

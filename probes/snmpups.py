"""Read a UPS over SNMP (RFC 1628 UPS-MIB) with pysnmp 7's asyncio API: the I/O half.

One GET asks for the six objects ``probes.upsmib`` names; their values go to its pure
``reading_from_mib``, so this module only talks SNMP and turns every way that can fail into
a failure ``UpsReading`` (a timeout, a refused SNMPv3 user or key, an agent error, a reply
that does not match the request, a bug in the library): it never raises. SNMP v2c takes a
community, v3 an ``SnmpV3User`` whose keys the caller has read (the config layer reads them
from files; they are never logged or shown in a repr). A v2c agent drops a wrong community
silently, so that shows up as a timeout, and the detail says so.

pysnmp is imported at the first read (off the event loop), not with this module: it costs
about 35 ms and 11 MiB of RSS, and a router that watches no SNMP UPS should not pay that.
An ``SnmpUps`` keeps its pysnmp engine between reads (building one takes about 45 ms of
CPU, and an SNMPv3 engine remembers the agent's engine ID and clock instead of rediscovering
them; after a v3 read that got no answer it is dropped, as the agent may have restarted),
but opens its socket only for the length of a read: pysnmp's open dispatcher runs a timer
task ten times a second, which a daemon polling every few seconds need not carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final

from probes.sample import ErrorKind
from probes.ups import UpsReading
from probes.upsmib import OBJECTS, MibValue, reading_from_mib

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "SnmpUps", "SnmpV3User", "read_snmp_ups"]

# The SNMPv3 protocol names a config may use, each with pysnmp's constant's name.
AUTH_PROTOCOLS: Final = {
    "none": "USM_AUTH_NONE",
    "md5": "USM_AUTH_HMAC96_MD5",
    "sha": "USM_AUTH_HMAC96_SHA",
    "sha224": "USM_AUTH_HMAC128_SHA224",
    "sha256": "USM_AUTH_HMAC192_SHA256",
    "sha384": "USM_AUTH_HMAC256_SHA384",
    "sha512": "USM_AUTH_HMAC384_SHA512",
}
PRIV_PROTOCOLS: Final = {
    "none": "USM_PRIV_NONE",
    "des": "USM_PRIV_CBC56_DES",
    "3des": "USM_PRIV_CBC168_3DES",
    "aes": "USM_PRIV_CFB128_AES",
    "aes128": "USM_PRIV_CFB128_AES",
    "aes192": "USM_PRIV_CFB192_AES",
    "aes256": "USM_PRIV_CFB256_AES",
}

# The time a read may take beyond its timeout before we stop waiting for pysnmp itself
# (its timer ticks every 0.1 s; this only guards against a request it never ends).
_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class SnmpV3User:
    """An SNMPv3 (USM) user: protocol names from AUTH_PROTOCOLS and PRIV_PROTOCOLS."""

    user: str
    auth_protocol: str = "sha"
    auth_key: str | None = field(default=None, repr=False)
    priv_protocol: str = "aes"
    priv_key: str | None = field(default=None, repr=False)
    context: str = ""  # the SNMPv3 context name; agents of UPS cards use the empty one

    def problem(self) -> str | None:
        """Why pysnmp would refuse this user, in the operator's words, or None."""
        if self.auth_protocol not in AUTH_PROTOCOLS:
            return f"unknown SNMPv3 auth protocol {self.auth_protocol!r} " \
                   f"(one of {', '.join(AUTH_PROTOCOLS)})"
        if self.priv_protocol not in PRIV_PROTOCOLS:
            return f"unknown SNMPv3 privacy protocol {self.priv_protocol!r} " \
                   f"(one of {', '.join(PRIV_PROTOCOLS)})"
        auth = self.auth_protocol != "none"
        priv = self.priv_protocol != "none"
        if auth != (self.auth_key is not None) or priv != (self.priv_key is not None):
            return "an SNMPv3 protocol other than none needs its key, and none takes no key"
        if priv and not auth:
            return "SNMPv3 privacy needs authentication too (RFC 3414)"
        for key in (self.auth_key, self.priv_key):
            if key is not None and len(key) < 8:
                return "an SNMPv3 key (pass phrase) needs at least 8 characters (RFC 3414)"
        return None


class SnmpUps:
    """One UPS agent read over SNMP; ``read`` never raises, ``aclose`` when done."""

    def __init__(self, host: str, port: int = 161, *, community: str | None = None,
                 v3: SnmpV3User | None = None) -> None:
        self.host = host
        self.port = port
        self._community = community
        self._v3 = v3
        self._engine: Any = None
        self._objects: tuple[Any, ...] = ()  # the request's objects, resolved once
        self._lock = asyncio.Lock()
        self._unheard = False  # the last request got no answer, or an SNMP refusal

    def _problem(self) -> str | None:
        if (self._community is None) == (self._v3 is None):
            return "an SNMP UPS needs either a community (v2c) or an SNMPv3 user, not both"
        if not 0 < self.port < 65536:
            return f"SNMP port {self.port} is outside 1..65535"
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return f"not an IP address: {self.host!r}"
        return None if self._v3 is None else self._v3.problem()

    async def read(self, *, timeout: float) -> UpsReading:
        """One GET of the six UPS-MIB objects, as a reading (a failure one on any error)."""
        problem = self._problem()
        if problem is not None:
            return UpsReading.failure(ErrorKind.INTERNAL, problem)
        async with self._lock:  # one request at a time on the engine's one socket
            self._unheard = False
            try:
                return await self._read(timeout)
            finally:
                await self._close_socket()
                if self._unheard and self._v3 is not None:
                    # The engine remembers the agent's engine ID, boots and clock: after
                    # the agent restarts (a new ID, a clock from zero) our requests get no
                    # answer at all, so a v3 read that was not answered (or was refused)
                    # drops the engine, and the next read discovers the agent afresh.
                    self._engine, self._objects = None, ()

    async def _read(self, timeout: float) -> UpsReading:
        try:
            if self._engine is None:
                # Importing pysnmp and building an engine is blocking CPU work (0.1 s,
                # 0.5 s with pysmi installed): done off the event loop, once.
                self._engine, self._objects = await asyncio.to_thread(_new_engine)
            async with asyncio.timeout(timeout + _GRACE):
                return await self._get(timeout)
        except TimeoutError:
            self._unheard = True
            return UpsReading.failure(ErrorKind.TIMEOUT, self._silence(timeout))
        except ImportError as exc:
            return UpsReading.failure(ErrorKind.INTERNAL, f"SNMP needs {exc.name}: {exc}")
        except OSError as exc:
            return UpsReading.failure(ErrorKind.NETWORK, f"socket: {exc.strerror or exc}")
        except Exception as exc:  # a bug in pysnmp or here: data, never a crash
            return UpsReading.failure(ErrorKind.INTERNAL,
                                      f"SNMP read failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Drop the engine (the socket is already closed after every read)."""
        async with self._lock:
            await self._close_socket()
            self._engine, self._objects = None, ()

    async def _get(self, timeout: float) -> UpsReading:
        from pysnmp.hlapi.v3arch import asyncio as hlapi

        ip = ipaddress.ip_address(self.host)
        target_type = hlapi.UdpTransportTarget if ip.version == 4 else hlapi.Udp6TransportTarget
        target = await target_type.create((self.host, self.port), timeout=timeout, retries=0)
        names = list(OBJECTS)
        indication, status, index, varbinds = await hlapi.get_cmd(
            self._engine, self._auth(hlapi), target, self._context(hlapi),
            *self._objects, lookupMib=False,
        )
        if indication:
            return self._indication(hlapi, indication, timeout)
        if status:
            at = names[int(index) - 1] if 0 < int(index) <= len(names) else "the request"
            return UpsReading.failure(ErrorKind.BAD_REPLY,
                                      f"agent error {status.prettyPrint()} at {at}")
        values = _values(hlapi, names, varbinds)
        if isinstance(values, str):
            return UpsReading.failure(ErrorKind.BAD_REPLY, values)
        return reading_from_mib(values)

    def _auth(self, hlapi: Any) -> Any:
        if self._v3 is None:
            return hlapi.CommunityData(self._community, mpModel=1)
        v3 = self._v3
        return hlapi.UsmUserData(
            v3.user, authKey=v3.auth_key, privKey=v3.priv_key,
            authProtocol=getattr(hlapi, AUTH_PROTOCOLS[v3.auth_protocol]),
            privProtocol=getattr(hlapi, PRIV_PROTOCOLS[v3.priv_protocol]),
        )

    def _context(self, hlapi: Any) -> Any:
        return hlapi.ContextData(contextName=self._v3.context if self._v3 else "")

    def _indication(self, hlapi: Any, indication: Any, timeout: float) -> UpsReading:
        from pysnmp.proto import errind

        self._unheard = True
        if isinstance(indication, errind.RequestTimedOut):
            return UpsReading.failure(ErrorKind.TIMEOUT, self._silence(timeout))
        if isinstance(indication, errind.EncryptionError):  # pysnmp found no cipher
            return UpsReading.failure(
                ErrorKind.INTERNAL, f"SNMPv3 privacy: {indication} (pysnmp ciphers with the "
                "Python package cryptography: is it installed?)")
        if isinstance(indication, _v3_refusals(errind)):
            return UpsReading.failure(
                ErrorKind.BAD_REPLY,
                f"SNMPv3 user {self._v3.user if self._v3 else '?'} refused: {indication} "
                "(user name, protocols or keys differ from the agent's)")
        return UpsReading.failure(ErrorKind.BAD_REPLY, f"SNMP: {indication}")

    def _silence(self, timeout: float) -> str:
        why = "the agent is down, or drops a wrong community silently" \
            if self._v3 is None else "the agent is down or unreachable"
        return f"no SNMP answer from {self.host}:{self.port} within {timeout:g} s ({why})"

    async def _close_socket(self) -> None:
        """Close the engine's socket and await pysnmp's timer task, so no task outlives us."""
        engine = self._engine
        dispatcher = getattr(engine, "transport_dispatcher", None)
        if dispatcher is None:
            return
        timer = getattr(dispatcher, "loopingcall", None)
        try:
            engine.close_dispatcher()
        except Exception:  # a half-open engine is dropped: the next read builds a new one
            self._engine, self._objects = None, ()
        if isinstance(timer, asyncio.Future) and not timer.done():
            await asyncio.wait([timer], timeout=1.0)
        # pysnmp's request configurator remembers the socket it opened on this engine; the
        # next read must open a new one rather than reuse the one closed here.
        if self._engine is not None:
            lcd = self._engine.get_user_context("CommandGeneratorLcdConfigurator")
            if isinstance(lcd, dict):
                lcd.get("tran", {}).clear()


def _new_engine() -> tuple[Any, tuple[Any, ...]]:
    """A pysnmp engine and the six objects resolved against its MIB view (done once: an
    object already resolved is not looked up again on every read)."""
    from pysnmp.hlapi.v3arch import asyncio as hlapi

    engine = hlapi.SnmpEngine()
    view = engine.cache["mibViewController"]
    objects = tuple(hlapi.ObjectType(hlapi.ObjectIdentity(oid)).resolve_with_mib(view)
                    for oid in OBJECTS.values())
    return engine, objects


def _v3_refusals(errind: Any) -> tuple[type[BaseException], ...]:
    """pysnmp's error indications that mean the agent refused our SNMPv3 user."""
    return (errind.UnknownUserName, errind.WrongDigest, errind.AuthenticationFailure,
            errind.UnknownSecurityName, errind.DecryptionError, errind.NotInTimeWindow,
            errind.UnsupportedSecurityLevel, errind.UnknownEngineID,
            errind.AuthenticationError)


def _values(hlapi: Any, names: list[str], varbinds: Any) -> dict[str, MibValue] | str:
    """name -> value from the reply, or why the reply does not answer our request."""
    if len(varbinds) != len(names):
        return f"SNMP reply has {len(varbinds)} values for the {len(names)} asked"
    absent = (hlapi.NoSuchObject, hlapi.NoSuchInstance, hlapi.EndOfMibView)
    out: dict[str, MibValue] = {}
    for name, (oid, value) in zip(names, varbinds, strict=True):
        if str(oid) != OBJECTS[name]:
            return f"SNMP reply names {oid} where {OBJECTS[name]} ({name}) was asked"
        if isinstance(value, absent):
            out[name] = None
        elif isinstance(value, hlapi.Integer32 | hlapi.Integer | hlapi.Gauge32
                        | hlapi.Unsigned32 | hlapi.Counter32 | hlapi.Counter64):
            out[name] = int(value)
        else:
            text = value.prettyPrint() if hasattr(value, "prettyPrint") else repr(value)
            out[name] = f"{type(value).__name__} {text[:40]!r}"
    return out


async def read_snmp_ups(host: str, port: int = 161, *, timeout: float,
                        community: str | None = None,
                        v3: SnmpV3User | None = None) -> UpsReading:
    """One read with an engine of its own (about 45 ms of CPU more than ``SnmpUps.read``)."""
    ups = SnmpUps(host, port, community=community, v3=v3)
    try:
        return await ups.read(timeout=timeout)
    finally:
        await ups.aclose()

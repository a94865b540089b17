"""The operator API wired into the real daemon (fake kernel, no probes): the config's
token file reaches the TCP listener, a token's holder may set a trunk's mark over TCP,
a stranger may not, and the daemon's own answer comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import aiohttp

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.runtime.daemon import Daemon
from tests.unit.daemonloop import looping
from tests.unit.fakecontrol import TOKEN, token_file
from tests.unit.test_calm_start import _config
from tests.unit.test_runtime import _kernel


async def test_the_daemon_takes_a_tokens_write_over_tcp_and_refuses_a_stranger(
        tmp_path: Path) -> None:
    text = _config(tmp_path / "state") + f"api: {{token_file: {token_file(tmp_path)}}}\n"
    cfg = parse_config(text)
    adapter = cast(Callable[[str | None], Netlink], _kernel().adapter)
    daemon = Daemon(cfg, netlink=adapter, start_probes=False)
    async with looping(daemon):
        base = f"http://{cfg.listen}/api/v1/trunks/a1/maintenance"
        body = {"reason": "SBC swap", "open": True}
        async with aiohttp.ClientSession() as session:
            async with session.put(base, json=body) as resp:
                assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"]
            async with session.put(base, json=body,
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
        assert answer["trunk"] == "a1" and "SBC swap" in answer["maintenance"]
        assert daemon.telephony is not None and daemon.telephony.maintenance("a1")

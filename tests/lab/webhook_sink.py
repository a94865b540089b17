"""A webhook receiver for Alertmanager, run inside a lab namespace: every POST body (JSON)
is appended as one line to a file, with the path it came to and when it arrived (``at``,
Unix time), so a test reads what was delivered and a benchmark when.
``python -m tests.lab.webhook_sink --port P --out FILE``; stopped by signal."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web


def app_for(out: Path) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        at = time.time()
        with out.open("a") as f:
            f.write(json.dumps({"path": request.path, "at": at, "body": body}) + "\n")
        return web.Response(text="ok")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/{name}", handle)
    return app


def read(out: Path) -> list[dict[str, object]]:
    """Every delivery so far, in order."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def deliveries(out: Path, receiver: str) -> list[tuple[str, list[str]]]:
    """(status, sorted alert names) of every notification ``receiver`` got so far."""
    got: list[tuple[str, list[str]]] = []
    for d in read(out):
        body: Any = d["body"]
        if d["path"] == f"/{receiver}":
            got.append((str(body["status"]),
                         sorted(a["labels"]["alertname"] for a in body["alerts"])))
    return got


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    web.run_app(app_for(args.out), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()

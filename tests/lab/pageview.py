"""Reading lifeline's status page in a ``tests.lab.browser.Browser``, as an operator would.

Shared by the browser test and the status page benchmark. The page marks what it shows
with data attributes (``data-group``, ``data-link``, ``data-trunk``; the connection mode on
``#conn``); these helpers read those, never the page's JSON. ``watch_active`` leaves a
MutationObserver in the page that stamps the moment (wall clock, ms resolution or better)
the page *rendered* a group's new active link, so the figure does not include the
WebDriver's polling.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.lab.browser import Browser

PAGE_URL = "http://127.0.0.1:9730/"  # the lab's lifeline listen address, in the site

_ACTIVE = "[data-group={group}] .active"

_WATCH = """
const group = arguments[0], want = arguments[1];
const sel = '[data-group=' + JSON.stringify(group) + '] .active';
window.__lifelineShown = null;
const seen = () => {
  const el = document.querySelector(sel);
  if (window.__lifelineShown === null && el && el.textContent === want) {
    window.__lifelineShown = performance.timeOrigin + performance.now();
  }
};
if (window.__lifelineObserver) window.__lifelineObserver.disconnect();
window.__lifelineObserver = new MutationObserver(seen);
window.__lifelineObserver.observe(document.body, {childList: true, subtree: true,
                                                  characterData: true});
seen();
"""


def active_text(b: Browser, group: str) -> str | None:
    """The active link(s) the page shows for ``group``, None before it rendered."""
    script = ("const e = document.querySelector(arguments[0]);"
              "return e === null ? null : e.textContent;")
    sel = _ACTIVE.format(group=json.dumps(group))
    found: str | None = b.call(lambda: b.driver.execute_script(script, sel))
    return found


def conn_mode(b: Browser) -> str:
    mode: str = b.call(lambda: b.driver.execute_script(
        "return document.getElementById('conn').dataset.mode;"))
    return mode


def open_page(b: Browser, url: str = PAGE_URL, group: str = "internet",
              active: str | None = None, timeout: float = 15.0) -> None:
    """Load the page and wait until the stream is live and ``group`` is rendered (with
    ``active`` as its link, if given)."""
    b.call(lambda: b.driver.get(url))
    wait_until(b, lambda: conn_mode(b) == "live" and active_text(b, group) is not None
               and (active is None or active_text(b, group) == active),
               timeout, f"the page live with group {group}" + (f" on {active}" if active else ""))


def wait_until(b: Browser, check: Any, timeout: float, what: str, poll: float = 0.005) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"status page: no {what} within {timeout:g} s "
                               f"(page says {active_text(b, 'internet')!r}, "
                               f"{conn_mode(b)!r})")
        time.sleep(poll)


def watch_active(b: Browser, group: str, link: str) -> None:
    """Stamp, in the page, when ``group`` is rendered as using ``link``."""
    b.call(lambda: b.driver.execute_script(_WATCH, group, link))


def wait_active(b: Browser, group: str, link: str, timeout: float) -> tuple[float, float]:
    """After ``watch_active``: wait until the page shows ``link`` for ``group``; (when the
    page rendered it, when the test saw it), both ``time.time()`` seconds."""
    wait_until(b, lambda: active_text(b, group) == link, timeout,
               f"group {group} shown on {link}")
    seen = time.time()
    shown = b.call(lambda: b.driver.execute_script("return window.__lifelineShown;"))
    return (seen if shown is None else float(shown) / 1000.0), seen


def horizontal_overflow(b: Browser) -> tuple[int, int]:
    """(the document's scroll width, the viewport's width) in CSS pixels."""
    w = b.call(lambda: b.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"))
    return int(w[0]), int(w[1])


def severe(entries: list[dict[str, Any]]) -> list[str]:
    """Console entries at error level (what ``console.error``, an uncaught exception or a
    failed load logs)."""
    return [str(e.get("message")) for e in entries if e.get("level") == "SEVERE"]


def full_height(b: Browser) -> int:
    h: int = b.call(lambda: b.driver.execute_script(
        "return document.documentElement.scrollHeight;"))
    return h

"""Headless Debian Chromium, driven by selenium, inside a lab namespace.

The status page tests and benchmark look at the page the way an operator would, in a real
browser. The browser runs inside a network namespace the test made (the lab's site, where
lifeline listens on the site's own 127.0.0.1): it can reach nothing but that namespace.
On top, as ``LAB-NOTES-PEERS.md`` section 1 found necessary, every name lookup is mapped
to nowhere except 127.0.0.1, Chromium's background calls home are switched off, and
selenium never runs its driver manager (the Debian driver is named, ``SE_OFFLINE``).

Namespaces belong to threads: one worker thread enters the namespace, starts chromedriver
from there (so the driver and the browser it starts live in it) and makes every WebDriver
call, since the HTTP connection to the driver must be opened inside too. ``call`` runs a
function on that thread. ``close`` quits the browser and stops the driver; the profile
and temporary files live under the caller's work dir.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from tests.lab.netns import inside

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Chromium's own calls home (time, updates, spell-check dictionaries, translate), off;
# name lookups map to nothing but 127.0.0.1.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-extensions", "--disable-sync",
    "--disable-features=SpellCheck,NetworkTimeServiceQuerying,Translate,MediaRouter",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
# Selenium must not look for drivers online or send usage statistics; a manager that
# would run anyway fails at once (/bin/false) instead of calling out.
SELENIUM_ENV = {"SE_OFFLINE": "true", "SE_AVOID_STATS": "true", "SE_MANAGER_PATH": "/bin/false"}

T = TypeVar("T")


def browser_skip_reason() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip, test extra)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"needs {path} (Debian package {package})"
    return None


class Browser:
    """One Chromium session in namespace ``ns`` (None: this thread's namespace)."""

    def __init__(self, ns: str | None, workdir: Path, width: int = 1280,
                 height: int = 900) -> None:
        self.ns = ns
        self.workdir = workdir
        self.width, self.height = width, height
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.driver: Any = None
        self._tmp: Path | None = None

    def start(self) -> Browser:
        self._thread = threading.Thread(target=self._serve, name="browser", daemon=True)
        self._thread.start()
        try:
            self.driver = self.call(self._open, timeout=60.0)
        except BaseException:
            self.close()
            raise
        return self

    def _serve(self) -> None:
        with inside(self.ns) if self.ns is not None else nullcontext():
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                fn, fut = job
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn())
                except BaseException as exc:
                    fut.set_exception(exc)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the browser's thread (inside the namespace); its result."""
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut.result(timeout)

    def _open(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.update(SELENIUM_ENV)
        # Chromium's singleton socket lives in TMPDIR, and a unix socket path must stay
        # under 108 bytes: a pytest tmp_path is too deep.
        tmp = self._tmp = Path(tempfile.mkdtemp(prefix="llb-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self.workdir / 'profile'}",
                     f"--window-size={self.width},{self.height}"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        env = {**os.environ, **SELENIUM_ENV, "TMPDIR": str(tmp), "HOME": str(self.workdir)}
        service = Service(executable_path=CHROMEDRIVER, env=env,
                          log_output=str(self.workdir / "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=opts)
        self.viewport(self.width, self.height, driver)
        return driver

    def viewport(self, width: int, height: int, driver: Any = None,
                 mobile: bool = False) -> None:
        """Make the page's viewport exactly ``width`` x ``height`` CSS pixels (the window
        size includes the browser's frame, so it does not). Call on the browser thread or
        from outside (``driver`` None)."""
        params = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        if driver is not None:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", params)
        else:
            self.call(lambda: self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride", params))

    def console(self) -> list[dict[str, Any]]:
        """Browser log entries since the last read (the driver drains them on read)."""
        entries: list[dict[str, Any]] = self.call(lambda: self.driver.get_log("browser"))
        return entries

    def close(self) -> None:
        if self._thread is None:
            return
        if self.driver is not None:
            try:
                self.call(self.driver.quit, timeout=30.0)
            finally:
                self.driver = None
        self._jobs.put(None)
        self._thread.join(10.0)
        self._thread = None
        shutil.rmtree(self.workdir / "profile", ignore_errors=True)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


@contextmanager
def browser(ns: str | None, workdir: Path, **size: int) -> Iterator[Browser]:
    """A started ``Browser``, closed at the end of the block, also on failure."""
    b = Browser(ns, workdir, **size)
    try:
        yield b.start()
    finally:
        b.close()

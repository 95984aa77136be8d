"""Open a report page in headless Chromium and say what a reader would see.

The browser is driven over the Chrome DevTools Protocol on a pipe
(``--remote-debugging-pipe``: file descriptors 3 and 4, NUL-separated JSON), so nothing
beyond the standard library and a Chromium binary is needed:

1. start Chromium headless with a fresh profile and the flags that keep it off the
   network (the page must render offline);
2. open a tab, enable the ``Runtime``, ``Log`` and ``Page`` domains, navigate to the
   file and wait for its load event, then for the page to go quiet;
3. collect console calls, uncaught exceptions and browser log entries, count the
   plotly figures on the page and those plotly has drawn (``_fullLayout`` set and an SVG
   inside), optionally take a screenshot; the browser is killed on exit, also on error.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserUnavailable", "PageCheck", "find_chromium", "check_page"]

#: flags of a headless run that never reaches the network (this machine's and CI's)
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--window-size=1200,900", "--remote-debugging-pipe"]
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_FIGURES_JS = """JSON.stringify((() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return {figures: divs.length,
          drawn: divs.filter(d => d._fullLayout && d.querySelector('svg.main-svg')).length,
          title: document.title};
})())"""


class BrowserUnavailable(RuntimeError):
    """No Chromium binary was found, or it did not start."""


@dataclass
class PageCheck:
    """What the page did in the browser.

    ``errors``: console errors, uncaught exceptions and browser log entries at level
    ``error`` (text of each); ``warnings``: the same at warning level; ``figures`` /
    ``drawn``: plotly figure containers on the page / those plotly rendered.
    """

    title: str
    figures: int
    drawn: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the value of ``check_page``'s ``probe`` expression, evaluated in the loaded page
    probe: Any = None


def find_chromium() -> str | None:
    """Path of a Chromium-family browser, from ``$CHROMIUM`` or the PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """One DevTools session over the browser's pipe."""

    def __init__(self, binary: str, profile: str):
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()

        def child_fds() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        try:
            self.proc = subprocess.Popen(
                [binary, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(3, 4), preexec_fn=child_fds, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as err:
            raise BrowserUnavailable(f"could not start {binary}: {err}") from err
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Kill the browser and its helper processes (one process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._w)
        os.close(self._r)

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise BrowserUnavailable("the browser closed its DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            reply = self._recv(max(0.0, end - time.monotonic()))
            if reply is None:
                raise TimeoutError(f"no answer to {method} within {timeout:.0f} s")
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self._recv(end - time.monotonic())
            if msg is not None:
                self.events.append(msg)
                if msg.get("method") == method:
                    return True
        return False

    def drain(self, quiet: float) -> None:
        """Collect events until none arrives for ``quiet`` seconds."""
        while True:
            msg = self._recv(quiet)
            if msg is None:
                return
            self.events.append(msg)


def _text(event: dict[str, Any]) -> tuple | None:
    """``(level, text)`` of a console, exception or log event, else None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        args = " ".join(str(a.get("value", a.get("description", "")))
                        for a in params.get("args", []))
        return params.get("type", "log"), args
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return "error", details.get("exception", {}).get("description") or details.get("text", "")
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        return entry.get("level", "info"), entry.get("text", "")
    return None


def check_page(path: str | Path, screenshot: str | Path | None = None, *,
               full_page: bool = False, height: int | None = None, timeout: float = 60.0,
               settle: float = 1.5, probe: str | None = None) -> PageCheck:
    """Load ``path`` in headless Chromium; console errors, figures drawn, optional PNG
    (the 1200 x 900 viewport, the whole page with ``full_page``, or the top ``height``
    pixels of the page, 1200 wide). ``probe``: a JavaScript expression evaluated in the
    loaded page (what a reader would see: the DOM, plotly's drawn data); its JSON value is
    ``PageCheck.probe``.

    Raises :class:`BrowserUnavailable` when no browser is installed (set ``$CHROMIUM``
    to its path, or install Debian's ``chromium`` package).
    """
    binary = find_chromium()
    if binary is None:
        raise BrowserUnavailable("no Chromium found: install it (Debian: apt-get install "
                                 "chromium) or set CHROMIUM to its path")
    url = Path(path).resolve().as_uri()
    # the browser's helper processes may still flush the profile as they die
    with tempfile.TemporaryDirectory(prefix="dcd-chromium-", ignore_cleanup_errors=True) as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": url}, session=session)
            if not pipe.wait_for("Page.loadEventFired", timeout):
                raise TimeoutError(f"{url} did not finish loading within {timeout:.0f} s")
            pipe.drain(settle)
            value = pipe.call("Runtime.evaluate", {"expression": _FIGURES_JS,
                                                    "returnByValue": True},
                              session=session)["result"]["value"]
            probed = None if probe is None else pipe.call(
                "Runtime.evaluate", {"expression": probe, "returnByValue": True},
                session=session)["result"].get("value")
            if screenshot is not None:
                params: dict[str, Any] = {"format": "png",
                                          "captureBeyondViewport": full_page or bool(height)}
                if height:
                    params["clip"] = {"x": 0, "y": 0, "width": 1200, "height": int(height),
                                      "scale": 1}
                shot = pipe.call("Page.captureScreenshot", params, session=session,
                                 timeout=timeout)
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        finally:
            pipe.close()
    seen = json.loads(value)
    check = PageCheck(title=seen["title"], figures=int(seen["figures"]), drawn=int(seen["drawn"]),
                      probe=probed)
    for event in pipe.events:
        found = _text(event)
        if found is None:
            continue
        level, text = found
        if level in ("error", "assert"):
            check.errors.append(text)
        elif level in ("warning", "warn"):
            check.warnings.append(text)
    return check

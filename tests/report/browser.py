"""Open a page in a real headless Chromium and report what a reader would meet.

Chromium is driven over the Chrome DevTools Protocol (a websocket; aiohttp's client, which Ray
already brings). `check_page` loads a file:// URL and returns the console errors, uncaught
exceptions, every network request the page made, each <img>'s decode result, and a screenshot.

    python tests/report/browser.py results/x/report/index.html shot.png   # for a look by hand
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The network is closed here and should be for a report anyway: nothing in the background.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)


def find_chromium() -> str | None:
    env = os.environ.get("SCALEGRID_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@dataclass
class PageCheck:
    url: str
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    screenshot: Path | None = None
    title: str = ""
    text_length: int = 0


IMAGES_JS = """
Promise.all(Array.from(document.images).map(img =>
  img.decode().then(
    () => ({ok: true, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt}),
    err => ({ok: false, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt, error: String(err)})
  )
)).then(r => JSON.stringify(r))
"""


def check_page(html: Path, screenshot: Path, *, width: int = 1280, height: int = 900,
               full_page: bool = True, timeout_s: float = 60.0) -> PageCheck:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium binary found (" + ", ".join(CANDIDATES) + ")")
    with tempfile.TemporaryDirectory(prefix="scalegrid-chromium-") as profile:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            port = _devtools_port(Path(profile), proc, timeout_s)
            return asyncio.run(asyncio.wait_for(
                _drive(port, html.resolve().as_uri(), screenshot, width, height, full_page), timeout_s))
        finally:
            _stop(proc)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout_s: float) -> int:
    """Chromium writes the port it chose (for --remote-debugging-port=0) to DevToolsActivePort."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"chromium exited with {proc.returncode}: {err}")
        if marker.is_file():
            lines = marker.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the browser and its helpers only
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


async def _drive(port: int, url: str, screenshot: Path, width: int, height: int, full_page: bool) -> PageCheck:
    import aiohttp

    result = PageCheck(url=url)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = _Session(ws, result)
            for domain in ("Runtime", "Log", "Network", "Page"):
                await cdp.call(f"{domain}.enable")
            await cdp.call("Emulation.setDeviceMetricsOverride",
                           width=width, height=height, deviceScaleFactor=1, mobile=False)
            loaded = cdp.expect("Page.loadEventFired")
            await cdp.call("Page.navigate", url=url)
            await loaded
            evaluated = await cdp.call("Runtime.evaluate", expression=IMAGES_JS, awaitPromise=True, returnByValue=True)
            result.images = json.loads(evaluated["result"]["value"])
            meta = await cdp.call("Runtime.evaluate", returnByValue=True,
                                  expression="JSON.stringify([document.title, document.body.innerText.length])")
            result.title, result.text_length = json.loads(meta["result"]["value"])
            params = {"format": "png"}
            if full_page:
                metrics = await cdp.call("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                params.update(captureBeyondViewport=True, clip={
                    "x": 0, "y": 0, "width": max(width, int(size["width"])), "height": int(size["height"]), "scale": 1})
            shot = await cdp.call("Page.captureScreenshot", **params)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
            await asyncio.sleep(0.2)  # late console messages
            await cdp.drain()
    return result


class _Session:
    """Request/response over the websocket; events are recorded into the PageCheck as they come."""

    def __init__(self, ws, result: PageCheck):
        self.ws, self.result, self.next_id = ws, result, 0
        self.pending: dict[int, asyncio.Future] = {}
        self.waiting: dict[str, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def call(self, method: str, **params):
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def expect(self, event: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting[event] = future
        return future

    async def drain(self) -> None:
        self.reader.cancel()

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future and not future.done():
                    future.set_result(data)
                continue
            self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict) -> None:
        r = self.result
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            r.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            r.exceptions.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            r.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            r.requests.append(params.get("request", {}).get("url", ""))
        future = self.waiting.pop(method, None)
        if future and not future.done():
            future.set_result(params)


if __name__ == "__main__":
    page = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else page.with_name("screenshot.png")
    check = check_page(page, out, full_page="--viewport" not in sys.argv)
    shown = {k: v for k, v in check.__dict__.items() if k != "requests"}
    shown["requests"] = [u[:80] for u in check.requests]
    print(json.dumps(shown, indent=2, default=str))

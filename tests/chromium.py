"""Headless Chromium over the DevTools protocol: load a page, collect its console errors, evaluate a script."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request

from helpers import free_port

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio"]

# After load: ask every player for its metadata (proves the WAV link works), and report what the page shows.
GALLERY_REPORT = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const playable = await Promise.all(audios.map(a => new Promise(done => {
    if (a.readyState >= 1) return done(true);
    a.addEventListener('loadedmetadata', () => done(true), {once: true});
    a.addEventListener('error', () => done(false), {once: true});
    a.preload = 'metadata'; a.load();
  })));
  const images = [...document.images];
  return {audios: audios.length, playable: playable.filter(Boolean).length,
          durations: audios.map(a => a.duration),
          images: images.length, broken: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
          captions: [...document.querySelectorAll('.captions td:first-child')].map(td => td.textContent),
          weights: [...document.querySelectorAll('.captions td.w')].map(td => td.textContent),
          names: [...document.querySelectorAll('.clip .name')].map(n => n.textContent),
          header: document.querySelector('header') ? document.querySelector('header').innerText : '',
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          spectrograms: [...document.querySelectorAll('img.spec')].map(i => [i.naturalWidth, i.naturalHeight]),
          next: document.querySelector('a[rel=next]') ? document.querySelector('a[rel=next]').href : null};
})()
"""


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def load_page(url: str, script: str, timeout: float = 60.0, width: int | None = None,
              screenshot: str | None = None) -> tuple[list[str], object]:
    """Open `url` in a fresh profile; returns (console and network errors, value of `script` after load).

    width: emulate a window that many CSS pixels wide (a phone below 600); screenshot: save the page there (PNG).
    """
    port = free_port()
    profile = tempfile.mkdtemp(prefix="i2a-chromium-")
    process = subprocess.Popen([binary(), *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(asyncio.wait_for(_drive(_page_socket(port, timeout), url, script, width, screenshot),
                                            timeout))
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _page_socket(port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not open its DevTools port")
        time.sleep(0.2)


async def _drive(socket_url: str, url: str, script: str, width: int | None = None,
                 screenshot: str | None = None) -> tuple[list[str], object]:
    import base64

    import aiohttp

    errors: list[str] = []
    loaded = asyncio.Event()
    ids = itertools.count(1)

    def on_event(message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')} "
                          f"{params['entry'].get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            loaded.set()

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(socket_url, max_msg_size=0) as ws:
            async def call(method: str, **params) -> dict:
                call_id = next(ids)
                await ws.send_json({"id": call_id, "method": method, "params": params})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == call_id:
                        if "error" in message:
                            raise RuntimeError(f"{method}: {message['error']}")
                        return message.get("result", {})
                    on_event(message)

            for domain in ("Page", "Runtime", "Log"):
                await call(f"{domain}.enable")
            if width:
                await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                           mobile=width < 600)
            await call("Page.navigate", url=url)
            while not loaded.is_set():
                on_event(await ws.receive_json())
            result = await call("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in result:
                errors.append("script: " + json.dumps(result["exceptionDetails"])[:500])
            await call("Runtime.evaluate", expression="0")  # collect events that arrived during the script
            if screenshot:
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            return errors, result.get("result", {}).get("value")

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
          spectrograms: [...document.querySelectorAll('.spec')].map(spectrogram),
          pageOf: document.querySelector('[data-of]') ? document.querySelector('[data-of]').parentElement.textContent
                                                       : null,
          pages: [...document.querySelectorAll('nav.pages a')].map(a => a.href),
          next: document.querySelector('a[rel=next]') ? document.querySelector('a[rel=next]').href : null};
})()
"""

# One spectrogram as the page draws it: tick labels, axis titles, the colour bar (document coordinates, CSS px)
# and whether any tick label overlaps its neighbour or spills out of its card.
SPECTROGRAM_REPORT = """
function spectrogram(s) {
  const texts = selector => [...s.querySelectorAll(selector)].map(e => e.textContent);
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; };
  const card = s.closest('.clip').getBoundingClientRect();
  const ticks = [...s.querySelectorAll('.xa span')].map(e => e.getBoundingClientRect());
  const labels = [...s.querySelectorAll('span')].map(e => e.getBoundingClientRect());
  const image = s.querySelector('img.sp');
  return {x: texts('.xa span'), y: texts('.ya span'), colour: texts('.ca span'),
          titles: texts('.xt, .yt, .ct'), image: [image.naturalWidth, image.naturalHeight], plot: box(image),
          bar: box(s.querySelector('.cb')), gradient: getComputedStyle(s.querySelector('.cb')).backgroundImage,
          overlap: ticks.some((r, i) => i > 0 && r.left < ticks[i - 1].right),
          outside: labels.some(r => r.left < card.left || r.right > card.right)};
}
"""
GALLERY_REPORT = SPECTROGRAM_REPORT + GALLERY_REPORT


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def load_page(url: str, script: str, timeout: float = 60.0, width: int | None = None,
              screenshot: str | None = None, after: str | None = None) -> tuple[list[str], object]:
    """Open `url` in a fresh profile; returns (console and network errors, value of `script` after load).

    width: emulate a window that many CSS pixels wide (a phone below 600); screenshot: save the page there (PNG).
    after: `script` navigates (a link click, a form); then the value is that of `after` once the next page loaded.
    """
    port = free_port()
    profile = tempfile.mkdtemp(prefix="i2a-chromium-")
    process = subprocess.Popen([binary(), *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(asyncio.wait_for(_drive(_page_socket(port, timeout), url, script, width, screenshot,
                                                   after), timeout))
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
                 screenshot: str | None = None, after: str | None = None) -> tuple[list[str], object]:
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
            if after:  # the script leaves this page: wait for the next one, then ask it
                loaded.clear()
                await call("Runtime.evaluate", expression=script, returnByValue=True)
                while not loaded.is_set():
                    on_event(await ws.receive_json())
                script = after
            result = await call("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in result:
                errors.append("script: " + json.dumps(result["exceptionDetails"])[:500])
            await call("Runtime.evaluate", expression="0")  # collect events that arrived during the script
            if screenshot:
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            return errors, result.get("result", {}).get("value")

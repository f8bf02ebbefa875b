"""Progress of long work on the console: a tqdm bar on a terminal, a plain line every few seconds in logs."""

from __future__ import annotations

import sys
import threading
import time

PLAIN_EVERY_S = 10.0  # job logs (`ray job logs`, CI, files) get a line this often, not a redrawn bar


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts finished units of `total` (clips, rows, trials): `with Progress(n, "sonify", "clips") as p: p.update(k)`.

    `total` may be None while a streamed plan is still being listed (`set_total` gives it later).
    """

    def __init__(self, total: int | None, what: str, unit: str, stream=None, every_s: float = PLAIN_EVERY_S):
        self.total, self.what, self.unit = total, what, unit
        self.stream = stream  # None: sys.stderr at the time of writing
        self.every_s = every_s
        self.done = 0
        self.started = time.monotonic()
        self.bar = None
        self.stopped = threading.Event()
        if self._out().isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}", file=self._out(), dynamic_ncols=True, leave=False)
        else:
            # A line every few seconds, also while nothing finishes (models loading, a long first batch).
            threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self) -> None:
        while not self.stopped.wait(self.every_s):
            if self.total is None or self.done < self.total:
                print(self.line(), file=self._out(), flush=True)

    def set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def _out(self):
        return self.stream or sys.stderr

    def __getstate__(self) -> dict:
        # Ray Tune pickles its callbacks with the experiment state: a terminal stream or bar does not pickle.
        return {**self.__dict__, "stream": None, "bar": None, "stopped": None}

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.what}: {self.done} {self.unit}, {rate:.2f} {self.unit}/s, {_duration(elapsed)} elapsed"
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 and self.done < self.total else ""
        return (f"{self.what}: {self.done}/{self.total} {self.unit}{percent}, {rate:.2f} {self.unit}/s, "
                f"{_duration(elapsed)} elapsed{eta}")

    def close(self) -> None:
        if self.stopped is not None:
            self.stopped.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

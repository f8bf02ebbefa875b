"""One job per output: an exclusive lease (a heartbeated lock file, or a conditionally written object) on its folder.

Two jobs writing one output would race on its manifest, its temp files and job.json. A job takes the lease
before any work and gives it back on exit; a second job is refused with the holder's host, pid and start
time. A lease whose heartbeat stopped (the holder was killed, or its host died) is stale and is taken over
by the next job; `--take-over-lease` takes over a live-looking one (see docs/bulk-sonify.md).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from i2a_core.errors import LeaseHeld, LeaseLost, OutputError
from i2a_core.io import storage

LEASE_NAME = ".i2a-lease.json"
HEARTBEAT_S = 10.0  # how often the holder rewrites its lease
STALE_S = 60.0  # a lease not rewritten for this long belongs to a dead job
MAX_LEASE_BYTES = 64 * 1024  # a lease record is a few hundred bytes; a larger file is not one
TAKE_OVER_HINT = ("if that job is dead, rerun with --take-over-lease (or delete {path}); "
                  "a lease without a heartbeat for {stale:.0f} s is taken over by itself")




def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _record(token: str, started_at: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": token, "started_at": started_at,
            "heartbeat_at": time.time()}


def stale_reason(record: dict, now: float | None = None, stale_s: float = STALE_S) -> str:
    """Why a lease record no longer protects a running job ('' while its holder looks alive)."""
    now = time.time() if now is None else now
    try:
        age = now - float(record.get("heartbeat_at", 0))
        pid = int(record.get("pid", 0))
    except (TypeError, ValueError):
        return "unreadable lease"
    if record.get("host") == socket.gethostname() and pid > 0 and not _pid_alive(pid):
        return f"pid {pid} is not running on this host"
    if age > stale_s:
        return f"no heartbeat for {age:.0f} s"
    return ""


class _LocalLease:
    """A lock file created with link() (fails if it exists); the heartbeat touches its mtime and checks that
    the file is still ours."""

    def __init__(self, output: str):
        os.makedirs(output, exist_ok=True)
        self.path = os.path.join(output, LEASE_NAME)

    def create(self, record: dict) -> bool:
        # Written whole beside the lease, then hard-linked to its name: link() fails if the name exists
        # (atomic, also on NFS), and no reader ever sees a half-written lease.
        staging = f"{self.path}.{uuid.uuid4().hex}.new"
        with open(staging, "w") as f:
            json.dump(record, f)
        try:
            os.link(staging, self.path)
        except FileExistsError:
            return False
        finally:
            os.remove(staging)
        return True

    def read(self) -> tuple[dict | None, object]:
        try:
            data = storage.read_bytes(self.path, limit=MAX_LEASE_BYTES)  # never a FIFO, a device or a huge file
            modified = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None, None
        except OSError as e:
            raise _not_a_lease(self.path, e) from None
        record = _parse(data)
        record["heartbeat_at"] = modified  # the heartbeat is the file's mtime (the file server's clock on NFS)
        return record, record.get("token")

    def remove_if(self, version) -> bool:
        """Remove the lease if it is still the one read (`version` is its token): rename aside, then check."""
        aside = f"{self.path}.{uuid.uuid4().hex}.old"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # gone already: free to create
        try:
            token = _parse(storage.read_bytes(aside, limit=MAX_LEASE_BYTES)).get("token")
        except OSError:
            token = None
        if token != version:  # another job took over between our read and the rename: put its lease back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.remove(aside)
            return False
        os.remove(aside)
        return True

    def refresh(self, record: dict, version) -> object:
        # Touch, never rewrite: a rewrite could overwrite a lease another job just took over.
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass
        current, token = self.read()
        if token != version:
            raise LeaseLost(f"{self.path}: taken over by {_holder(current)}")
        return version

    def release(self, version) -> None:
        self.remove_if(version)


class _ObjectLease:
    """A lease object on S3 (or a compatible store): PUT If-None-Match to create, If-Match to refresh and delete."""

    def __init__(self, output: str):
        self.url = storage.join(output, LEASE_NAME)
        self.fs, self.path = storage.filesystem(self.url)
        self.bucket, self.key = self.path.split("/", 1)

    def create(self, record: dict) -> object:
        try:
            return self.fs.pipe_file(self.path, json.dumps(record).encode(), mode="create")["ETag"]
        except FileExistsError:  # If-None-Match failed: the object exists (maybe ours: see Lease._acquire)
            return False

    def read(self) -> tuple[dict | None, object]:
        try:
            response = self.fs.call_s3("get_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return None, None
        body = response["Body"]
        if int(response.get("ContentLength") or 0) > MAX_LEASE_BYTES:
            body.close()
            raise _not_a_lease(self.url, OSError(f"{response['ContentLength']:,} bytes"))
        return _parse(_sync_read(self.fs, body, MAX_LEASE_BYTES + 1)), response["ETag"]

    def remove_if(self, version) -> bool:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=version)
        except FileNotFoundError:
            return True
        except OSError:  # precondition failed: someone else rewrote it
            return False
        return True

    def refresh(self, record: dict, version) -> object:
        try:
            return self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key,
                                   Body=json.dumps(record).encode(), IfMatch=version)["ETag"]
        except OSError:
            current, current_version = self.read()
            # A PUT retried after the store applied it but the answer was lost fails its If-Match: the lease
            # is still ours if it holds our token.
            if current and current.get("token") == record["token"]:
                return current_version
            raise LeaseLost(f"{self.url}: taken over by {_holder(current)}") from None

    def release(self, version) -> None:
        self.remove_if(version)


def _parse(data: bytes) -> dict:
    """A lease record; {} for one that is not JSON (a crash mid-write, or someone else's file)."""
    try:
        record = json.loads(data)
    except (ValueError, TypeError, RecursionError):  # RecursionError: JSON nested too deeply to parse
        return {}
    return record if isinstance(record, dict) else {}


def _not_a_lease(where: str, error: OSError) -> OutputError:
    reason = error.strerror or str(error) or type(error).__name__
    return OutputError(f"{where}: not a lease that i2a wrote ({reason}); delete it if no job is running")


def _sync_read(fs, body, most: int) -> bytes:
    from fsspec.asyn import sync

    async def read():
        async with body as stream:
            return await stream.read(most)

    return sync(fs.loop, read)


def _holder(record: dict | None) -> str:
    if not record:
        return "an unknown job"
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} since {record.get('started_at', '?')}"


class Lease:
    """Held by this process: a daemon thread refreshes it; `release()` (or leaving the `with`) gives it back."""

    def __init__(self, output: str, take_over: bool = False, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S):
        self.output = output
        self.store = _ObjectLease(output) if storage.is_remote(output) else _LocalLease(output)
        self.where = storage.join(output, LEASE_NAME)
        self.token = uuid.uuid4().hex
        self.acquired = time.time()  # files last written before this belong to dead jobs
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.lost: str = ""
        self._stop = threading.Event()
        self._version = self._acquire(take_over)
        self._thread = threading.Thread(target=self._beat, name="i2a-lease-heartbeat", daemon=True)
        self._thread.start()

    def _acquire(self, take_over: bool):
        for _ in range(5):
            version = self.store.create(_record(self.token, self.started_at))
            if version:
                return self.token if version is True else version
            current, current_version = self.store.read()
            if current is None:
                continue  # released between our create and read
            if current.get("token") == self.token:  # our create was applied, its answer lost and the PUT retried
                return current_version
            reason = stale_reason(current, stale_s=self.stale_s)
            if not reason and not take_over:
                raise LeaseHeld(f"{self.output}: another job holds it ({_holder(current)}, last heartbeat "
                                f"{max(0.0, time.time() - float(current.get('heartbeat_at', 0))):.0f} s ago); "
                                + TAKE_OVER_HINT.format(path=self.where, stale=self.stale_s))
            self.store.remove_if(current_version)  # a lost race just loops: the next read shows the winner
        raise LeaseHeld(f"{self.output}: could not take the lease ({self.where}): other jobs keep taking it")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._version = self.store.refresh(_record(self.token, self.started_at), self._version)
            except LeaseLost as e:
                self.lost = str(e)
                return
            except Exception:  # a network blip: try again next beat, the stale limit is several beats away
                continue

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.lost:
            try:
                self.store.release(self._version)
            except Exception:  # the lease goes stale by itself
                pass

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

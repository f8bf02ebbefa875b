"""The one runner: input items in bounded chunks -> a chain of stages -> committed batches (manifest parts).

A job hands the runner a plan (item batches, streamed), a Chain of stages and a PartWriter. The runner owns
chunking, backpressure, per-item isolation, retries of lost work, progress, stall detection, interrupts and
the commit; the stages own their work. Three strategies share that contract, chosen once per run:

- "local": every stage built in this process, chunk after chunk (a handful of inputs, `i2a sonify`, the API);
- "actors": one actor per Ray node holding every stage (nodes without GPUs: one torch on all the node's cores),
  fed chunks with a bounded number in flight; a lost actor's unfinished items go to live ones, and nodes that
  join get an actor;
- "data": Ray Data actor pools per stage (GPUs for the model stages), reading the plan from Parquet windows.

Stages are named by dotted path ("i2a_core.stages.images:DecodeImages") with plain-data arguments and built
where they run, so a driver never imports model code. Every stage takes and returns a numpy batch (column ->
array), skips rows whose `error` is set and fills its own columns for them; the last stage of a chain turns
batches into commit rows and must also take batches in which every row failed. A stage that raises on a batch
is retried row by row, so one bad item becomes that item's error row and the rest go on; only interrupts stop
a job.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import importlib
import io
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from i2a_core import raycluster
from i2a_core.errors import LeaseLost, Stalled, Terminated, classify, one_line
from i2a_core.io import storage
from i2a_core.models.devices import match_torch_threads_to_ray
from i2a_core.progress import Progress
from i2a_core.quiet import init_ray, quiet_libraries

Batch = dict  # column name -> numpy array, Ray Data's "numpy" batch format

CHUNK = 256  # items per chunk: the unit of submission, retry and (under Ray) of overlapped reads
SPREAD = 64  # a run is cut into at least this many chunks (when it has the items): every node gets some, and
# the last chunks, which some nodes finish while others wait, are short
IN_FLIGHT_PER_ACTOR = 2  # one chunk running, one queued: refilled as chunks finish
MAX_ATTEMPTS = 3  # an item whose actor died this many times becomes a worker_lost error row (transient)
GROUP_S = 0.5  # what finished within this long is committed (and returned by an actor) as one batch: grouped
NODE_CHECK_S = 10.0  # how often the actor strategy looks for nodes that joined or died
STALL_TIMEOUT_S = 1800.0
# Items per Ray Data block. A task's small outputs leave it as one block when it ends, so this is how many
# items move (and are committed) together: small enough that work streams, large enough to batch on a GPU.
DATA_BLOCK = 16
DESCRIBE = {"local": "local", "actors": "ray: one actor per node", "data": "ray: Ray Data actor pools"}


def load(path: str):
    """The object that a dotted path "package.module:attribute" names, imported in the calling process.

    This is how model code is reached from drivers (stages, Tune trainables): by name, built where it runs.
    tests/test_architecture.py counts these paths as imports when it checks the module graph for cycles.
    """
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Stage:
    """One step of a job: a class (built once per process) or a function, named by dotted path."""

    path: str
    kwargs: dict = field(default_factory=dict)  # constructor arguments of a class, call arguments of a function
    streaming: bool = False  # takes an iterator of batches and yields batches (reads overlapped across a chunk)
    batch_size: int | None = None  # rows per call under Ray Data (None: as the batches arrive)
    num_cpus: float = 0.25  # under Ray Data
    num_gpus: float = 0.0  # under Ray Data: > 0 puts the stage on GPU actors
    actors: int = 0  # under Ray Data: a pool of this many actors (0: a task per block)


@dataclass(frozen=True)
class Chain:
    """A job's stages, in order; `key` names the column that identifies an item (exactly-once commits)."""

    stages: tuple[Stage, ...]
    key: str = "key"


def build(stage: Stage) -> Callable:
    target = load(stage.path)
    return target(**stage.kwargs) if isinstance(target, type) else functools.partial(target, **stage.kwargs)


def _rows(batch: Batch, index) -> Batch:
    return {name: values[index] for name, values in batch.items()}


def _size(batch: Batch) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def fail_rows(batch: Batch, rows, error: BaseException) -> Batch:
    """The batch with `rows` marked failed by `error` (kind and one-line reason naming each item)."""
    errors, kinds = batch["error"].astype(object), batch["error_kind"].astype(object)
    names = next((batch[c] for c in ("display", "input", "key") if c in batch), None)
    for i in rows:
        kinds[i], errors[i] = classify(error, str(names[i]) if names is not None else "input")
    if rows and kinds[rows[0]] == "internal":  # a bug, ours or a library's: its traceback goes to the log
        traceback.print_exception(error, file=sys.stderr)  # (a Ray worker's log: `ray logs`, the dashboard)
    return {**batch, "error": errors, "error_kind": kinds}


def isolated(stage: Callable, batch: Batch) -> Batch:
    """stage(batch); when it raises, each pending row alone finds the culprits, which become error rows."""
    try:
        return stage(batch)
    except Exception as error:  # anything but an interrupt is this batch's problem
        pending = [i for i, e in enumerate(batch["error"]) if not e]
        culprits = {}
        for i in pending if len(pending) > 1 else []:
            try:
                stage(_rows(batch, [i]))
            except Exception as alone:
                culprits[i] = alone
        if culprits:
            for i, alone in culprits.items():
                batch = fail_rows(batch, [i], alone)
        else:  # no single row fails alone: the batch as a whole (memory, a device error)
            batch = fail_rows(batch, pending, error)
        try:
            return stage(batch)
        except Exception as again:
            left = [i for i, e in enumerate(batch["error"]) if not e]
            return stage(fail_rows(batch, left, again))  # every row failed: the stage only records them


class BuiltChain:
    """A chain's stages built in this process: chunks of items in, finished batches out."""

    def __init__(self, chain: Chain):
        quiet_libraries()
        self.chain = chain
        self.stages = [build(stage) for stage in chain.stages]

    def run(self, chunks: Iterable[Batch]) -> Iterator[Batch]:
        first, *rest = self.stages
        if self.chain.stages[0].streaming:
            batches = first(iter(chunks))
        else:
            batches = (isolated(first, chunk) for chunk in chunks)
        for batch in batches:
            for stage in rest:
                batch = isolated(stage, batch)
            yield batch

    def finish_failed(self, items: Batch, error: BaseException) -> Batch:
        """Rows for items that no stage finished (their worker died): only the last stage records them."""
        return isolated(self.stages[-1], fail_rows(items, range(_size(items)), error))


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return {}
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def grouped(batches: Iterable[Batch], seconds: float, failed_only: bool = False) -> Iterator[Batch]:
    """The batches, those finished within `seconds` of each other joined into one: a slow batch passes alone, at
    once; fast ones (inputs that fail at once) travel and commit together, since each returned batch costs the
    driver the same (an object to fetch, a commit) whatever its size. With `failed_only`, a batch that finished
    any item (a row without an error) goes on at once, with the ones before it: only failed inputs wait."""
    pending, since = [], time.monotonic()
    try:
        for batch in batches:
            if pending and batch.keys() != pending[0].keys():  # other columns: they go on their own
                out, pending = _concat(pending), []
                yield out
            pending.append(batch)
            finished = failed_only and ("error" not in batch or not all(batch["error"]))
            if finished or time.monotonic() - since >= seconds:
                out, pending = _concat(pending), []
                yield out
                since = time.monotonic()
    except GeneratorExit:
        raise
    except BaseException:  # an interrupt: what finished before it is still handed on (committed), then it goes on
        if pending:
            out, pending = _concat(pending), []
            yield out
        raise
    if pending:
        yield _concat(pending)


class KeySet:
    """Item keys committed by this run, as 64-bit hashes (8 bytes an item, no Python strings).

    The newest keys wait in a Python set of at most RECENT ints; when it fills, they become a sorted run, and runs
    of similar size merge (a log-structured merge), so that runs at least double in size from newest to oldest:
    n keys cost O(n log n) in all, and a batch is looked up with one binary search per run, O(log n) runs.
    """

    RECENT = 65_536

    def __init__(self):
        self.runs: list[np.ndarray] = []  # sorted uint64 arrays, largest (oldest) first
        self.recent: set[int] = set()

    @staticmethod
    def hashes(keys) -> np.ndarray:
        digests = b"".join(hashlib.blake2b(str(k).encode("utf-8", "surrogateescape"), digest_size=8).digest()
                           for k in keys)
        return np.frombuffer(digests, "<u8").astype(np.uint64)

    def __len__(self) -> int:
        return len(self.recent) + sum(len(run) for run in self.runs)

    def add_new(self, keys) -> np.ndarray:
        """Record keys; True where a key was not committed before (in this call or earlier)."""
        hashed = self.hashes(keys)
        fresh = np.ones(len(hashed), bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, hashed), len(run) - 1)
            fresh &= run[at] != hashed
        recent = self.recent
        for i, value in enumerate(hashed.tolist()):
            if fresh[i]:
                if value in recent:
                    fresh[i] = False
                else:
                    recent.add(value)
        if len(recent) >= self.RECENT:
            self._merge()
        return fresh

    def _merge(self) -> None:
        run = np.fromiter(self.recent, np.uint64, len(self.recent))
        run.sort()
        self.recent = set()
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = np.concatenate([self.runs.pop(), run])
            run.sort(kind="stable")  # timsort: two sorted halves merge in linear time
        self.runs.append(run)


@dataclass
class RunReport:
    done: int = 0  # items committed by this run
    strategy: str = "local"
    seconds: float = 0.0
    resubmitted: int = 0  # items whose worker died and that went to another one
    stalled: str = ""  # what the run waited for when it gave up ("" when it did not stall)
    waiting: str = ""  # what it said it waited for, once


class Committer:
    """The commit: rows of finished batches go to the PartWriter once per item, counted for progress."""

    def __init__(self, writer, key: str, progress: Progress, on_commit: Callable[[Batch], None] | None = None,
                 lease=None):
        self.writer, self.key, self.progress, self.on_commit, self.lease = writer, key, progress, on_commit, lease
        self.keys = KeySet()
        self.done = 0
        self.last = time.monotonic()

    def __call__(self, batch: Batch) -> None:
        if not _size(batch):
            return
        fresh = self.keys.add_new(batch[self.key])
        if not fresh.all():  # a stage ran twice (Ray Data redoes lost work): commit each item once
            batch = _rows(batch, fresh)
        if _size(batch):
            if self.on_commit is not None:
                self.on_commit(batch)
            self.writer.add({name: batch[name] for name in self.writer.schema.names if name in batch})
            self.done += _size(batch)
            self.progress.update(_size(batch))
        self.last = time.monotonic()
        if self.lease is not None and self.lease.lost:  # another job took the output over: stop writing to it
            raise LeaseLost(self.lease.lost)


@dataclass
class Plan:
    """The items a run must do, spilled to Parquet windows: the driver holds a list of files, not the items."""

    files: list[str]
    total: int

    def windows(self) -> Iterator[Batch]:
        for path in self.files:
            table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
            yield {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def spill(windows: Iterable, directory: str) -> Plan:
    """Write item windows (pyarrow tables) as Parquet files under `directory`; empty windows are dropped."""
    files, total = [], 0
    for window in windows:
        if not window.num_rows:
            continue
        path = storage.join(directory, f"window-{len(files):06d}.parquet")
        buffer = io.BytesIO()
        pq.write_table(window, buffer)
        storage.write_bytes_atomic(path, buffer.getvalue(), sync=False)
        files.append(path)
        total += window.num_rows
    return Plan(files, total)


@contextlib.contextmanager
def plan_directory(output: str):
    """A scratch folder for a run's plan, removed afterwards: local when the output is local, else beside it
    in the store, so that Ray Data workers on every node can read it."""
    if storage.is_remote(output):
        directory = storage.join(output, ".i2a-plan", uuid.uuid4().hex)
    else:
        directory = tempfile.mkdtemp(prefix="i2a-plan-")
    try:
        yield directory
    finally:
        try:
            fs, path = storage.filesystem(directory)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        except OSError:  # scratch: a later run never reads it
            pass


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _sigterm_interrupts() -> None:
    """SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread, like Ctrl-C. Ray's own handler,
    installed by ray.init, would abort the driver instead."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def interrupts():
    """Within this block, SIGTERM stops the job like Ctrl-C (`ray job stop`, a spot instance going away)."""
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    _sigterm_interrupts()
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def cluster_resources() -> dict:
    import ray

    return ray.cluster_resources()


def chunks(plan: Iterable[Batch], size: int = CHUNK) -> Iterator[Batch]:
    """Item batches re-cut into chunks of at most `size` rows."""
    for window in plan:
        for start in range(0, _size(window), size):
            yield {name: values[start:start + size] for name, values in window.items()}


def run(plan: Plan, chain: Chain, writer, *, strategy: str = "local", what: str = "items", unit: str = "items",
        stall_timeout: float = STALL_TIMEOUT_S, chunk_size: int = CHUNK,
        on_commit: Callable[[Batch], None] | None = None, lease=None, log: Callable[[str], None] = print) -> RunReport:
    """Run every item of `plan` through `chain` and commit the results to `writer`.

    Ctrl-C and SIGTERM stop the run after committing what finished (KeyboardInterrupt is re-raised);
    a stall (nothing committed for `stall_timeout` seconds while work remains) raises Stalled after the same.
    """
    report = RunReport(strategy=strategy)
    started = time.perf_counter()
    _sigterm_interrupts()  # again: ray.init (if it ran since the job's `interrupts()`) installed its own
    with Progress(plan.total, what, unit) as progress:
        committer = Committer(writer, chain.key, progress, on_commit, lease)
        try:
            if strategy == "local":
                for batch in grouped(BuiltChain(chain).run(chunks(plan.windows(), chunk_size)), GROUP_S,
                                     failed_only=True):
                    committer(batch)
            elif strategy == "actors":
                size = min(chunk_size, max(1, -(-plan.total // SPREAD)))
                _run_actors(chunks(plan.windows(), size), chain, committer, report, stall_timeout, log)
            elif strategy == "data":
                _run_data(plan, chain, committer, report, stall_timeout, chunk_size, log)
            else:
                raise ValueError(f"unknown strategy {strategy!r}")
        finally:  # also on Ctrl-C, SIGTERM and stalls: what finished is committed
            writer.flush()
            report.done = committer.done
            report.seconds = time.perf_counter() - started
    return report


# --- Ray: the shared start, one actor per node, Ray Data pools ---


def ray_env() -> dict:
    """What every Ray worker needs from the driver's environment (object-store settings, the model cache)."""
    env = storage.worker_env()
    for name in ("I2A_CACHE", "HF_HUB_OFFLINE", "I2A_VERBOSE", "NO_ALBUMENTATIONS_UPDATE"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class _ChainActor:
    """Every stage of a chain in one Ray actor: the actor strategy's worker (one per node)."""

    def __init__(self, chain: Chain):
        match_torch_threads_to_ray()
        self.chain = BuiltChain(chain)

    def run(self, chunk: Batch) -> Iterator[Batch]:
        yield from grouped(self.chain.run([chunk]), GROUP_S)

    def ready(self) -> bool:
        return True


@dataclass
class _Flight:
    actor: object
    node: str
    chunk: Batch
    left: set  # keys not committed yet
    attempts: int


def _alive_cpu_nodes(ray) -> dict[str, float]:
    return {node["NodeID"]: node["Resources"]["CPU"] for node in ray.nodes()
            if node.get("Alive") and node["Resources"].get("CPU", 0) >= 1}


def _run_actors(plan: Iterator[Batch], chain: Chain, commit: Committer, report: RunReport, stall_timeout: float,
                log) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    worker = ray.remote(_ChainActor)
    actors: dict[str, object] = {}  # node id -> actor
    inflight: dict[object, _Flight] = {}  # streaming generator -> its chunk
    retry: collections.deque = collections.deque()  # (chunk, attempts) of dead actors, first in line
    failures_without_output = 0
    source_done = False
    checked = 0.0

    def place_actors() -> None:
        nodes = _alive_cpu_nodes(ray)
        for node in list(actors):
            if node not in nodes:
                del actors[node]
        for node, cpus in nodes.items():
            if node not in actors:
                actors[node] = worker.options(
                    num_cpus=cpus, max_restarts=0, max_task_retries=0, runtime_env={"env_vars": ray_env()},
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(chain)

    def next_chunk():
        nonlocal source_done
        if retry:
            return retry.popleft()
        if source_done:
            return None
        chunk = next(plan, None)
        if chunk is None:
            source_done = True
            return None
        return chunk, 1

    def submit() -> None:
        """Fill every actor to IN_FLIGHT_PER_ACTOR chunks, one round at a time: each gets a chunk before any gets
        a second."""
        load_per_actor = collections.Counter(flight.node for flight in inflight.values())
        for slot in range(IN_FLIGHT_PER_ACTOR):
            for node, actor in list(actors.items()):
                if load_per_actor[node] > slot:
                    continue
                item = next_chunk()
                if item is None:
                    return
                chunk, attempts = item
                stream = actor.run.options(num_returns="streaming").remote(chunk)
                inflight[stream] = _Flight(actor, node, chunk, set(map(str, chunk[chain.key])), attempts)
                load_per_actor[node] += 1

    def lose(stream, error: BaseException) -> None:
        """The actor (or its node) died: its unfinished items go back in line, or become error rows."""
        nonlocal failures_without_output
        flight = inflight.pop(stream)
        for node, actor in list(actors.items()):
            if actor is flight.actor:
                del actors[node]
        if len(flight.left) == _size(flight.chunk):
            failures_without_output += 1
        if failures_without_output >= 3 * max(1, len(_alive_cpu_nodes(ray))) and not commit.done:
            raise RuntimeError(f"the stage actors keep dying before finishing anything: {one_line(str(error))[:300]}")
        requeue(flight, error)

    def requeue(flight: _Flight, error: BaseException) -> None:
        """A chunk's unfinished items: back in line, or error rows once they have had MAX_ATTEMPTS."""
        rows = [i for i, key in enumerate(flight.chunk[chain.key]) if str(key) in flight.left]
        if not rows:
            return
        left = _rows(flight.chunk, rows)
        if flight.attempts >= MAX_ATTEMPTS:
            commit(BuiltChain(Chain(chain.stages[-1:], chain.key)).finish_failed(left, WorkerLost(error)))
        else:
            report.resubmitted += len(rows)
            retry.append((left, flight.attempts + 1))

    while True:
        now = time.monotonic()
        if now - checked > NODE_CHECK_S or not actors:
            place_actors()
            checked = now
        submit()
        if not inflight and source_done and not retry:
            return
        if not inflight:  # no actor could take work: wait for one, within the stall limit
            _check_stall(commit, stall_timeout, {"CPU": 1.0}, report, log)
            time.sleep(1.0)
            checked = 0.0
            continue
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for stream in ready:
            try:
                ref = next(stream)
                batch = ray.get(ref)
            except StopIteration:
                # The stream ended without some items: never expected, but never lost, nor retried for ever.
                requeue(inflight.pop(stream), RuntimeError("the stage returned without it"))
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError) as error:
                lose(stream, error)
                continue
            flight = inflight[stream]
            flight.left.difference_update(map(str, batch[chain.key]))
            commit(batch)
        if not ready:
            _check_stall(commit, stall_timeout, {"CPU": 1.0}, report, log)


class WorkerLost(Exception):
    """The actor or node that held an input died before finishing it (transient: a rerun retries it)."""

    kind = "worker_lost"

    def __init__(self, cause: BaseException):
        self.reason = f"its worker died ({type(cause).__name__}); a rerun retries it"
        super().__init__(self.reason)


WAIT_NOTE_S = 60.0  # nothing committed for this long (or a third of the stall limit): say what the job waits for


STARTUP_S = 300.0  # before the first commit (workers start, models load) the stall limit is at least this


def _check_stall(commit: Committer, stall_timeout: float, demand: dict, report: RunReport, log) -> None:
    """Ray's "insufficient resources" warnings, as one i2a line; and the stall limit, counted from the last
    commit (from the start, with at least STARTUP_S for workers to start and load their models)."""
    idle = time.monotonic() - commit.last
    limit = stall_timeout if commit.done else max(stall_timeout, STARTUP_S)
    if idle <= min(WAIT_NOTE_S, limit / 3):
        report.waiting = ""  # work flows again: a later wait is said again
    elif not report.waiting:
        report.waiting = raycluster.waiting_for(demand, held_by_us=True) or "the workers (starting, or loading models)"
        log(f"waiting: nothing finished for {idle:.0f} s; {report.waiting}")
    if idle > limit:
        report.stalled = raycluster.waiting_for(demand, held_by_us=True) or "the workers, which finished nothing"
        raise Stalled(f"nothing finished for {limit:g} s; {report.stalled}")


class _IsolatedStage:
    """A Ray Data actor-pool stage: built once per actor, each batch isolated."""

    def __init__(self, stage: Stage):
        quiet_libraries()
        match_torch_threads_to_ray()
        self.stage = build(stage)

    def __call__(self, batch: Batch) -> Batch:
        return isolated(self.stage, batch)


def _task_stage(batch: Batch, stage: Stage) -> Iterator[Batch]:
    """A Ray Data task stage (a function, or a streaming reader), each batch isolated."""
    quiet_libraries()
    built = build(stage)
    if stage.streaming:
        yield from built(iter([batch]))
    else:
        yield isolated(built, batch)


def _run_data(plan: Plan, chain: Chain, commit: Committer, report: RunReport, stall_timeout: float,
              chunk_size: int, log) -> None:
    """Ray Data: the plan's Parquet windows read by the workers, then one operator per stage."""
    import ray

    if not plan.files:
        return
    env = {"runtime_env": {"env_vars": ray_env()}}
    # A read task asks for a sliver of a CPU (Ray Data's default is a whole one, which the stage actors may hold).
    dataset = ray.data.read_parquet(plan.files, num_cpus=0.25, **env).repartition(
        target_num_rows_per_block=DATA_BLOCK)  # small blocks, split as they stream: no task waits for a whole file
    for stage in chain.stages:
        if stage.actors:
            dataset = dataset.map_batches(
                _IsolatedStage, fn_constructor_kwargs={"stage": stage}, batch_size=stage.batch_size,
                compute=ray.data.ActorPoolStrategy(size=stage.actors), num_cpus=stage.num_cpus,
                num_gpus=stage.num_gpus or None, batch_format="numpy", **env)
        else:
            dataset = dataset.map_batches(
                _task_stage, fn_kwargs={"stage": stage}, batch_size=stage.batch_size or DATA_BLOCK,
                num_cpus=stage.num_cpus, batch_format="numpy", **env)
    gpus = max((s.num_gpus for s in chain.stages), default=0.0)
    demand = {"GPU": gpus} if gpus else {"CPU": 1.0}
    for batch in _stream(dataset.iter_batches(batch_size=None, batch_format="numpy"), commit, stall_timeout,
                         demand, report, log):
        commit(batch)


def _stream(batches: Iterator[Batch], commit: Committer, stall_timeout: float, demand: dict,
            report: RunReport, log) -> Iterator[Batch]:
    """Batches from a background iterator, so that the driver can notice stalls and take interrupts."""
    out: queue.Queue = queue.Queue(maxsize=8)
    done = object()

    def pump():
        try:
            for batch in batches:
                out.put(batch)
        except BaseException as error:  # handed to the main thread, raised there
            out.put(error)
        out.put(done)

    threading.Thread(target=pump, name="i2a-data-stream", daemon=True).start()
    while True:
        try:
            item = out.get(timeout=1.0)
        except queue.Empty:
            _check_stall(commit, stall_timeout, demand, report, log)
            continue
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def choose_strategy(requested: str, count_hint: int, gpus_per_actor: float | None, local_max: int = 8) -> str:
    """local, actors or data, decided once: `requested` is auto | local | ray."""
    if requested == "local":
        return "local"
    if requested == "auto" and count_hint <= local_max and not os.environ.get("RAY_ADDRESS"):
        ray = sys.modules.get("ray")  # a caller that started Ray wants it used
        if ray is None or not ray.is_initialized():
            return "local"
    ray = init_ray()
    gpus = ray.cluster_resources().get("GPU", 0.0)
    wants_gpu = gpus_per_actor if gpus_per_actor is not None else (1.0 if gpus else 0.0)
    return "data" if wants_gpu else "actors"

"""Keep library chatter (Ray's logs, bars and hints, model-loading banners) off the console; --verbose lets it in."""

from __future__ import annotations

import logging
import os
import sys
import uuid
import warnings

# In the environment, so that Ray workers and actors started from this process inherit the choice.
VERBOSE_ENV = "I2A_VERBOSE"
RAY_LOGGERS = ("ray", "ray.data", "ray.tune", "ray.train", "ray.air", "ray.serve")


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if on else "0"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_libraries() -> None:
    """Called once per process: by the CLI, and by every Ray actor that loads models (a fresh process)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    logging.getLogger("open_clip").setLevel(logging.WARNING)
    if verbose():
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Read by Ray and Tune at import, so set before anything imports them (the CLI calls this first).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's console tables
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Through the environment when they are not imported yet: a driver that loads no model then never
    # imports them (with torch, ~1 GB of memory), and the Ray workers it starts inherit the setting.
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers"):
        library = sys.modules.get(name)
        if library is not None:
            library.utils.logging.set_verbosity_error()
            library.utils.logging.disable_progress_bar()


def init_ray():
    """Join the cluster (RAY_ADDRESS, or `ray job submit`) or start a local Ray, quietly unless --verbose.

    Returns the ray module. Works whatever imported ray first: i2a never sets RAY_AUTH_MODE after the fact
    (Ray reads it once, at import), and a new local Ray's token is created once, atomically, so that two
    commands starting at the same moment agree on it. Workers' logs stay in Ray's log files (`ray job logs`,
    the dashboard); the console gets i2a's own progress and summary.
    """
    if not os.environ.get("RAY_ADDRESS") and os.environ.get("RAY_AUTH_MODE", "token").lower() == "token":
        _ensure_local_token()
    import ray

    if not ray.is_initialized():
        loud = verbose()
        ray.init(log_to_driver=loud, logging_level=logging.INFO if loud else logging.ERROR)
    quiet_ray()
    return ray


# Ray's token file for local clusters; Ray itself writes it non-atomically when it is missing, which
# races when two local clusters start together (each then holds the other's token: InvalidAuthToken).
RAY_TOKEN_FILE = os.path.join("~", ".ray", "auth_token")


def _ensure_local_token() -> None:
    """Create Ray's local token file if none exists: written aside, then link()ed, so the first writer wins."""
    path = os.path.expanduser(RAY_TOKEN_FILE)
    if os.path.exists(path) or os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.{uuid.uuid4().hex}.new"
    with open(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(uuid.uuid4().hex + uuid.uuid4().hex)
    try:
        os.link(staging, path)
    except FileExistsError:  # another command created it first: use theirs
        pass
    finally:
        os.remove(staging)


def quiet_ray() -> None:
    """Ray Data's bars, execution plans and stats dumps, and Ray's loggers, off in this (driver) process."""
    if verbose():
        return
    quiet_libraries()
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.verbose_stats_logs = False
    # Ray Data's advice about pool sizes and small inputs: i2a sizes its pools itself.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

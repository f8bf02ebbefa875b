"""Keep model-loading chatter (progress bars, deprecation banners) off the user's terminal and job logs."""

from __future__ import annotations

import logging
import os
import sys


def quiet_libraries() -> None:
    """Called once per process: by the CLI, and by every Ray actor that loads models (a fresh process)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    logging.getLogger("open_clip").setLevel(logging.WARNING)
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

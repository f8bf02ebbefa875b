"""Keep model-loading chatter (progress bars, deprecation banners) off the user's terminal and job logs."""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """Called once per process: by the CLI, and by every Ray actor that loads models (a fresh process)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    logging.getLogger("open_clip").setLevel(logging.WARNING)
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass

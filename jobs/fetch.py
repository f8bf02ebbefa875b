"""Ray job entry point for `i2a fetch`: `ray job submit --working-dir . -- python jobs/fetch.py --distributor ray ...`."""

import os
import sys

# `python jobs/fetch.py` puts jobs/ on the path, not the working directory that holds i2a_core.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from i2a_core.cli import entry

if __name__ == "__main__":
    sys.exit(entry(["fetch", *sys.argv[1:]]))

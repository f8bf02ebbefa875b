"""`python -m i2a_core.cli`: the same as the `i2a` command."""

import sys

from i2a_core.cli import entry

sys.exit(entry())

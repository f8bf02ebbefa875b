"""`ray job submit -- python jobs/train.py ...`: the translator grid with the same flags as `i2a train`."""

import sys

from i2a_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

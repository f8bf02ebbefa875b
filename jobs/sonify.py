"""Bulk sonification job (`ray job submit -- python jobs/sonify.py ...`): `i2a sonify` flags, for large inputs."""

import argparse
import os
import sys

# `python jobs/sonify.py` puts jobs/ on the path, not the working directory that holds i2a_core.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from i2a_core.cli import quiet_libraries  # noqa: E402
from i2a_core.commands import sonify  # noqa: E402
from i2a_core.commands.common import CommandError  # noqa: E402
from i2a_core.hub import ModelUnavailable  # noqa: E402
from i2a_core.translator import TranslatorError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jobs/sonify.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sonify a folder, an s3:// prefix or a list of URLs/paths (.txt, .csv, .parquet) into "
                    "OUTPUT/audio/<relative path>.wav, a Parquet manifest (OUTPUT/manifest/) and a gallery "
                    "(OUTPUT/index.html). Rerunning skips inputs already in the manifest.")
    sonify.add_arguments(parser)
    sonify.add_job_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return sonify.run_job(args)
    except (CommandError, ModelUnavailable, TranslatorError) as e:
        print(f"jobs/sonify.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `i2a` command line: parses flags and hands them to one command module."""

from __future__ import annotations

import argparse
import gc
import sys
import traceback

from i2a_core.cli import embed, eval, fetch, flags, quickstart, sonify, train
from i2a_core.errors import Stalled, UserError
from i2a_core.quiet import quiet_libraries, set_verbose

# Every command module names its commands: name -> (help, description, add_arguments, run). They import
# nothing heavy at module level (torch, ray, diffusers, open_clip), so --help and argument errors stay instant.
COMMANDS = {**quickstart.COMMANDS, **fetch.COMMANDS, **embed.COMMANDS, **train.COMMANDS, **sonify.COMMANDS,
            **eval.COMMANDS}
# Paths the user named that cannot be read or written; the message names the path.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _console_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("console")
    group.add_argument("--verbose", action="store_true",
                       help="also show Ray's and the model libraries' own logs and progress bars")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return flags


def build_parser() -> argparse.ArgumentParser:
    console = _console_flags()
    parser = argparse.ArgumentParser(
        prog="i2a",
        description="Give sound to images: CLIP -> translator -> AudioLDM, from a laptop to a Ray cluster.",
        epilog=flags.EXIT_STATUS + "\n\nEvery command has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, description, add_arguments, run) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=description, epilog=flags.EXIT_STATUS,
                                    parents=[console], formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def _is_user_error(error: BaseException) -> bool:
    return isinstance(error, (UserError, *PATH_ERRORS))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Commands with positional INPUTs accept them anywhere, also after options (`--output d a.jpg b.jpg`).
    args, extra = parser.parse_known_args(argv)
    if extra and (any(e.startswith("-") for e in extra) or not hasattr(args, "inputs")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.inputs = list(args.inputs) + extra
    # Local paths become absolute here, once: Ray workers and Tune trials run in other directories.
    flags.absolute_paths(args)
    set_verbose(args.verbose)
    quiet_libraries()
    try:
        return args.run(args)
    except KeyboardInterrupt as e:  # Ctrl-C (130), or SIGTERM where a job turns it into one (143)
        print(f"i2a {args.command}: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        if isinstance(e, Stalled):  # said what it waited for; what finished is kept
            print(f"i2a {args.command}: stalled: {e}", file=sys.stderr)
            return 1
        if _is_user_error(e):
            print(f"i2a {args.command}: error: {e}", file=sys.stderr)
            return 2
        print(f"i2a {args.command}: failed: {type(e).__name__}: {e}"
              + ("" if args.debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1


def entry(argv: list[str] | None = None) -> int:
    """The `i2a` command (and jobs/*.py): `main`, then a fast exit. At interpreter exit Ray's shutdown collects
    garbage over the whole heap, seconds that a SIGTERM'd job does not have (`ray job stop` kills the driver 3 s
    after SIGTERM); every object still alive is frozen out of that collection, as the process ends anyway."""
    code = main(argv)
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())

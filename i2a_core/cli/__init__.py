"""The `i2a` command line: parses flags and hands them to one command module."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from i2a_core.errors import UserError

# name -> module under i2a_core.commands. Building the parser imports every one of them, so a command
# module imports nothing heavy at module level (torch, ray, diffusers, open_clip): it does so in run().
COMMANDS = {
    "quickstart": "i2a_core.cli.quickstart",
    "fetch": "i2a_core.cli.fetch",
    "embed": "i2a_core.cli.embed",
    "train": "i2a_core.cli.train",
    "sonify": "i2a_core.cli.sonify",
    "sonify-job": "i2a_core.cli.sonify_job",
    "eval": "i2a_core.cli.eval",
}

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
    from i2a_core.cli.flags import EXIT_STATUS

    console = _console_flags()
    parser = argparse.ArgumentParser(
        prog="i2a",
        description="Give sound to images: CLIP -> translator -> AudioLDM, from a laptop to a Ray cluster.",
        epilog=EXIT_STATUS + "\n\nEvery command has --help.", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION, epilog=EXIT_STATUS,
                                    parents=[console], formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
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
    from i2a_core.cli.flags import absolute_paths
    from i2a_core.quiet import quiet_libraries, set_verbose

    # Local paths become absolute here, once: Ray workers and Tune trials run in other directories.
    absolute_paths(args)
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
        if _is_user_error(e):
            print(f"i2a {args.command}: error: {e}", file=sys.stderr)
            return 2
        print(f"i2a {args.command}: failed: {type(e).__name__}: {e}"
              + ("" if args.debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

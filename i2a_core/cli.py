"""The `i2a` command line: parses flags and hands them to one command module."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under i2a_core.commands; imported lazily so `i2a --help` stays fast.
COMMANDS = {
    "quickstart": "i2a_core.commands.quickstart",
    "fetch": "i2a_core.commands.fetch",
    "embed": "i2a_core.commands.embed",
    "train": "i2a_core.commands.train",
    "sonify": "i2a_core.commands.sonify",
    "sonify-job": "i2a_core.commands.sonify_job",
    "eval": "i2a_core.commands.eval",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i2a",
        description="Give sound to images: CLIP -> translator -> AudioLDM, from a laptop to a Ray cluster.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from i2a_core.commands.common import CommandError
    from i2a_core.hub import ModelUnavailable
    from i2a_core.translator import TranslatorError

    parser = build_parser()
    # Commands with positional INPUTs accept them anywhere, also after options (`--output d a.jpg b.jpg`).
    args, extra = parser.parse_known_args(argv)
    if extra and (any(e.startswith("-") for e in extra) or not hasattr(args, "inputs")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.inputs = list(args.inputs) + extra
    from i2a_core.quiet import quiet_libraries

    quiet_libraries()
    try:
        return args.run(args)
    except (CommandError, ModelUnavailable, TranslatorError) as e:
        print(f"i2a {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"i2a {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``qengine`` command line. Only this module prints or writes files on the user's behalf."""
import argparse
import sys

from .errors import QEngineError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit code 2, no usage dump: scripts parse this.
        print(f"qengine: error: {message}", file=sys.stderr)
        sys.exit(2)


def _cmd_info(args):
    from ._runtime import show_config
    show_config()
    return 0


def build_parser():
    p = _Parser(prog="qengine", description="int8 inference and quantization engine")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True
    s = sub.add_parser("info", help="CPU features, ISAs, active kernels, OpenMP, threads")
    s.set_defaults(func=_cmd_info)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (QEngineError, OSError) as e:
        print(f"qengine: error: {e}", file=sys.stderr)
        return 2

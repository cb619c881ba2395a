"""``python -m bench NAME [--options]``: run one benchmark; unknown NAME lists them (exit 2)."""

from __future__ import annotations

import importlib
import sys

from bench import BENCHMARKS

__all__ = ["main"]


def _usage(out: object = sys.stderr) -> None:
    print("usage: python -m bench NAME [--options]   (NAME --help for its options)", file=out)
    print("benchmarks:", file=out)
    for name, (_, what) in BENCHMARKS.items():
        print(f"  {name:<8} {what}", file=out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        _usage(sys.stdout)
        return 0
    if not args or args[0] not in BENCHMARKS:
        if args:
            print(f"unknown benchmark {args[0]!r}", file=sys.stderr)
        _usage()
        return 2
    module = importlib.import_module(BENCHMARKS[args[0]][0])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())

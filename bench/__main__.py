"""``python -m bench NAME [--options]``: run one benchmark; unknown NAME lists them (exit 2).

The benchmark runs inside :func:`bench.cleanup.session`: on ^C (SIGINT) or SIGTERM it
stops, every child process is ended, its scratch data is removed, the last line is
``{"bench": NAME, "error": "interrupted by SIGINT"}`` and the exit status 130 (143 for
SIGTERM).
"""

from __future__ import annotations

import gc
import importlib
import signal
import sys

from bench import BENCHMARKS, cleanup
from bench.common import emit

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
    name = args[0]
    try:
        with cleanup.session(name, keep="--keep" in args):
            module = importlib.import_module(BENCHMARKS[name][0])
            return int(module.main(args[1:]))
    except BaseException as exc:
        # KeyboardInterrupt, or whatever the code that was stopping raised instead
        sig = cleanup.interrupted_by()
        if sig is None and isinstance(exc, KeyboardInterrupt):
            sig = signal.SIGINT
        if sig is None:
            raise
        how = "" if isinstance(exc, KeyboardInterrupt) else f" (while stopping: {exc!r:.200})"
        print(f"{name}: interrupted by {sig.name}{how}; cleaned up", file=sys.stderr, flush=True)
        gc.collect()  # the interrupted code's "never retrieved" warnings: before the result
        emit({"bench": name, "error": f"interrupted by {sig.name}"})
        return cleanup.EXIT_SIGNAL[sig]


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m repro {report,bench,check-cuda,ioi} ...`."""

from __future__ import annotations

import argparse
import sys

from repro.profiles import PROFILES


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ioi"]:  # the IOI pipeline has its own argument parser
        from repro.ioi.cli import main as ioi_main

        return ioi_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="rebuild reports/<profile>/report.md from saved results")
    rep.add_argument("profile", nargs="?", default="cpu", choices=sorted(PROFILES))
    ben = sub.add_parser("bench", help="run the benchmarks, write reports/<profile>/bench.md, update the report")
    ben.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    ben.add_argument("-k", dest="select", default=None, help="only benchmarks whose name contains this")
    sub.add_parser("check-cuda", help="exit non-zero with a clear message when no CUDA GPU is visible")
    sub.add_parser("ioi", help="run the IOI patching pipeline (see `python -m repro ioi --help`)")
    args = parser.parse_args(argv)

    if args.command == "report":
        from repro.report import write_report

        try:
            print(f"report written: {write_report(args.profile)}")
        except (FileNotFoundError, ValueError) as err:
            parser.exit(2, f"error: {err}\n")
    elif args.command == "bench":
        from repro.bench import write_benchmarks
        from repro.report import write_report

        print(f"benchmarks written: {write_benchmarks(args.profile, args.select)}")
        try:  # the report embeds the benchmark table
            print(f"report updated: {write_report(args.profile)}")
        except FileNotFoundError:
            print(f"no claim results for {args.profile!r} yet: `nox -s {args.profile}` writes the report")
    elif args.command == "check-cuda":
        import torch

        if not torch.cuda.is_available():
            parser.exit(2, f"error: the gpu profile needs a CUDA GPU, but torch {torch.__version__} sees none. "
                           "Run `nox -s cpu` here, or set REPRO_TORCH_SPEC to a CUDA build on a GPU machine.\n")
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

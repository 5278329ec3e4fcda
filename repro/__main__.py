"""Command line: `python -m repro <command> ...`; `python -m repro --help` lists the commands.

Each claim has a command of its own (its package's ``cli.py``, registered in ``CLAIM_COMMANDS``); the
suite's own commands are ``report``, ``bench`` and ``check-cuda``.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# command -> (module with ``main(argv) -> int``, one-line help)
CLAIM_COMMANDS = {
    "ioi": ("repro.ioi.cli", "claim 1: IOI activation patching (Filter -> Collect -> Patch -> Plot)"),
    "gradsim": ("repro.gradsim.cli", "claim 2: GradSim vs ripple of MEMIT edits (knowledge pieces, coupling, edits)"),
    "split": ("repro.split.cli", "claim 3: split learning, Bottom/Top parameters, MACs and times"),
    "sdc": ("repro.sdc.cli", "claim 4: silent data corruption in attention, caught by bound violations"),
    "lm": ("repro.lm.cli", "claim 5: RNN / LSTM / Transformer word LMs (train, sample, compare) and PubMedQA fine-tuning"),
    "hybrid": ("repro.placement.cli", "claim 6: the IOI pipeline local, remote and hybrid on Dask over a shaped link"),
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; a Ctrl-C before the command's own ``guarded`` takes over (while torch, scipy and
    transformers are imported, say) is one line and exit status 130 too, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    name = f"python -m repro {argv[0]}" if argv[:1] and not argv[0].startswith("-") else "python -m repro"
    command_started: list[bool] = []  # set once the command's module is imported
    with _ctrl_c_noted() as pressed:
        try:
            return _main(argv, command_started)
        except KeyboardInterrupt:
            pass
        except Exception:
            # A Ctrl-C inside a library's import can surface as another error (numpy's half-imported
            # module: AttributeError), and a run that has started reports its own errors.
            if not pressed or command_started:
                raise
    print(f"{name}: interrupted before the command started; nothing was written.", file=sys.stderr)
    return 130


@contextmanager
def _ctrl_c_noted() -> Iterator[list[int]]:
    """Note each Ctrl-C (still raising KeyboardInterrupt), where Python's own handler is the one in place."""
    pressed: list[int] = []

    def note(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    try:
        replaced = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if replaced:
            signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread
        replaced = False
    try:
        yield pressed
    finally:
        if replaced:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _main(argv: list[str], command_started: list[bool]) -> int:
    if argv[:1] and argv[0] in CLAIM_COMMANDS:  # each claim parses its own arguments
        command = importlib.import_module(CLAIM_COMMANDS[argv[0]][0])
        command_started.append(True)
        return command.main(argv[1:])
    command_started.append(True)
    from repro.cli import ArgumentParser
    from repro.profiles import PROFILE_ENV

    parser = ArgumentParser(prog="python -m repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (_, help_text) in CLAIM_COMMANDS.items():
        sub.add_parser(command, help=help_text, add_help=False)
    rep = sub.add_parser("report", help="rebuild reports/<profile>/report.md from saved results")
    rep.add_argument("profile", nargs="?", default=None, help=f"profile (default: ${PROFILE_ENV} or cpu)")
    ben = sub.add_parser("bench", help="run the benchmarks, write reports/<profile>/bench.md, update the report")
    ben.add_argument("--profile", default=None, help=f"profile (default: ${PROFILE_ENV} or cpu)")
    ben.add_argument("-k", dest="select", default=None, help="only benchmarks whose name contains this")
    sub.add_parser("check-cuda", help="exit non-zero with a clear message when no CUDA GPU is visible")
    args = parser.parse_args(argv)

    from repro.cli import UserError, guarded, resolve_profile

    if args.command == "report":
        from repro.report import write_report

        def report() -> int:
            name = resolve_profile(args.profile, check_device=False).name
            try:
                print(f"report written: {write_report(name)}")
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None
            return 0

        return guarded("report", report)
    if args.command == "bench":
        from repro.bench import write_benchmarks
        from repro.report import write_report

        def bench() -> int:
            name = resolve_profile(args.profile).name
            print(f"benchmarks written: {write_benchmarks(name, args.select)}")
            try:  # the report embeds the benchmark table
                print(f"report updated: {write_report(name)}")
            except FileNotFoundError:
                print(f"no claim results for {name!r} yet: `nox -s {name}` writes the report")
            return 0

        return guarded("bench", bench)

    def check_cuda() -> int:
        import torch

        resolve_profile("gpu")  # refuses with a clear line when no CUDA GPU is visible
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
        return 0

    return guarded("check-cuda", check_cuda)


if __name__ == "__main__":
    sys.exit(main())

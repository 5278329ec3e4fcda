"""What every claim's command line shares: common flags, checks before any long work, one-line errors.

A claim's ``cli.py`` builds its parser with ``claim_parser`` (numeric flags typed with ``int_in`` /
``float_in``), calls ``prepare`` (which validates the profile, the device and ``--out``, and makes
``--quiet`` quiet, before a model is loaded) and wraps its body in ``guarded``, so bad input ends with one
line on stderr and exit status 2, never a traceback; Ctrl-C, SIGTERM and SIGHUP end with one line saying
what was kept.

The ``--out`` rule (``repro.outdir``): a command writes into ``--out`` only when it does not exist, is
empty, or holds an earlier run of the same command; ``--force`` replaces any other folder; a file is never
replaced.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path

from repro import outdir
from repro.assets import AssetError
from repro.files import check_writable
from repro.outdir import OutFolderError
from repro.profiles import Profile, get_profile
from repro.readers import InputError

EXIT_BAD_INPUT = 2
STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # `timeout`, `kill`, a closed terminal: treated as Ctrl-C is


class UserError(ValueError):
    """Bad input from the user; the message names the input, what is wrong and what to do, on one line."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the run is, so every ``finally`` and staging clean-up runs as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the suite's one-line errors (argparse prints its usage line first)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _number_in(kind: type, lo, hi, note: str) -> Callable[[str], int | float]:
    span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    why = f" ({note})" if note else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}; "
                                             f"give {span}{why}") from None
        if value != value or value < lo or (hi is not None and value > hi):  # value != value: NaN
            raise argparse.ArgumentTypeError(f"{text} is out of range; give {span}{why}")
        return value

    parse.__name__ = f"{kind.__name__} in {span}"
    return parse


def int_in(lo: int, hi: int | None = None, *, note: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``lo..hi`` (``hi`` None: no upper bound), refused by argparse
    before any work with one line, e.g. ``argument --pairs: 1 is out of range; give 10..10000 (why)``."""
    return _number_in(int, lo, hi, note)


def float_in(lo: float, hi: float | None = None, *, note: str = "") -> Callable[[str], float]:
    """An argparse ``type``: a number in ``[lo, hi]`` (NaN refused); see ``int_in``."""
    return _number_in(float, lo, hi, note)


def add_force_flag(parser: argparse.ArgumentParser, flag: str = "--out") -> None:
    """``--force``: replace ``flag``'s folder even when it holds files this command did not write."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace {flag} even when it holds files this command did not write (never a file)")


def claim_parser(command: str, description: str, *, models: tuple[str, ...], default_model: str,
                 default_out: str) -> argparse.ArgumentParser:
    """``python -m repro <command>`` with the flags every claim takes: --model, --profile, --out, --force,
    --quiet."""
    p = ArgumentParser(prog=f"python -m repro {command}", description=description)
    p.add_argument("--model", default=default_model, choices=models, help=f"model key (default: {default_model})")
    p.add_argument("--profile", default=None, help="run profile: cpu or gpu (default: $REPRO_PROFILE or cpu)")
    p.add_argument("--out", type=Path, default=Path(default_out),
                   help=f"output folder, replaced whole at the end of a run (default: {default_out})")
    add_force_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars, no library warnings")
    return p


def resolve_profile(name: str | None, *, check_device: bool = True) -> Profile:
    """The profile by name (or $REPRO_PROFILE), refusing unknown names and (``check_device``) a gpu
    profile without CUDA."""
    try:
        profile = get_profile(name)
    except ValueError as err:
        raise UserError(str(err)) from None
    if check_device and profile.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"profile {profile.name!r} needs a CUDA GPU, but torch {torch.__version__} sees none; "
                "use --profile cpu, or a CUDA build of torch on a GPU machine."
            )
    return profile


def check_out(out: Path, *, force: bool = False, flag: str = "--out", command: str | None = None) -> None:
    """Before any long work: ``out``'s parent takes files (outputs are staged beside ``out``) and ``out``
    may be replaced by this command (``repro.outdir``); ``staged_dir`` later honours the same ``force``.
    ``command`` names the marker (default: the running command, e.g. "lm compare" where one command has
    several outputs)."""
    try:
        check_writable(Path(out).expanduser().absolute().parent, f"{flag}'s parent folder")
    except OSError as err:
        raise UserError(str(err)) from None
    outdir.claim(out, force=force, command=command, flag=flag)


_RUN: ContextVar[ExitStack | None] = ContextVar("repro_run", default=None)


def quiet_libraries() -> None:
    """``--quiet``: transformers' and the hub's progress bars ("Loading weights"), library warnings (e.g.
    matplotlib's) and log lines below ERROR are silenced for the rest of the run (restored after it)."""
    import transformers.utils.logging as hf_logging
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    run = _RUN.get() or ExitStack()  # outside guarded (a test, a notebook): for the rest of the process
    if hf_logging.is_progress_bar_enabled():
        run.callback(enable_progress_bars)
        run.callback(hf_logging.enable_progress_bar)
    run.callback(hf_logging.set_verbosity, hf_logging.get_verbosity())
    hf_logging.disable_progress_bar()  # also the hub's
    disable_progress_bars()
    hf_logging.set_verbosity_error()
    run.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    run.callback(logging.disable, logging.root.manager.disable)
    logging.disable(logging.WARNING)
    for name, value in (("TQDM_DISABLE", "1"), ("TRANSFORMERS_VERBOSITY", "error")):  # for child processes
        run.callback(_restore_env, name, os.environ.get(name))
        os.environ[name] = value


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def prepare(args: argparse.Namespace) -> Profile:
    """Validate what can be validated before loading a model: the profile, the device and ``--out``; and
    make ``--quiet`` quiet."""
    profile = resolve_profile(args.profile)
    check_out(args.out, force=getattr(args, "force", False))
    if getattr(args, "quiet", False):
        quiet_libraries()
    return profile


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Stopped`` (a KeyboardInterrupt) in the main thread for the block, so every
    ``finally``, staging folder and teardown runs as on Ctrl-C (nested use is fine)."""
    def handler(signum, frame):
        raise Stopped(signum)

    previous = {}
    try:
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), handler)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield
    finally:
        for name, old in previous.items():
            signal.signal(getattr(signal, name), old)


NOTHING_KEPT = "nothing of this run was kept (outputs replace --out only when a run completes)"


def guarded(command: str, body: Callable[[], int], *, on_interrupt: str | Callable[[], str] | None = None) -> int:
    """Run ``body`` as ``python -m repro <command>``; a known kind of bad input becomes one line on stderr and
    exit status 2; Ctrl-C, SIGTERM and SIGHUP one line and 128 + the signal. ``on_interrupt`` says what an
    interrupted run kept and how to go on (a string, or a function called then), e.g. "the finished faults
    are kept in out-log; run the same command again to resume"; by default: nothing was kept."""
    try:
        with ExitStack() as run:
            token = _RUN.set(run)
            run.callback(_RUN.reset, token)
            run.enter_context(outdir.running(command))
            run.enter_context(stop_on_signals())
            return body()
    except (UserError, AssetError, InputError, OutFolderError) as err:
        print(f"python -m repro {command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Stopped) else signal.SIGINT
        what = f"stopped by {signal.Signals(signum).name}" if isinstance(err, Stopped) else "interrupted"
        kept = (on_interrupt() if callable(on_interrupt) else on_interrupt) or NOTHING_KEPT
        print(f"python -m repro {command}: {what}; {kept.rstrip('.')}.", file=sys.stderr)
        return 128 + int(signum)

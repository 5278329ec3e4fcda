"""Writing files so that an interrupted run never leaves a torn or mixed result.

Every writer in the suite goes through these helpers: a reader (the report, a snapshot check, a user)
sees the old file or the new one, never half of one. Files keep the user's umask (``mkstemp`` alone
would leave them 0600). ``staged_dir`` does the same for a whole output folder: a CLI writes into a
temporary folder beside ``--out`` and renames it into place only when every file is there, and only over a
folder it may replace (``repro.outdir``: never a file or a folder of the user's).
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import numpy as np

from repro import outdir


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; restore at once
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (mode 0666 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(obj):
    """Dataclasses, enums, paths, numpy scalars and arrays as plain JSON values (non-finite floats as text)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def write_json_atomic(path: str | Path, data) -> Path:
    return write_atomic(path, json.dumps(jsonable(data), indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, text)


def write_npy_atomic(path: str | Path, array) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return write_atomic(path, buffer.getvalue())


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def figure_path(out_dir: str | Path, model: str, claim: str, figure: str) -> Path:
    """Where a claim's figure goes: ``<out_dir>/<model>-<claim>-<figure>.png`` (a model path gives its folder
    name), so the figures of every claim and model sort together in one folder."""
    return Path(out_dir) / f"{Path(model).name}-{claim}-{figure}.png"


def save_figure(fig, path: str | Path, *, dpi: int = 110) -> Path:
    """Render a matplotlib figure to PNG, write it atomically, close the figure."""
    return write_atomic(path, figure_png(fig, dpi=dpi))


def check_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` and prove a file can be written there, before any long work starts."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(f"{what} {folder} is not writable ({_why_not(folder, err)}); choose another folder.") from None
    return folder


def _why_not(folder: Path, err: OSError) -> str:
    """Why ``folder`` cannot take files, in words: the strerror alone misleads (/proc answers 'No such file
    or directory' to a new file, a file in the path answers 'Not a directory')."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if existing is not None and err.errno == errno.ENOENT:
        fs = _file_system(existing)
        return f"{existing} is on {fs}, which takes no new files" if fs else f"{existing} takes no new files"
    return err.strerror or str(err)


def _file_system(path: Path) -> str | None:
    """'the proc file system mounted at /proc' for a path, from /proc/self/mounts; None where unknown."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
        resolved = path.resolve()
    except (OSError, IndexError):
        return None
    inside = [(Path(point), kind) for point, kind in mounts if resolved == Path(point) or Path(point) in resolved.parents]
    if not inside:
        return None
    point, kind = max(inside, key=lambda m: len(m[0].parts))
    return f"the {kind} file system mounted at {point}"


@contextmanager
def staged_dir(out: str | Path, *, command: str | None = None, force: bool | None = None,
               marked: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into; on success it is marked as ``command``'s output
    (``repro.outdir``) and replaces ``out`` whole, on failure, Ctrl-C or SIGTERM it is deleted and ``out`` is
    left as it was.

    ``out`` must satisfy the ``--out`` rule (``repro.outdir.check``: absent, empty, or an earlier run of the
    same command, unless ``force``), checked here on entry and again before the swap; ``command`` and
    ``force`` default to what the running command claimed for ``out`` (``repro.cli.prepare``). A folder the
    suite keeps for itself (a cache whose manifest lists every file) passes ``force=True, marked=False``."""
    out = Path(out).expanduser()
    granted = outdir.claim_for(out, command, force)
    outdir.check(out, granted)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        if marked:
            outdir.write_marker(staging, granted.command)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        outdir.check(out, granted)  # the run may have taken hours: look again before replacing anything
    except outdir.OutFolderError as err:
        kept = out.parent / f"{out.name}.new-{os.getpid()}"
        os.replace(staging, kept)
        raise outdir.OutFolderError(f"{err} This run's output is kept in {kept}.") from None
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)

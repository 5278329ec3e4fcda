"""repro.files: an interrupted run never leaves torn files or a folder of mixed old and new outputs."""

import os

import pytest

from repro import files


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _folder(path, **contents):
    path.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (path / name).write_text(text)
    return path


def _contents(path):
    return {p.name: p.read_text() for p in path.iterdir()}


def test_staged_dir_replaces_the_old_folder_whole_on_success(tmp_path, umask_022):
    out = _folder(tmp_path / "out", **{"old.npy": "old", "HeatMap.png": "old"})
    with files.staged_dir(out, command="demo", force=True) as staging:  # unmarked: only with --force
        assert staging.parent == tmp_path and staging != out
        files.write_text_atomic(staging / "HeatMap.png", "new")
        assert _contents(out) == {"old.npy": "old", "HeatMap.png": "old"}  # untouched until the end
    assert _contents(out) == {"HeatMap.png": "new", ".repro-out.json": (out / ".repro-out.json").read_text()}
    assert "old.npy" not in _contents(out)  # no stale old.npy beside the new outputs
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or .old folder left
    assert out.stat().st_mode & 0o777 == 0o755  # the umask, not mkdtemp's 0700


@pytest.mark.parametrize("interrupt", [RuntimeError("model failed"), KeyboardInterrupt()])
def test_staged_dir_leaves_the_old_folder_intact_when_interrupted(tmp_path, interrupt):
    out = _folder(tmp_path / "out", **{"result.json": "old"})
    with pytest.raises(type(interrupt)), files.staged_dir(out, command="demo", force=True) as staging:
        files.write_text_atomic(staging / "result.json", "half of the new")
        raise interrupt
    assert _contents(out) == {"result.json": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_dir_without_an_old_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt), files.staged_dir(tmp_path / "a" / "out", command="demo") as staging:
        (staging / "x").write_text("x")
        raise KeyboardInterrupt
    assert list((tmp_path / "a").iterdir()) == []
    with files.staged_dir(tmp_path / "a" / "out", command="demo") as staging:
        (staging / "x").write_text("x")
    assert _contents(tmp_path / "a" / "out").keys() == {"x", ".repro-out.json"}


def test_atomic_files_and_figures_keep_the_umask(tmp_path, umask_022):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = [
        files.save_figure(fig, tmp_path / "f.png"),
        files.write_npy_atomic(tmp_path / "a.npy", [1.0, 2.0]),
        files.write_json_atomic(tmp_path / "r.json", {"v": float("nan")}),
    ]
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644] * 3  # mkstemp alone would leave 0600
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG") and '"nan"' in (tmp_path / "r.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "f.png", "r.json"]


def test_check_writable_says_which_folder_and_what_to_do(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"^The cache .*a-file/x is not writable \(.*a-file is a file, not a folder\); "
                                      r"choose another folder\.$"):
        files.check_writable(blocker / "x", "The cache")
    assert files.check_writable(tmp_path / "new", "The cache") == tmp_path / "new"
    assert list((tmp_path / "new").iterdir()) == []  # the probe file is removed


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux's /proc")
def test_check_writable_names_a_virtual_file_system_instead_of_no_such_file():
    """/proc answers 'No such file or directory' to a new file: the message says what it is instead."""
    with pytest.raises(OSError, match=r"^--out's parent folder /proc/x is not writable \(/proc is on the proc file "
                                      r"system mounted at /proc, which takes no new files\); choose another folder\.$"):
        files.check_writable("/proc/x", "--out's parent folder")

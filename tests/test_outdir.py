"""The --out rule: a run replaces --out only when it is absent, empty or an earlier run of the same command.

| --out holds                                   | without --force                               | with --force |
|-----------------------------------------------|-----------------------------------------------|--------------|
| nothing / an empty folder                     | written                                       | written      |
| an earlier run of the same command            | replaced whole                                | replaced     |
| the output of another command                 | refused: "holds the output of `... sdc`"      | replaced     |
| files the suite did not write (notes.txt ...) | refused: "a folder this suite did not write"  | replaced     |
| an earlier run plus a file of the user's      | refused: "holds files the earlier run did not write" | replaced |
| a file, a link, the working or home folder    | refused                                       | refused      |
"""

import os

import pytest

from repro import outdir
from repro.files import staged_dir
from repro.outdir import MARKER, OutFolderError


def _run(out, command="ioi", force=None, files=("result.json",)):
    with staged_dir(out, command=command, force=force) as staging:
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(f"{command} {name}")


def _user_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("notes")
    (path / "thesis.tex").write_text("\\chapter{}")
    return path


def test_a_new_or_empty_folder_is_written_and_marked_with_the_command_and_its_files(tmp_path):
    _run(tmp_path / "new", files=("a.json", "figures/b.png"))
    marker = outdir.read_marker(tmp_path / "new")
    assert marker["command"] == "ioi" and marker["written"] == ["a.json", "figures", "figures/b.png"]
    (tmp_path / "empty").mkdir()
    _run(tmp_path / "empty")
    assert (tmp_path / "empty" / "result.json").read_text() == "ioi result.json"


def test_an_earlier_run_of_the_same_command_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    _run(out, files=("old.json", "result.json"))
    (out / "old.json").unlink()  # deleting some of its files is fine
    _run(out, files=("result.json",))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or .old folder left


def test_a_folder_of_the_users_is_refused_and_kept_unless_forced(tmp_path):
    out = _user_folder(tmp_path / "thesis")
    with pytest.raises(OutFolderError, match=r"^--out .*thesis is a folder this suite did not write \(it holds "
                                             r"notes.txt, thesis.tex\); choose another --out, or add --force to "
                                             r"replace it \(everything in it is deleted\)\.$"):
        _run(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # and no staging folder left
    _run(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "result.json"]


def test_another_commands_output_and_added_files_are_refused(tmp_path):
    out = tmp_path / "out"
    _run(out, command="sdc")
    with pytest.raises(OutFolderError, match=r"holds the output of `python -m repro sdc`, not of `ioi`; choose "
                                             r"another --out, or add --force"):
        _run(out, command="ioi")
    (out / "my-notes.txt").write_text("mine")
    with pytest.raises(OutFolderError, match=r"holds files the earlier `sdc` run did not write \(my-notes.txt\); "
                                             r"move them out, choose another --out, or add --force"):
        _run(out, command="sdc")
    assert (out / "my-notes.txt").read_text() == "mine"
    (out / MARKER).write_text("[]")  # a marker this suite did not write is no marker
    with pytest.raises(OutFolderError, match="a folder this suite did not write"):
        _run(out, command="sdc")


@pytest.mark.parametrize("force", [False, True])
def test_a_file_a_link_or_the_working_folder_is_never_replaced(tmp_path, monkeypatch, force):
    paper = tmp_path / "paper.pdf"
    paper.write_text("%PDF")
    with pytest.raises(OutFolderError, match=r"paper.pdf is a file, not a folder; a run never replaces a file: "
                                             r"move it away or choose another --out\.$"):
        _run(paper, force=force)
    assert paper.read_text() == "%PDF"
    link = tmp_path / "link"
    link.symlink_to(_user_folder(tmp_path / "real"))
    with pytest.raises(OutFolderError, match="is a symbolic link"):
        _run(link, force=force)
    monkeypatch.chdir(tmp_path / "real")
    with pytest.raises(OutFolderError, match="holds the current folder or your home folder"):
        _run(tmp_path, force=force)
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["notes.txt", "thesis.tex"]


def test_files_added_during_the_run_stop_the_swap_and_the_output_is_kept_beside(tmp_path):
    out = tmp_path / "out"
    _run(out)
    late = r"did not write \(late.txt\).*This run's output is kept in .*out\.new-"
    with pytest.raises(OutFolderError, match=late), staged_dir(out, command="ioi") as staging:
        (staging / "result.json").write_text("new")
        (out / "late.txt").write_text("written while the run ran")
    assert (out / "late.txt").is_file() and (out / "result.json").read_text() == "ioi result.json"
    kept = tmp_path / f"out.new-{os.getpid()}"
    assert (kept / "result.json").read_text() == "new"


def test_prepare_records_force_for_staged_dir_and_the_command_comes_from_the_run(tmp_path):
    out = _user_folder(tmp_path / "out")
    with outdir.running("split"):
        outdir.claim(out, force=True)
        _run(out, command=None)  # staged_dir takes "split" and --force from the claim
    assert outdir.read_marker(out)["command"] == "split"
    with pytest.raises(RuntimeError, match="needs the command"):
        _run(tmp_path / "elsewhere", command=None)  # outside a run, a caller must say who writes

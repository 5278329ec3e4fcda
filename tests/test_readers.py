"""The one checked reader: every bad file is one line naming the file, the entry and the field."""

import pytest

from repro.readers import InputError, field, read_json, read_text, records


def test_non_utf8_text_names_the_file_the_byte_and_the_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"first line\nna\xefve\n")
    with pytest.raises(InputError, match=r"corpus file .*corpus.txt is not UTF-8 text \(byte 0xef on line 2\)"):
        read_text(path, what="corpus file")


@pytest.mark.parametrize("content, message", [
    (None, r"pairs file .*missing.json does not exist"),
    ("{", r"is not valid JSON \(Expecting property name enclosed in double quotes at line 1, column 2\)"),
])
def test_missing_and_malformed_json(tmp_path, content, message):
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_json(path, what="pairs file")


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a file"):
        read_text(tmp_path, what="sweep file")


def test_records_and_fields_name_the_entry_and_the_field(tmp_path):
    with pytest.raises(InputError, match=r"x.json: expected a non-empty JSON list of pairs, got an object"):
        list(records({"a": 1}, "x.json", what="pairs"))
    (where, entry), = records([{"bits": "abc", "n": True}], "x.json", what="faults")
    with pytest.raises(InputError, match=r"x.json entry 0: field 'bits' must be a list, got a string \"abc\""):
        field(entry, "bits", list, where)
    with pytest.raises(InputError, match=r"field 'n' must be an integer, got a boolean true"):
        field(entry, "n", int, where)
    with pytest.raises(InputError, match=r"x.json entry 0: missing field 'seed'"):
        field(entry, "seed", int, where)
    assert field(entry, "seed", int, where, default=0) == 0
    assert field({"x": 3}, "x", float, where) == 3

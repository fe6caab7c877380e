import pytest

from conftest import read_rows
from fusionapp.data.tables import table_header
from fusionapp.errors import FusionError


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return str(path)


def test_csv_with_bom_crlf_and_quoted_newlines(tmp_path):
    path = write(tmp_path, "t.csv", "\ufeffimage,text,label\r\na.png,\"two\r\nlines\",x\r\nb.png,plain,y\r\n")
    assert table_header(path) == ["image", "text", "label"]
    assert [row["text"] for row in read_rows(path)] == ["two\r\nlines", "plain"]


def test_jsonl_rows_and_missing_keys(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"image": "a.png", "text": "hi", "label": 1}\n\n{"image": "b.png", "label": null}\n')
    assert read_rows(path) == [{"image": "a.png", "text": "hi", "label": "1"}, {"image": "b.png", "label": "", "text": ""}]


def test_format_is_read_from_content_not_extension(tmp_path):
    path = write(tmp_path, "t.csv", '{"image": "a.png", "text": "hi", "label": "x"}\n')
    assert read_rows(path)[0]["label"] == "x"


@pytest.mark.parametrize("content,message", [
    ("", "the file is empty"),
    ("image,text,label\n", "header but no rows"),
    ("image,text,image\na,b,c\n", "column 'image' appears twice"),
    ('{"a": 1}\n{broken\n', "line 2: not valid JSON"),
    (b"image,text\n\xff\xfe,x\n", "not UTF-8"),
])
def test_broken_tables_get_one_line_errors(tmp_path, content, message):
    path = write(tmp_path, "t.csv", content)
    with pytest.raises(FusionError, match=message):
        read_rows(path)


def test_missing_table(tmp_path):
    with pytest.raises(FusionError, match="no such file"):
        read_rows(str(tmp_path / "nope.csv"))

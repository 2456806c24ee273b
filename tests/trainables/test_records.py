"""The reading layer on real files: exact positions, bounded excerpts, size caps, shapes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from trainables.errors import DataError, RunError
from trainables.records import (
    Record,
    excerpt,
    position,
    read_bytes,
    read_csv,
    read_json,
    read_jsonl,
    read_text,
    read_yaml,
)


class Group(Record):
    lookback: int
    columns: list[str]


class File(Record):
    groups: list[Group]


def test_excerpt_is_bounded_and_says_how_much_was_cut() -> None:
    assert excerpt("abc") == "'abc'"
    assert excerpt([1, 2]) == "[1, 2]"
    long = excerpt("x" * 5_000_000)
    assert len(long) < 90 and long.endswith("… (5,000,000 chars)")
    assert len(excerpt(b"\x00" * 1000)) < 90
    assert len(excerpt({"k": list(range(10_000))})) < 90


def test_position_counts_blank_lines() -> None:
    raw = b"a\n\n\nbc\xff"
    assert position(raw, raw.index(b"\xff")) == (4, 3)


def test_non_utf8_names_the_exact_line_and_byte(tmp_path: Path) -> None:
    f = tmp_path / "metrics.json"
    f.write_bytes(b"{\n" + b"\n" * 48 + b'"k": "caf\xe9"}\n')
    with pytest.raises(RunError, match=r"metrics\.json: line 50, byte 10: not UTF-8 \(byte 0xe9\)"):
        read_text(f)


def test_json_error_has_exact_line_and_column_with_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "groups.json"
    f.write_text('{\n\n\n  "a": 1,\n\n  "b": ]\n}\n')
    with pytest.raises(RunError, match=r"groups\.json: line 6, column 8: not valid JSON"):
        read_json(f)


def test_model_error_names_the_dotted_key_and_excerpts_the_value(tmp_path: Path) -> None:
    f = tmp_path / "groups.json"
    f.write_text('{"groups": [{"lookback": 4, "columns": []}, {"lookback": "' + "9" * 10_000 + '", "columns": []}]}')
    with pytest.raises(RunError) as e:
        read_json(f, File, hint="run the sweep again")
    msg = str(e.value)
    assert msg.startswith(f"{f}: groups[1].lookback: expected a valid integer; got '9999")
    assert msg.endswith("(10,000 chars); run the sweep again") and len(msg) < 300 and "\n" not in msg


def test_missing_key_and_wrong_top_level_type(tmp_path: Path) -> None:
    f = tmp_path / "groups.json"
    f.write_text('{"groups": [{"columns": ["a"]}]}')
    with pytest.raises(RunError, match=r"groups\[0\]\.lookback: missing \(required\)$"):
        read_json(f, File)
    f.write_text("[1, 2]")
    with pytest.raises(RunError, match=r"\(top level\): expected a mapping"):
        read_json(f, File)


def test_jsonl_names_the_line_and_tolerates_only_a_torn_tail(tmp_path: Path) -> None:
    f = tmp_path / "result.json"
    f.write_text('{"lookback": 1, "columns": []}\n\n{"lookback": 2, "columns": []}\n{"lookback": 3, "col')
    assert [r["lookback"] for r in read_jsonl(f, Group, torn_tail=True)] == [1, 2]
    with pytest.raises(RunError, match=r"result\.json: line 4, column \d+: not valid JSON"):
        read_jsonl(f, Group)
    f.write_text('{"lookback": 1, "columns": []}\n\n[3]\n{"lookback": 2, "columns": []}\n')
    with pytest.raises(RunError, match=r"result\.json: line 3: \(top level\): expected a mapping"):
        read_jsonl(f, Group, torn_tail=True)


def test_yaml_error_has_the_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("a: 1\n\n\nb: [1, 2\nc: 3\n")
    with pytest.raises(RunError, match=r"config\.yaml: line \d+, column \d+: not valid YAML"):
        read_yaml(f)
    f.write_text("a: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(RunError, match=r"config\.yaml: line 1, column 4: not valid YAML"):
        read_yaml(f)


def test_size_cap_refuses_big_files_and_gzip_bombs_while_decompressing(tmp_path: Path) -> None:
    f = tmp_path / "big.json"
    f.write_bytes(b" " * 2_000)
    with pytest.raises(DataError, match=r"big\.json: 2,000 bytes; files over 1,000 bytes are refused"):
        read_bytes(f, limit=1_000, error=DataError)
    bomb = tmp_path / "x.csv.gz"
    bomb.write_bytes(gzip.compress(b"0" * 50_000_000))  # ~50 KB on disk
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"x\.csv\.gz: expands to more than 10,000,000 bytes when decompressed"):
        read_bytes(bomb, limit=10_000_000, error=DataError)
    bomb.write_bytes(gzip.compress(b"a,b\n1,2\n")[:-6])
    with pytest.raises(DataError, match="gzip stream is truncated or corrupt"):
        read_bytes(bomb, error=DataError)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"nope\.json: file not found; export it again$"):
        read_json(tmp_path / "nope.json", hint="export it again")
    with pytest.raises(RunError, match=r": is a folder, not a file$"):
        read_json(tmp_path)


def test_csv_names_the_exact_line_of_a_bad_cell_blank_lines_counted(tmp_path: Path) -> None:
    f = tmp_path / "predictions.csv"
    f.write_text("timestamp,y_true,y_pred\n2024-01-01T00:00:00Z,1.0,1.1\n\n\n2024-01-02T00:00:00Z,1.0,abc\n")
    cols = {"timestamp": "time", "y_true": "float", "y_pred": "float"}
    with pytest.raises(RunError, match=r"predictions\.csv: line 3: timestamp: expected an ISO-8601 date-time; got ''"):
        read_csv(f, columns=cols)
    f.write_text("timestamp,y_true,y_pred\n2024-01-01T00:00:00Z,1.0,1.1\n2024-01-02T00:00:00Z,nan,abc\n")
    with pytest.raises(RunError, match=r"line 3: y_pred: expected a number; got 'abc'$"):
        read_csv(f, columns=cols)
    f.write_text("timestamp,y_true\n2024-01-01T00:00:00Z,1.0\n")
    with pytest.raises(RunError, match=r"header: missing column y_pred; got 'timestamp,y_true'"):
        read_csv(f, columns=cols)
    f.write_text("timestamp,y_true,y_pred,close\n2024-01-01T00:00:00Z,1.0,1.1,2\n")
    df = read_csv(f, columns=cols, optional={"close": "float", "y_persistence": "float"})
    assert df["close"].dtype.kind == "f" and str(df["timestamp"].dt.tz) == "UTC"

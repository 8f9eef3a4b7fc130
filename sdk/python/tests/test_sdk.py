"""The SDK's checks, natively: what a session returns is checked as the
component checks it before the host sees it."""

import pytest

from strata_sdk import Column, Extractor, OpenError, Param, ParamError, RowError
from strata_sdk.extractor import check_values, kind_of
from strata_sdk.params import params_schema, parse_params
from strata_sdk.testing import run

K = Param.uint("k", 10, 1, 100, "how many")
FLAG = Param.boolean("flag", False, "a switch")
MODE = Param.string("mode", "fast", ["fast", "exact"], "how")


def test_parameters_are_checked_and_named():
    assert parse_params("", [K, FLAG, MODE]) == {"k": 10, "flag": False, "mode": "fast"}
    assert parse_params('{"k": 5, "mode": "exact"}', [K, MODE]) == {"k": 5, "mode": "exact"}
    cases = [
        ('{"k": 0}', "parameter `k`: must be between 1 and 100, got 0"),
        ('{"k": "x"}', "parameter `k`: expected an integer, got a string"),
        ('{"k": true}', "parameter `k`: expected an integer, got a boolean"),
        ('{"flag": 1}', "parameter `flag`: expected a boolean, got a number"),
        ('{"mode": "slow"}', "parameter `mode`: must be one of fast, exact, got 'slow'"),
        ('{"other": 1, "also": 2}', "parameter `also`: unknown parameter (known: k, flag, mode)"),
    ]
    for text, message in cases:
        with pytest.raises(ParamError) as e:
            parse_params(text, [K, FLAG, MODE])
        assert str(e.value) == message
    with pytest.raises(OpenError, match="must be a JSON object"):
        parse_params("[1]", [])
    with pytest.raises(OpenError, match="not valid JSON"):
        parse_params("{", [])
    with pytest.raises(ValueError):
        Param.uint("bad", 0, 1, 2, "default out of range")


def test_the_schema_matches_the_checks():
    schema = params_schema([K, FLAG, MODE])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["k"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 10, "description": "how many"
    }
    assert schema["properties"]["mode"]["enum"] == ["fast", "exact"]


def test_types_map_to_kinds_or_are_refused():
    assert kind_of("Utf8") == ("strings", None, "Utf8")
    assert kind_of("UInt8") == ("integers", None, "UInt8")
    assert kind_of("FixedSizeList(64 x Float32)") == ("float-lists", 64, "Float32")
    assert kind_of("List(Utf8)") == ("string-lists", None, "Utf8")
    assert kind_of("LargeList(Int16)") == ("integer-lists", None, "Int16")
    assert kind_of("List(non-null Int32)") == ("integer-lists", None, "Int32")
    assert kind_of("FixedSizeList(3 x non-null Float32, field: 'v')") == ("float-lists", 3, "Float32")
    for bad in ["Struct(a Int32)", "List(Boolean)", "Date32", "utf8"]:
        with pytest.raises(ValueError, match="cannot cross"):
            kind_of(bad)


def test_values_are_checked_by_row():
    col = lambda t: Column("c", t, "")  # noqa: E731
    assert check_values(col("Float32"), [1, None, 2.5], 3) == [1.0, None, 2.5]
    assert check_values(col("Binary"), [bytearray(b"x")], 1) == [b"x"]
    cases = [
        (col("Int8"), [128], ValueError, "row 0: 128 does not fit Int8"),
        (col("UInt32"), [-1], ValueError, "row 0: -1 does not fit UInt32"),
        (col("Int64"), [True], TypeError, "expected an integer, got bool"),
        (col("Utf8"), [None, 3], TypeError, "row 1: expected a string, got int"),
        (col("FixedSizeList(2 x Float32)"), [[1.0]], ValueError, "expected a list of 2 values, got 1"),
        (col("List(Utf8)"), [["a", 1]], TypeError, "expected a list of strings"),
        (col("Boolean"), [1], TypeError, "expected a boolean"),
        (col("Utf8"), ["a"], ValueError, "1 values for 2 rows"),
    ]
    for column, values, error, message in cases:
        rows = 2 if message.endswith("for 2 rows") else len(values)
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_values(column, values, rows)


class Lengths(Extractor):
    name = "lengths"
    version = "0.1.0"
    description = "lengths of texts"
    inputs = ["key"]
    outputs = [Column("n", "UInt32", "length"), Column("tags", "List(Utf8)", "tags")]
    params = [K]

    def process_row(self, row):
        if row["key"] == "bad":
            raise RowError("a bad key")
        if row["key"] == "boom":
            raise KeyError("a bug")
        return {"n": min(len(row["key"]), self.k), "tags": ["x"]}

    def open(self, params):
        self.k = params["k"]


def test_rows_fail_alone_and_bugs_fail_the_call():
    rows = run(Lengths, {"k": 3}, {"key": ["ab", "bad", "abcdef"]})
    assert rows == [
        {"n": 2, "tags": ["x"]},
        {"n": None, "tags": None, "_error": "a bad key"},
        {"n": 3, "tags": ["x"]},
    ]
    with pytest.raises(KeyError, match="a bug"):
        run(Lengths, {}, {"key": ["boom"]})
    with pytest.raises(ValueError, match="input `key` is missing"):
        run(Lengths, {}, {"other": ["a"]})


def test_a_session_that_returns_garbage_is_told_what_is_wrong():
    class Garbage(Lengths):
        def process(self, rows, columns):
            return {"n": ["three"] * rows, "tags": [None] * rows}, {}

    with pytest.raises(TypeError, match="column `n`, row 0: expected an integer, got str"):
        run(Garbage, {}, {"key": ["a"]})

    class Undeclared(Lengths):
        def process(self, rows, columns):
            return {"n": [1] * rows, "extra": [1] * rows}, {}

    with pytest.raises(ValueError, match="undeclared column `extra`"):
        run(Undeclared, {}, {"key": ["a"]})

    class BadRow(Lengths):
        def process(self, rows, columns):
            return {"n": [1] * rows}, {5: "no"}

    with pytest.raises(ValueError, match="error for row 5 of 1"):
        run(BadRow, {}, {"key": ["a"]})


def test_the_manifest_is_what_the_host_reads():
    m = Lengths.manifest()
    assert m["name"] == "lengths"
    assert m["outputs"][1].data_type == "List(Utf8)"
    assert m["params_schema"]["properties"]["k"]["default"] == 10
    assert m["batch_size"] == 256

    class NoName(Extractor):
        version = "1.0.0"
        description = "x"

    with pytest.raises(TypeError, match="name must be a string"):
        NoName.manifest()

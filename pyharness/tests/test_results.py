"""How main()'s return value becomes JSON: pandas, dates, Decimal, missing
values, and the messages for what has no JSON form."""

import datetime
import decimal
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from test_harness import Proc  # noqa: E402


def enc(value, cap=None):
    return harness.encode_result(value, cap)


def invalid(value):
    with pytest.raises(harness.InvalidResult) as info:
        enc(value)
    return str(info.value)


def test_dataframe_is_a_list_of_records_with_nulls_for_missing_values():
    df = pd.DataFrame(
        {
            "x": [1.5, np.nan, 3.0],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "t": [pd.Timestamp("2024-01-01 12:00"), pd.NaT, pd.Timestamp("2024-01-02", tz="UTC")],
            "s": ["a", None, "c"],
            "o": [decimal.Decimal("1.10"), pd.NA, None],
        },
        index=[10, 20, 30],
    )
    assert enc(df) == (
        '[{"x": 1.5, "n": 1, "t": "2024-01-01T12:00:00", "s": "a", "o": 1.10}, '
        '{"x": null, "n": null, "t": null, "s": null, "o": null}, '
        '{"x": 3.0, "n": 3, "t": "2024-01-02T00:00:00+00:00", "s": "c", "o": null}]'
    )


def test_dataframe_labels_become_strings_and_the_index_is_dropped():
    df = pd.DataFrame([[1, 2, 3]], columns=["a", 5, 2.5], index=["row"])
    assert json.loads(enc(df)) == [{"a": 1, "5": 2, "2.5": 3}]
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("x", "a"), ("x", "b")]))
    assert json.loads(enc(multi)) == [{"('x', 'a')": 1, "('x', 'b')": 2}]
    assert enc(pd.DataFrame()) == "[]"


def test_dataframe_with_columns_equal_as_strings_is_refused():
    message = invalid(pd.DataFrame([[1, 2]], columns=[1, "1"]))
    assert "DataFrame" in message and "rename" in message


def test_infinity_in_a_dataframe_stays_invalid():
    assert "NaN and Infinity are not JSON" in invalid(pd.DataFrame({"a": [np.inf]}))


def test_series_is_an_object_when_its_index_is_unique_strings():
    assert enc(pd.Series([1.0, np.nan], index=["a", "b"])) == '{"a": 1.0, "b": null}'
    assert enc(pd.Series([1, 2])) == "[1, 2]"
    assert enc(pd.Series([1, 2], index=["a", "a"])) == "[1, 2]"
    assert enc(pd.Series([1, 2], index=pd.date_range("2024", periods=2))) == "[1, 2]"
    assert enc(pd.Series([pd.NaT, pd.Timestamp("2024-03-04")])) == '[null, "2024-03-04T00:00:00"]'
    assert enc(pd.Series([], dtype=float)) == "[]"


def test_dates_and_times_are_iso_8601():
    assert json.loads(
        enc(
            [
                pd.Timestamp("2024-01-02 03:04:05.123456789"),
                datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
                datetime.date(2024, 1, 2),
                datetime.time(3, 4, 5),
                np.datetime64("2024-01-02T03:04"),
                np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[ns]"),
            ]
        )
    ) == [
        "2024-01-02T03:04:05.123456789",
        "2024-01-02T03:04:05+00:00",
        "2024-01-02",
        "03:04:05",
        "2024-01-02T03:04:00",
        ["2024-01-02T00:00:00", "2024-01-03T00:00:00"],
    ]


def test_decimal_is_a_number_with_all_its_digits():
    digits = "3.14159265358979323846264338327950288"
    assert enc(decimal.Decimal(digits)) == digits
    assert enc({"a": decimal.Decimal("-1E+3"), "b": decimal.Decimal("0.10")}) == '{"a": -1E+3, "b": 0.10}'
    assert json.loads(enc([decimal.Decimal("1E+3")])) == [1000.0]


@pytest.mark.parametrize("value", [decimal.Decimal("NaN"), decimal.Decimal("-Infinity"), [decimal.Decimal("sNaN")]])
def test_decimal_nan_and_infinity_are_invalid(value):
    assert "Decimal NaN or Infinity" in invalid(value)


@pytest.mark.parametrize("value", [float("nan"), [1, float("inf")], {"a": np.float64("nan")}])
def test_nan_outside_a_table_stays_invalid(value):
    assert "NaN and Infinity are not JSON" in invalid(value)


@pytest.mark.parametrize("value", [pd.NaT, pd.NA, [np.datetime64("NaT")]])
def test_missing_values_outside_a_table_are_invalid(value):
    assert "return None" in invalid(value)


def test_nested_values_convert_recursively():
    df = pd.DataFrame({"a": [1, 2]})
    value = {
        "table": df,
        "series": [pd.Series({"k": decimal.Decimal("2.50")}), pd.Series([np.nan])],
        "cell": pd.DataFrame({"inner": [df, None]}),
        "when": {"d": datetime.date(2020, 2, 29)},
    }
    assert json.loads(enc(value)) == {
        "table": [{"a": 1}, {"a": 2}],
        "series": [{"k": 2.5}, [None]],
        "cell": [{"inner": [{"a": 1}, {"a": 2}]}, {"inner": None}],
        "when": {"d": "2020-02-29"},
    }


def test_a_string_that_looks_like_a_placeholder_stays_a_string():
    value = ["pyexec-raw-00-0", decimal.Decimal("1.5"), "pyexec-raw-"]
    assert json.loads(enc(value)) == ["pyexec-raw-00-0", 1.5, "pyexec-raw-"]


class Point:
    def __init__(self):
        self.secret = "do-not-show"


@pytest.mark.parametrize(
    "value, hint",
    [
        ({1, 2}, "Object of type set is not JSON serializable; use list(...)"),
        (b"do-not-show", "Object of type bytes is not JSON serializable; decode it (.decode()) or base64-encode it"),
        (Point(), "Object of type Point is not JSON serializable; return a dict, list"),
        (pd.Index(["do-not-show"]), "Object of type Index is not JSON serializable; array-like: use .tolist()"),
        (pd.Timedelta(seconds=3), "use .total_seconds()"),
        (1j, "use [z.real, z.imag] or str(z)"),
        (iter([1]), "an iterator: use list(...)"),
        ({"df": [pd.DataFrame({"a": [{1}]})]}, "Object of type set"),
    ],
)
def test_unconvertible_values_name_their_type_and_how_to_convert_them(value, hint):
    message = invalid(value)
    assert hint in message
    assert "do-not-show" not in message


def test_a_large_table_stops_at_the_cap():
    df = pd.DataFrame({"a": np.arange(100_000), "t": pd.date_range("2020", periods=100_000, freq="min")})
    with pytest.raises(harness.ResultTooLarge):
        enc(df, cap=1 << 16)
    text = enc(df.head(10), cap=1 << 16)
    assert json.loads(text)[9] == {"a": 9, "t": "2020-01-01T00:09:00"}


def test_plain_results_are_encoded_as_json_alone_does():
    value = {"k%d" % i: [i, i / 2, None, "s"] for i in range(100)}
    assert enc(value) == json.dumps(value, allow_nan=False, ensure_ascii=True)


@pytest.fixture
def proc():
    p = Proc()
    yield p
    p.close()


def test_dataframe_through_the_protocol(proc):
    script = (
        "import decimal\nimport numpy as np\nimport pandas as pd\n"
        "def main():\n"
        "    return pd.DataFrame({'x': [1.5, np.nan], 't': pd.to_datetime(['2024-05-06', None]),"
        " 'd': [decimal.Decimal('0.30'), None]})\n"
    )
    r = proc.ask(script)
    assert r["error"] is None
    assert r["result"] == [
        {"x": 1.5, "t": "2024-05-06T00:00:00", "d": 0.3},
        {"x": None, "t": None, "d": None},
    ]


def test_large_dataframe_through_the_protocol_is_output_limit(proc):
    script = "import pandas as pd\ndef main():\n    return pd.DataFrame({'a': range(100000)})\n"
    r = proc.ask(script, max_output_bytes=10000)
    assert r["result"] is None
    assert r["error"] == {"type": "output_limit", "message": "result is over the 10000-byte limit"}


def test_bare_nan_through_the_protocol_is_invalid_result(proc):
    r = proc.ask("def main():\n    return float('nan')\n")
    assert r["error"]["type"] == "invalid_result"
    assert r["error"]["message"].startswith("Returned value is not valid JSON: NaN and Infinity")

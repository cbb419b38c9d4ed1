"""Named parameters: ``:name`` becomes ``$n``, one number per name, casts and times untouched."""

from __future__ import annotations

import pytest

from shared import sql
from shared.sql import compiled


def test_each_name_gets_one_number_in_order_of_first_use() -> None:
    statement = compiled("SELECT :b, :a WHERE x = :b")

    assert statement.text == "SELECT $1, $2 WHERE x = $1"
    assert statement.names == ("b", "a")


def test_casts_and_colons_after_letters_or_digits_are_not_parameters() -> None:
    statement = compiled("SELECT :id::uuid, '12:30'::time, a[1:2], x::text")

    assert statement.text == "SELECT $1::uuid, '12:30'::time, a[1:2], x::text"
    assert statement.names == ("id",)


def test_the_values_come_in_parameter_order() -> None:
    assert compiled("SELECT :b, :a").arguments({"a": 1, "b": 2}) == [2, 1]


def test_a_missing_value_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"missing: \['a'\]"):
        compiled("SELECT :a, :b").arguments({"b": 2})


def test_a_value_no_parameter_uses_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unused: \['c'\]"):
        compiled("SELECT :a").arguments({"a": 1, "c": 3})


def test_literals_are_sorted_and_quoted_with_their_quotes_doubled() -> None:
    assert sql.literals(["b", "a", "it's"]) == "'a', 'b', 'it''s'"

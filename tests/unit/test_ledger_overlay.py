"""The planner's copy-on-write views behave like the dicts and set they replaced."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from services.ledger.domain.overlay import Extended, Overlay, SetOverlay


@dataclass
class Item:
    value: Decimal
    live: bool = True
    flagged: bool = False


def test_overlay_reads_through_until_written() -> None:
    base = {"a": Item(Decimal("1")), "b": Item(Decimal("2"))}
    view = Overlay(base, lambda i: i.value)
    assert view["a"] == Decimal("1")
    base["a"].value = Decimal("5")  # not copied: the object's value at the time of the read
    assert view["a"] == Decimal("5")
    view["a"] += Decimal("1")
    base["a"].value = Decimal("9")
    assert view["a"] == Decimal("6")  # written: the overlay's value from now on
    assert base["a"].value == Decimal("9")  # and the base object is left alone
    assert dict(view) == {"a": Decimal("6"), "b": Decimal("2")}
    assert len(view) == 2


def test_overlay_unknown_keys_behave_like_a_dict() -> None:
    view = Overlay({"a": Item(Decimal("1"))}, lambda i: i.value)
    with pytest.raises(KeyError):
        view["x"]
    with pytest.raises(KeyError):
        view["x"] += Decimal("1")
    assert "x" not in view
    assert view.get("x") is None
    assert view.get("x", Decimal("0")) == Decimal("0")
    view["x"] = Decimal("3")  # a new key, as dict assignment would add it
    assert "x" in view and view["x"] == Decimal("3")
    assert list(view) == ["a", "x"]
    with pytest.raises(TypeError):
        del view["a"]


def test_overlay_include_hides_excluded_items_unless_written() -> None:
    base = {"live": Item(Decimal("1")), "void": Item(Decimal("2"), live=False)}
    view = Overlay(base, lambda i: i.value, include=lambda i: i.live)
    assert "live" in view and "void" not in view
    with pytest.raises(KeyError):
        view["void"]
    assert view.get("void", Decimal("0")) == Decimal("0")
    assert list(view) == ["live"]
    view["void"] = Decimal("0")
    assert "void" in view and view["void"] == Decimal("0")
    assert list(view) == ["live", "void"]


def test_set_overlay_adds_and_discards_without_touching_the_base() -> None:
    base = {"a": Item(Decimal("1"), flagged=True), "b": Item(Decimal("2"))}
    view = SetOverlay(base, lambda i: i.flagged)
    assert "a" in view and "b" not in view and "x" not in view
    view.discard("a")
    view.add("b")
    view.add("x")
    assert "a" not in view and "b" in view and "x" in view
    assert set(view) == {"b", "x"} and len(view) == 2
    view.add("a")
    view.discard("x")
    view.discard("never")
    assert set(view) == {"a", "b"}
    assert base["a"].flagged and not base["b"].flagged


def test_extended_is_the_dict_with_one_more_item_without_a_copy() -> None:
    base = {"a": 1, "b": 2}
    for key, value in (("c", 3), ("a", 9)):
        view = Extended(base, key, value)
        expected = {**base, key: value}
        assert list(view) == list(expected) and dict(view.items()) == expected
        assert len(view) == len(expected)
        assert all(view[k] == v and k in view and view.get(k) == v for k, v in expected.items())
        assert "x" not in view and view.get("x") is None and view.get("x", 0) == 0
        with pytest.raises(KeyError):
            view["x"]
    base["d"] = 4  # not copied: the base is read at the time of use
    assert Extended(base, "c", 3)["d"] == 4
    assert base == {"a": 1, "b": 2, "d": 4}

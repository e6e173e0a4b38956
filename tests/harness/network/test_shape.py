"""Shape: the values a scenario gives become a checked link shape, and read back in one line."""

from __future__ import annotations

import re

import pytest

from harness.network.shape import Shape, format_rate, parse_bandwidth


@pytest.mark.parametrize(("text", "bits"), [
    ("10mbit", 10_000_000),
    ("10Mbit", 10_000_000),
    ("1.5mbit", 1_500_000),
    ("512kbit", 512_000),
    ("1gbit", 1_000_000_000),
    ("64000bit", 64_000),
    ("64000", 64_000),  # tc: a bare number is bits a second
    ("1mibit", 1_048_576),
    ("1mbps", 8_000_000),  # tc: bps and its multiples are bytes a second
    ("100kbps", 800_000),
    ("1bps", 8),
    (" 10 mbit ", 10_000_000),
    (20_000_000, 20_000_000),
], ids=str)
def test_parse_bandwidth_speaks_tc_units(text: str | int, bits: int) -> None:
    assert parse_bandwidth(text) == bits


@pytest.mark.parametrize("text", ["", "fast", "10 megabits", "mbit", "-5mbit", "0mbit", "10mbit/s", "1e6"])
def test_parse_bandwidth_names_a_bad_value(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_bandwidth(text)


@pytest.mark.parametrize(("shape", "text"), [
    (Shape(), "0 ms"),
    (Shape(rtt_ms=20), "20 ms"),
    (Shape(rtt_ms=20, jitter_ms=2, loss=0.01, bandwidth_bps=10_000_000), "20 ms ± 2 ms, 1% loss, 10 Mbit/s"),
    (Shape(rtt_ms=0.5, loss=0.001), "0.5 ms, 0.1% loss"),
    (Shape(bandwidth_bps=512_000), "0 ms, 512 kbit/s"),
    (Shape(rtt_ms=100, bandwidth_bps=1_500_000_000), "100 ms, 1.5 Gbit/s"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_describe_is_one_line_of_what_is_set(shape: Shape, text: str) -> None:
    assert shape.describe() == text


@pytest.mark.parametrize(("fields", "named"), [
    ({"rtt_ms": -1}, "rtt_ms"),
    ({"rtt_ms": float("nan")}, "rtt_ms"),
    ({"jitter_ms": -0.5}, "jitter_ms"),
    ({"loss": 1.5}, "loss"),
    ({"loss": -0.1}, "loss"),
    ({"bandwidth_bps": 0}, "bandwidth_bps"),
    ({"bandwidth_bps": 2.5}, "bandwidth_bps"),
], ids=str)
def test_a_bad_shape_is_refused_naming_the_field(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Shape(**fields)


def test_shaped_is_false_only_for_the_bare_link() -> None:
    assert not Shape().shaped
    assert all(shape.shaped for shape in (Shape(rtt_ms=1), Shape(jitter_ms=1), Shape(loss=0.1),
                                          Shape(bandwidth_bps=1000)))


def test_format_rate_uses_decimal_units() -> None:
    assert [format_rate(rate) for rate in (999, 64_000, 20_000_000)] == ["999 bit/s", "64 kbit/s", "20 Mbit/s"]

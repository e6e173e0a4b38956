"""What an emulated link does to the packets crossing it: a round trip, jitter, a loss share
and a bandwidth. A value, checked when it is made, so that a scenario's mistake is caught
before a namespace exists; the relay turns it into per-packet delays and drops."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# tc's rate units (iproute2 tc/tc_util.c), matched without regard to case as tc does: a bare
# number and "bit" are bits a second, "Bps" and its multiples are *bytes* a second.
_RATE_UNITS: dict[str, float] = {
    "": 1.0, "bit": 1.0,
    "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 2.0**10, "mibit": 2.0**20, "gibit": 2.0**30, "tibit": 2.0**40,
    "bps": 8.0, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
    "kibps": 8 * 2.0**10, "mibps": 8 * 2.0**20, "gibps": 8 * 2.0**30, "tibps": 8 * 2.0**40,
}
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_bandwidth(value: str | int) -> int:
    """Bits a second from tc's notation: "10mbit" -> 10_000_000, "1mbps" (bytes) -> 8_000_000.

    An int is taken as bits a second already. Raises ValueError naming the value."""
    if isinstance(value, int) and not isinstance(value, bool):
        bits = float(value)
    elif isinstance(value, str) and (match := _RATE.fullmatch(value)) and match[2].lower() in _RATE_UNITS:
        bits = float(match[1]) * _RATE_UNITS[match[2].lower()]
    else:
        raise ValueError(f"bandwidth {value!r} is not a rate: write a number and a unit as tc does, "
                         "e.g. '10mbit' (bit, kbit, mbit, gbit; bps, kbps, mbps, gbps are bytes a second)")
    if not math.isfinite(bits) or bits < 1:
        raise ValueError(f"bandwidth {value!r} must be at least 1 bit a second")
    return round(bits)


@dataclass(frozen=True)
class Shape:
    """The link between client and server, both directions alike.

    rtt_ms: the round trip the link adds, half of it on each way.
    jitter_ms: the spread of that round trip: each packet's one-way delay varies uniformly
        within ±jitter_ms/2, so a round trip stays within rtt_ms ± jitter_ms (packets are
        never reordered: see relay.py).
    loss: the share of packets dropped, in each direction on its own (0.01 loses about 2% of
        round trips).
    bandwidth_bps: the rate of each direction in bits a second; None is unlimited (as fast
        as the relay carries).
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_bps: int | None = None

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "jitter_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of milliseconds, 0 or more, not {value!r}")
        if not (isinstance(self.loss, (int, float)) and 0 <= self.loss <= 1):
            raise ValueError(f"loss is a share of packets from 0 to 1 (0.01 is 1%), not {self.loss!r}")
        if self.bandwidth_bps is not None and not (
                isinstance(self.bandwidth_bps, int) and not isinstance(self.bandwidth_bps, bool)
                and self.bandwidth_bps >= 1):
            raise ValueError(f"bandwidth_bps must be a whole number of bits a second, 1 or more, "
                             f"not {self.bandwidth_bps!r}")

    @property
    def shaped(self) -> bool:
        """Whether the link does anything at all to the packets."""
        return bool(self.rtt_ms or self.jitter_ms or self.loss or self.bandwidth_bps)

    def describe(self) -> str:
        """One line: "20 ms ± 2 ms, 1% loss, 10 Mbit/s" (the parts that are set; "0 ms" alone
        for an unshaped link)."""
        parts = [f"{self.rtt_ms:g} ms" + (f" ± {self.jitter_ms:g} ms" if self.jitter_ms else "")]
        if self.loss:
            parts.append(f"{self.loss * 100:.3g}% loss")
        if self.bandwidth_bps is not None:
            parts.append(format_rate(self.bandwidth_bps))
        return ", ".join(parts)


def format_rate(bits_per_second: float) -> str:
    """A rate in decimal units as people write it: 10 Mbit/s, 512 kbit/s, 1.5 Gbit/s."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.4g} {unit}"
    return f"{bits_per_second:.4g} bit/s"

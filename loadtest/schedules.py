"""The audience schedules behind the load shapes: users wanted at second t of the test.

Plain code without Locust, so it can be tested without gevent's monkey-patching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Steady:
    """The whole audience arrives at `ramp` users/s and stays."""

    viewers: int
    ramp: float
    duration: float

    def at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        return self.viewers, self.ramp

    def end(self) -> float:
        return self.duration


@dataclass(frozen=True, slots=True)
class Surge:
    """The host starts a flash sale at `surge_at`: the audience grows `factor` times over
    `surge_ramp` seconds, holds `hold` seconds at the peak, and the test ends."""

    viewers: int
    ramp: float
    surge_at: float
    factor: float
    surge_ramp: float
    hold: float

    def at(self, t: float) -> tuple[int, float] | None:
        peak = round(self.viewers * self.factor)
        if t < self.surge_at:
            return self.viewers, self.ramp
        if t < self.surge_at + self.surge_ramp + self.hold:
            return peak, max(1.0, (peak - self.viewers) / max(1.0, self.surge_ramp))
        return None

    def end(self) -> float:
        return self.surge_at + self.surge_ramp + self.hold


@dataclass(frozen=True, slots=True)
class SpikeAndDrain:
    """A sudden spike (everyone arriving within a few seconds, e.g. a shared link), a
    plateau, then the audience drains back to the base over `drain` seconds and stays
    until `duration`."""

    viewers: int
    ramp: float
    spike_at: float
    factor: float
    hold: float
    drain: float
    duration: float
    spike_seconds: float = 3.0

    def at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        peak = round(self.viewers * self.factor)
        surplus = peak - self.viewers
        if t < self.spike_at:
            return self.viewers, self.ramp
        if t < self.spike_at + self.hold:
            return peak, max(1.0, surplus / self.spike_seconds)
        return self.viewers, max(1.0, surplus / max(1.0, self.drain))

    def end(self) -> float:
        return self.duration


def schedule(opts: Any) -> Steady | Surge | SpikeAndDrain:
    if opts.shape == "surge":
        return Surge(
            opts.viewers,
            opts.ramp,
            opts.surge_at,
            opts.surge_factor,
            opts.surge_ramp,
            opts.peak_hold,
        )
    if opts.shape == "spike":
        return SpikeAndDrain(
            opts.viewers,
            opts.ramp,
            opts.surge_at,
            opts.surge_factor,
            opts.peak_hold,
            opts.drain,
            opts.duration,
        )
    return Steady(opts.viewers, opts.ramp, opts.duration)

"""A circuit breaker, the kind of machine a service runs in front of a flaky dependency.

Version 1 is the textbook breaker: ``Closed`` counts consecutive failures and trips to ``Open``
after ``FAILURE_THRESHOLD``; ``Open`` rejects calls until ``COOL_DOWN`` milliseconds have passed,
then lets one probe through (``HalfOpen``); the probe's outcome closes or re-opens it.

Version 2 backs off exponentially: ``Tripped`` remembers how many times in a row the breaker
tripped, the cool-down doubles with each (up to ``MAX_BACKOFF`` times), and ``Probing`` needs
``PROBES_TO_CLOSE`` successes before closing. ``upgrade_breaker`` migrates a running breaker
without forgetting where it was: an open breaker stays open, with a trip count of one.

Events carry the time (``now``, in milliseconds) because machines have no clock of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.dsl import machine, migration

FAILURE_THRESHOLD = 5
COOL_DOWN = 30_000
MAX_BACKOFF = 16
PROBES_TO_CLOSE = 3


@dataclass(frozen=True)
class Call:
    """A request wants to go through at time ``now``."""

    now: int


@dataclass(frozen=True)
class Success:
    now: int


@dataclass(frozen=True)
class Failure:
    now: int


@dataclass(frozen=True)
class Allow:
    """Let the request through."""


@dataclass(frozen=True)
class Reject:
    retry_after: int


# --- version 1 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    failures: int


@dataclass(frozen=True)
class Open:
    since: int


@dataclass(frozen=True)
class HalfOpen:
    pass


@machine(init=Closed(failures=0))
def breaker_sm(
    event: Call | Success | Failure, state: Closed | Open | HalfOpen
) -> tuple[Closed | Open | HalfOpen, None | Allow | Reject]:  # noqa: RUF036 - layout order
    match event, state:
        case Call(now), Open(since) if now - since < COOL_DOWN:
            return state, Reject(retry_after=since + COOL_DOWN - now)
        case Call(), Open():
            return HalfOpen(), Allow()
        case Call(), _:
            return state, Allow()
        case Success(), _:
            return Closed(failures=0), None
        case Failure(), Closed(failures) if failures + 1 < FAILURE_THRESHOLD:
            return Closed(failures + 1), None
        case Failure(now), Closed() | HalfOpen():
            return Open(since=now), None
        case Failure(), Open():
            return state, None


# --- version 2 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tripped:
    since: int
    trips: int


@dataclass(frozen=True)
class Probing:
    successes: int
    trips: int


def cool_down(trips: int) -> int:
    return COOL_DOWN * min(trips, MAX_BACKOFF)


@machine(init=Closed(failures=0))
def breaker_sm2(
    event: Call | Success | Failure, state: Closed | Tripped | Probing
) -> tuple[Closed | Tripped | Probing, None | Allow | Reject]:  # noqa: RUF036 - layout order
    match event, state:
        case Call(now), Tripped(since, trips):
            wait = cool_down(trips)
            if now - since < wait:
                return state, Reject(retry_after=since + wait - now)
            return Probing(successes=0, trips=trips), Allow()
        case Call(), _:
            return state, Allow()
        case Success(), Probing(successes, trips) if successes + 1 < PROBES_TO_CLOSE:
            return Probing(successes + 1, trips), None
        case Success(), Tripped():
            return state, None
        case Success(), _:
            return Closed(failures=0), None
        case Failure(), Closed(failures) if failures + 1 < FAILURE_THRESHOLD:
            return Closed(failures + 1), None
        case Failure(now), Closed():
            return Tripped(since=now, trips=1), None
        case Failure(now), Probing(trips=trips):
            return Tripped(since=now, trips=trips + 1), None
        case Failure(), Tripped():
            return state, None


@migration(breaker_sm, breaker_sm2)
def upgrade_breaker(old: Closed | Open | HalfOpen) -> Closed | Tripped | Probing:
    match old:
        case Closed():
            return old
        case Open(since):
            return Tripped(since=since, trips=1)
        case HalfOpen():
            return Probing(successes=0, trips=1)

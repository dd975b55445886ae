"""A session store: a ``dict[str, Session]`` by token, with the time passed in each input.

Machines have no clock, so every input carries ``now`` (in seconds). Version 1 logs users in
(``Login``), answers who holds a token (``Who``: the user, or None for an unknown or expired
token) and extends a session on each use by ``TTL``; ``Sweep`` drops the expired sessions and
says how many; ``Logout`` ends one. A user holds at most ``MAX_PER_USER`` sessions: logging in
once more ends the oldest. An empty token or user raises ``BadLogin``.

Version 2 counts each session's requests (``hits``) and keeps when it started (``since``),
and ``Stats`` reports the busiest user. ``upgrade_sessions`` migrates the live sessions,
starting them ``TTL`` before they expire, with no hits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hotswap.dsl import machine, migration

TTL = 1800
MAX_PER_USER = 3


class BadLogin(Exception):
    """A login without a token or a user."""


@dataclass(frozen=True)
class Login:
    token: str
    user: str
    now: int


@dataclass(frozen=True)
class Who:
    token: str
    now: int


@dataclass(frozen=True)
class Logout:
    token: str


@dataclass(frozen=True)
class Sweep:
    now: int


@dataclass(frozen=True)
class Session:
    user: str
    expires: int


@dataclass(frozen=True)
class Store:
    sessions: dict[str, Session]


def oldest_of(sessions: dict[str, Session], user: str) -> str | None:
    """The token of ``user``'s session that expires first, if the user has too many."""
    tokens = [t for t, s in sessions.items() if s.user == user]
    if len(tokens) < MAX_PER_USER:
        return None
    oldest = tokens[0]
    for t in tokens[1:]:
        if sessions[t].expires < sessions[oldest].expires:
            oldest = t
    return oldest


@machine(init=Store({}))
def sessions_sm(cmd: Login | Who | Logout | Sweep, store: Store) -> tuple[Store, str | int | None]:
    sessions = dict(store.sessions)
    match cmd:
        case Login(token, user, now):
            if not token or not user:
                raise BadLogin(f"token {token!s} for user {user!s}")
            if token in sessions and sessions[token].user != user:
                return store, f"token {token} is taken"
            oldest = oldest_of(sessions, user) if token not in sessions else None
            if oldest is not None:
                del sessions[oldest]
            sessions[token] = Session(user, now + TTL)
            return Store(sessions), user
        case Who(token, now):
            session = sessions.get(token)
            if session is None or session.expires <= now:
                return store, None
            sessions[token] = replace(session, expires=now + TTL)
            return Store(sessions), session.user
        case Logout(token):
            if token not in sessions:
                return store, 0
            del sessions[token]
            return Store(sessions), 1
        case Sweep(now):
            live = {t: s for t, s in sessions.items() if s.expires > now}
            return Store(live), len(sessions) - len(live)


# --- version 2: hits and stats ----------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """The busiest user and the number of live sessions."""

    now: int


@dataclass(frozen=True)
class SessionV2:
    user: str
    expires: int
    since: int
    hits: int


@dataclass(frozen=True)
class StoreV2:
    sessions: dict[str, SessionV2]


def oldest_v2(sessions: dict[str, SessionV2], user: str) -> str | None:
    mine = sorted(s.since for s in sessions.values() if s.user == user)
    if len(mine) < MAX_PER_USER:
        return None
    for t, s in sessions.items():
        if s.user == user and s.since == mine[0]:
            return t
    return None


@machine(init=StoreV2({}))
def sessions_sm2(
    cmd: Login | Who | Logout | Sweep | Stats, store: StoreV2
) -> tuple[StoreV2, str | int | None]:
    sessions = dict(store.sessions)
    match cmd:
        case Login(token, user, now):
            if not token or not user:
                raise BadLogin(f"token {token!s} for user {user!s}")
            if token in sessions and sessions[token].user != user:
                return store, f"token {token} is taken"
            if token not in sessions:
                oldest = oldest_v2(sessions, user)
                if oldest is not None:
                    del sessions[oldest]
            sessions[token] = SessionV2(user, now + TTL, now, 0)
            return StoreV2(sessions), user
        case Who(token, now):
            session = sessions.get(token)
            if session is None or session.expires <= now:
                return store, None
            sessions[token] = replace(session, expires=now + TTL, hits=session.hits + 1)
            return StoreV2(sessions), session.user
        case Logout(token):
            if token not in sessions:
                return store, 0
            del sessions[token]
            return StoreV2(sessions), 1
        case Sweep(now):
            live = {t: s for t, s in sessions.items() if s.expires > now}
            return StoreV2(live), len(sessions) - len(live)
        case Stats(now):
            hits: dict[str, int] = {}
            for s in sessions.values():
                if s.expires > now:
                    hits[s.user] = hits.get(s.user, 0) + s.hits
            if not hits:
                return store, None
            top = max(hits.values())
            busiest = min(user for user, n in hits.items() if n == top)
            return store, f"{busiest}: {top} hits in {len(hits)} users"


@migration(sessions_sm, sessions_sm2)
def upgrade_sessions(old: Store) -> StoreV2:
    """Each live session started ``TTL`` before it expires, with no hits yet."""
    sessions: dict[str, SessionV2] = {}
    for token, s in old.sessions.items():
        sessions[token] = SessionV2(s.user, s.expires, s.expires - TTL, 0)
    return StoreV2(sessions)

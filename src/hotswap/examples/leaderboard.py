"""A leaderboard: a ``list`` of entries kept sorted, best first, cut to the top ``TOP_N``.

Version 1 takes ``Submit(player, score)``: a player's best score counts, a new best moves the
player up (the entries stay sorted by score, then name), and only the top ``TOP_N`` are kept.
``Top(n)`` answers the first ``n`` lines of the board as text, ``Rank(player)`` the player's
place (1 is the best) or None.

Version 2 remembers how many times each player submitted (``attempts``, a ``dict[str,
int]``) and gives every entry its number of attempts; ``upgrade_board`` migrates a running
board, counting one attempt for each player on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.dsl import machine, migration

TOP_N = 10
#: Scores above this are refused (a guard against a client bug, not a rule of the game).
MAX_SCORE = 1_000_000_000


class BadScore(Exception):
    """A score outside 0..MAX_SCORE."""


@dataclass(frozen=True)
class Submit:
    player: str
    score: int


@dataclass(frozen=True)
class Top:
    n: int


@dataclass(frozen=True)
class Rank:
    player: str


@dataclass(frozen=True)
class Entry:
    player: str
    score: int


@dataclass(frozen=True)
class Board:
    entries: list[Entry]


def ahead(a: Entry, b: Entry) -> bool:
    """Whether ``a`` ranks before ``b``: a higher score, or the same score and an earlier name."""
    return a.score > b.score or (a.score == b.score and a.player < b.player)


def insert(entries: list[Entry], new: Entry) -> list[Entry]:
    """``entries`` without ``new.player``, with ``new`` at its place, cut to ``TOP_N``."""
    kept = [e for e in entries if e.player != new.player]
    for i, e in enumerate(kept):
        if ahead(new, e):
            return [*kept[:i], new, *kept[i:]][:TOP_N]
    return [*kept, new][:TOP_N]


def lines(entries: list[Entry], n: int) -> str:
    shown = [f"{i + 1}. {e.player} {e.score}" for i, e in enumerate(entries[:n])]
    return "\n".join(shown) if shown else "(empty)"


def rank(entries: list[Entry], player: str) -> int | None:
    for i, e in enumerate(entries):
        if e.player == player:
            return i + 1
    return None


@machine(init=Board([]))
def board_sm(cmd: Submit | Top | Rank, board: Board) -> tuple[Board, str | int | None]:
    match cmd:
        case Submit(player, score):
            if not 0 <= score <= MAX_SCORE:
                raise BadScore(f"{player} scored {score}")
            for e in board.entries:
                if e.player == player and e.score >= score:
                    return board, rank(board.entries, player)
            entries = insert(board.entries, Entry(player, score))
            return Board(entries), rank(entries, player)
        case Top(n):
            return board, lines(board.entries, n)
        case Rank(player):
            return board, rank(board.entries, player)


# --- version 2: attempts --------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryV2:
    player: str
    score: int
    attempts: int


@dataclass(frozen=True)
class BoardV2:
    entries: list[EntryV2]
    attempts: dict[str, int]


def ahead_v2(a: EntryV2, b: EntryV2) -> bool:
    return a.score > b.score or (a.score == b.score and a.player < b.player)


def insert_v2(entries: list[EntryV2], new: EntryV2) -> list[EntryV2]:
    kept = [e for e in entries if e.player != new.player]
    place = len(kept)
    for i, e in enumerate(kept):
        if ahead_v2(new, e):
            place = i
            break
    result = list(kept)
    result.insert(place, new)
    return result[:TOP_N]


def rank_v2(entries: list[EntryV2], player: str) -> int | None:
    for i, e in enumerate(entries):
        if e.player == player:
            return i + 1
    return None


@machine(init=BoardV2([], {}))
def board_sm2(cmd: Submit | Top | Rank, board: BoardV2) -> tuple[BoardV2, str | int | None]:
    match cmd:
        case Submit(player, score):
            if not 0 <= score <= MAX_SCORE:
                raise BadScore(f"{player} scored {score}")
            attempts = board.attempts | {player: board.attempts.get(player, 0) + 1}
            tries = attempts[player]
            best = max([e.score for e in board.entries if e.player == player] or [-1])
            if best >= score:
                entries = [
                    EntryV2(e.player, e.score, tries) if e.player == player else e
                    for e in board.entries
                ]
            else:
                entries = insert_v2(board.entries, EntryV2(player, score, tries))
            return BoardV2(entries, attempts), rank_v2(entries, player)
        case Top(n):
            shown = [
                f"{i + 1}. {e.player} {e.score} ({e.attempts} tries)"
                for i, e in enumerate(board.entries[:n])
            ]
            return board, "\n".join(shown) if shown else "(empty)"
        case Rank(player):
            return board, rank_v2(board.entries, player)


@migration(board_sm, board_sm2)
def upgrade_board(old: Board) -> BoardV2:
    """One attempt for everyone on the board."""
    entries = [EntryV2(e.player, e.score, 1) for e in old.entries]
    attempts = {e.player: 1 for e in old.entries}
    return BoardV2(entries, attempts)

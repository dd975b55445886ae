"""A bank account: deposits, withdrawals that can be refused, and balance queries.

Records with fields, variants with payloads, a refusal reason nested in a reply, a module
constant, a helper function (inlined), ``dataclasses.replace`` and guards. Amounts are checked
before any arithmetic, so no valid command can make the balance overflow: ``MAX_BALANCE`` bounds
it, and every addition is written as a comparison against the remaining room first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hotswap.dsl import machine

#: No account may hold more than this (in cents); deposits beyond it are refused.
MAX_BALANCE = 1_000_000_000_000


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


@dataclass(frozen=True)
class Balance:
    """Ask for the balance."""


@dataclass(frozen=True)
class Account:
    balance: int
    operations: int


@dataclass(frozen=True)
class InvalidAmount:
    amount: int


@dataclass(frozen=True)
class InsufficientFunds:
    balance: int
    requested: int


@dataclass(frozen=True)
class LimitExceeded:
    limit: int


@dataclass(frozen=True)
class Accepted:
    balance: int


@dataclass(frozen=True)
class Refused:
    reason: InvalidAmount | InsufficientFunds | LimitExceeded


def valid_amount(amount: int) -> bool:
    return 0 < amount <= MAX_BALANCE


@machine(init=Account(balance=0, operations=0))
def bank_sm(
    cmd: Deposit | Withdraw | Balance, account: Account
) -> tuple[Account, Accepted | Refused]:
    match cmd:
        case Deposit(amount) | Withdraw(amount) if not valid_amount(amount):
            return account, Refused(InvalidAmount(amount))
        case Deposit(amount):
            if amount > MAX_BALANCE - account.balance:
                return account, Refused(LimitExceeded(limit=MAX_BALANCE))
            balance = account.balance + amount
        case Withdraw(amount):
            if amount > account.balance:
                return account, Refused(InsufficientFunds(account.balance, requested=amount))
            balance = account.balance - amount
        case Balance():
            return account, Accepted(account.balance)
    new = replace(account, balance=balance, operations=account.operations + 1)
    return new, Accepted(new.balance)

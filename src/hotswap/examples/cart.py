"""A shopping cart keyed by SKU: a ``dict[str, Line]``, written as a Python user writes it.

Version 1 adds, removes and re-counts lines and answers ``Checkout`` with the total; prices are
in cents. Mistakes in the input (a negative quantity, an unknown SKU) are answered with
``Refused(reason)``; checking out an empty cart raises ``EmptyCart``, which traps the step and
leaves the cart as it was.

Version 2 takes coupons: ``ApplyCoupon(code)`` records a known code, and each line gets a
``discount`` (a percentage) from the best coupon that covers its SKU. ``upgrade_cart``
migrates a running cart: every line gets a discount of 0 and the cart no coupons.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hotswap.dsl import machine, migration

#: A cart holds at most this many distinct SKUs.
MAX_LINES = 50
#: At most this many of one SKU.
MAX_QTY = 1000


class EmptyCart(Exception):
    """Checking out a cart with nothing in it."""


@dataclass(frozen=True)
class AddItem:
    sku: str
    name: str
    price: int
    qty: int


@dataclass(frozen=True)
class RemoveItem:
    sku: str


@dataclass(frozen=True)
class SetQty:
    sku: str
    qty: int


@dataclass(frozen=True)
class Checkout:
    """Total the cart (and empty it)."""


@dataclass(frozen=True)
class Line:
    name: str
    price: int
    qty: int


@dataclass(frozen=True)
class Cart:
    lines: dict[str, Line]


@dataclass(frozen=True)
class Total:
    cents: int
    items: int
    summary: str


@dataclass(frozen=True)
class Refused:
    reason: str


def valid_qty(qty: int) -> bool:
    return 0 < qty <= MAX_QTY


@machine(init=Cart({}))
def cart_sm(
    cmd: AddItem | RemoveItem | SetQty | Checkout, cart: Cart
) -> tuple[Cart, Total | Refused]:
    lines = dict(cart.lines)
    match cmd:
        case AddItem(sku, name, price, qty):
            if not valid_qty(qty) or price < 0:
                return cart, Refused(f"cannot add {qty} of {sku} at {price}")
            line = lines.get(sku)
            if line is None:
                if len(lines) >= MAX_LINES:
                    return cart, Refused("the cart is full")
                lines[sku] = Line(name, price, qty)
            elif line.qty + qty > MAX_QTY:
                return cart, Refused(f"at most {MAX_QTY} of {sku}")
            else:
                lines[sku] = replace(line, qty=line.qty + qty)
        case RemoveItem(sku):
            if sku not in lines:
                return cart, Refused(f"no {sku} in the cart")
            del lines[sku]
        case SetQty(sku, qty):
            if sku not in lines:
                return cart, Refused(f"no {sku} in the cart")
            if qty == 0:
                del lines[sku]
            elif not valid_qty(qty):
                return cart, Refused(f"cannot have {qty} of {sku}")
            else:
                lines[sku] = replace(lines[sku], qty=qty)
        case Checkout():
            if not lines:
                raise EmptyCart("nothing to check out")
            return Cart({}), total(cart)
    return Cart(lines), total(Cart(lines))


def total(cart: Cart) -> Total:
    cents = sum(line.price * line.qty for line in cart.lines.values())
    items = sum(line.qty for line in cart.lines.values())
    names = [f"{line.qty}x{sku}" for sku, line in cart.lines.items()]
    return Total(cents, items, ", ".join(sorted(names)))


# --- version 2: coupons -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyCoupon:
    code: str


@dataclass(frozen=True)
class LineV2:
    name: str
    price: int
    qty: int
    discount: int


@dataclass(frozen=True)
class CartV2:
    lines: dict[str, LineV2]
    coupons: list[str]


def coupon_percent(code: str, sku: str) -> int:
    """The discount a coupon gives on a SKU: ``SAVE10`` 10% on everything, ``BOOKS25`` 25% on
    SKUs starting with ``book-``."""
    if code == "SAVE10":
        return 10
    if code == "BOOKS25" and sku.startswith("book-"):
        return 25
    return 0


def best_discount(coupons: list[str], sku: str) -> int:
    best = 0
    for code in coupons:
        best = max(best, coupon_percent(code, sku))
    return best


def total_v2(cart: CartV2) -> Total:
    cents = 0
    items = 0
    for line in cart.lines.values():
        cost = line.price * line.qty
        cents += cost - cost * line.discount // 100
        items += line.qty
    names = sorted(f"{line.qty}x{sku}" for sku, line in cart.lines.items())
    return Total(cents, items, ", ".join(names))


def discounted(lines: dict[str, LineV2], coupons: list[str]) -> dict[str, LineV2]:
    return {sku: replace(line, discount=best_discount(coupons, sku)) for sku, line in lines.items()}


@machine(init=CartV2({}, []))
def cart_sm2(
    cmd: AddItem | RemoveItem | SetQty | Checkout | ApplyCoupon, cart: CartV2
) -> tuple[CartV2, Total | Refused]:
    lines = dict(cart.lines)
    coupons = cart.coupons
    match cmd:
        case AddItem(sku, name, price, qty):
            if not valid_qty(qty) or price < 0:
                return cart, Refused(f"cannot add {qty} of {sku} at {price}")
            line = lines.get(sku)
            if line is None:
                if len(lines) >= MAX_LINES:
                    return cart, Refused("the cart is full")
                lines[sku] = LineV2(name, price, qty, best_discount(coupons, sku))
            elif line.qty + qty > MAX_QTY:
                return cart, Refused(f"at most {MAX_QTY} of {sku}")
            else:
                lines[sku] = replace(line, qty=line.qty + qty)
        case RemoveItem(sku):
            if sku not in lines:
                return cart, Refused(f"no {sku} in the cart")
            del lines[sku]
        case SetQty(sku, qty):
            if sku not in lines:
                return cart, Refused(f"no {sku} in the cart")
            if qty == 0:
                del lines[sku]
            elif not valid_qty(qty):
                return cart, Refused(f"cannot have {qty} of {sku}")
            else:
                lines[sku] = replace(lines[sku], qty=qty)
        case ApplyCoupon(code):
            if code in coupons:
                return cart, Refused(f"{code} is already applied")
            if all(coupon_percent(code, sku) == 0 for sku in lines) and code != "SAVE10":
                return cart, Refused(f"{code} gives nothing here")
            coupons = [*coupons, code]
            lines = discounted(lines, coupons)
        case Checkout():
            if not lines:
                raise EmptyCart("nothing to check out")
            return CartV2({}, []), total_v2(cart)
    new = CartV2(lines, coupons)
    return new, total_v2(new)


@migration(cart_sm, cart_sm2)
def upgrade_cart(old: Cart) -> CartV2:
    """Every line at full price, no coupons yet."""
    lines = {sku: LineV2(line.name, line.price, line.qty, 0) for sku, line in old.lines.items()}
    return CartV2(lines, [])

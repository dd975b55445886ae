"""Where a node listens and what a machine may be called: shared by the node, clients and CLI.

``HOST:PORT`` text, the default address (``$HOTSWAP_NODE``, else ``127.0.0.1:7411``), and the
machine-name rule of the wire protocol, checked before anything is sent or started.
"""

from __future__ import annotations

import os

from hotswap.errors import HotswapError
from hotswap.protocol.fields import NAME, InvalidField

DEFAULT_PORT = 7411
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


def default_address() -> str:
    """``$HOTSWAP_NODE`` if set, else :data:`DEFAULT_ADDRESS`."""
    return os.environ.get("HOTSWAP_NODE") or DEFAULT_ADDRESS


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``) into a pair; :class:`HotswapError` if not."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise HotswapError(f"bad address {text!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise HotswapError(f"bad address {text!r}: port {number} out of range")
    return (host.strip("[]") or "127.0.0.1"), number


def format_address(host: str, port: int) -> str:
    """``HOST:PORT`` as :func:`parse_address` reads it back: an IPv6 host in brackets
    (``[::1]:7411``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_address(sockname: object) -> str:
    """A socket's address (``getsockname()``, ``getpeername()``) as ``HOST:PORT``; anything
    else (a Unix socket's path, None) as its text."""
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return str(sockname)
    return format_address(str(sockname[0]), int(sockname[1]))


def check_machine_name(name: str) -> None:
    """:class:`HotswapError` unless ``name`` is a machine name the protocol can carry."""
    try:
        NAME.encode(name)
    except InvalidField:
        msg = f"bad machine name {name!r}: expected 1 to 64 characters from A-Z a-z 0-9 _ . -"
        raise HotswapError(msg) from None

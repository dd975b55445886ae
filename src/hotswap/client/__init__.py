"""The client library: talk to a node from Python, blocking or with asyncio.

    from hotswap.client import connect, Upgrade
    node = connect("127.0.0.1:7411")          # or $HOTSWAP_NODE, or the node's default address
    node.send("counter", Incr())              # the output, as a Python value
    node.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
    node.status("counter").state
    node.machines()

Python values are converted with the running machine's types: by name when its module carries
the DSL's names (dataclass instances, ints, bools, None, tuples), or as core values (``()``,
ints, pairs, ``(0, v)``/``(1, v)``) otherwise. Outputs and states come back as the user's own
classes, found by record name and field names among the classes of the machines given
(``connect(..., machines=[...])``, ``client.session.remember(...)``, an upgrade's machines) and
of the modules defining the values sent; a record with none comes back as a :class:`Record`
(``Record("Allowed", remaining=9)``), with one :class:`ClassesUnknownWarning` per code.
The running module is fetched once per identity and cached; after an upgrade made elsewhere
the node refuses an input encoded for the old code (``send_checked``), and the client
re-encodes it by names for the new code.
Every refusal raises :class:`hotswap.errors.NodeError`, an upgrade's :class:`UpgradeRejected`.

A request that fails without a reply leaves its outcome unknown and the connection unusable
(``wire.py``); open a new connection. The package, one job a module:

    convert      Python values <-> core values, by names; the user's classes values come back as
    migrations   the migration derived when an upgrade gives none
    session      every operation as a sans-IO flow of requests and replies
    wire         the connection's protocol state, handshake and error messages
    blocking     Client: flows driven over a socket (or any blocking transport)
    aio          AsyncClient: flows driven under asyncio

"Upgrade" here is :class:`hotswap.code.Upgrade`, the seed's description of one (old code, new
code, migration); the wire request and reply are ``UpgradeRequest`` and ``Upgraded``.
"""

from hotswap.address import default_address
from hotswap.client.aio import AsyncClient, AsyncTransport
from hotswap.client.blocking import Client, Transport, connect
from hotswap.client.convert import ClassesUnknownWarning, schemas_of
from hotswap.client.migrations import derived_migration
from hotswap.client.session import DryRunOutcome, InstancePage, MachineStatus, Rehearsed
from hotswap.client.wire import DEFAULT_TIMEOUT
from hotswap.code import Upgrade
from hotswap.names.schema import Record

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AsyncTransport",
    "ClassesUnknownWarning",
    "Client",
    "DryRunOutcome",
    "InstancePage",
    "MachineStatus",
    "Record",
    "Rehearsed",
    "Transport",
    "Upgrade",
    "connect",
    "default_address",
    "derived_migration",
    "schemas_of",
]

"""The node: machines served over the network, persisted, upgraded live.

    registry   the rules: machines by name, inputs, upgrade checks (prepare a Swap, install it)
    rehearse   dry runs and trial upgrades: replaying inputs on other code, taking one back
    store      the SQLite log: modules, inputs, upgrades, snapshots; recovery
    trace      what the node prints after each input and upgrade (the seed's trace)
    service    the application without sockets: request -> reply, bytes -> frames
    server     the asyncio shell: accept, read, feed, commit, write, back-pressure
    memory     an in-memory node: the service and store with in-memory connections
    main       opening the store, recovering, starting machines; running the server
    cli        the ``hotswap node`` command

It imports neither the DSL nor the client: it runs bytecode, whatever compiled it.
"""

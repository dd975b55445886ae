"""The node: a pure registry of running machines, its SQLite store, and the asyncio server."""

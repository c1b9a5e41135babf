"""Node identities, one module per program: pure functions, no prompting, no I/O.

Each module offers ``generate()`` returning ``(public, private)`` dicts whose keys
are the inventory variable names documented in docs/inventory.md (private ones
without their ``vault_`` prefix).
"""

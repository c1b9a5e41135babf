"""All identities of one node (the node-side package's keys.node), in
parallel for many."""

import os
from concurrent.futures import ProcessPoolExecutor

from ..nodeside import module

_node = module("keys.node")


def generate(fqdn: str) -> tuple[dict, dict]:
    """Return (public, private) inventory variables for a new node.

    A function of this module, not the package's own: a process pool pickles
    it by name, and a worker started afresh (spawn, forkserver) can import
    wizard.identity.node but not meshstead_join, which only nodeside loads."""
    return _node.generate(fqdn)


def generate_many(fqdns: list[str], progress=None) -> list[tuple[dict, dict]]:
    """RSA key generation dominates; spread it over the cores."""
    if len(fqdns) < 4:
        results = []
        for fqdn in fqdns:
            results.append(generate(fqdn))
            if progress:
                progress()
        return results
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = []
        for result in pool.map(generate, fqdns, chunksize=8):
            results.append(result)
            if progress:
                progress()
        return results

"""All identities of one node, generated in-process (in parallel for many)."""

import os
from concurrent.futures import ProcessPoolExecutor

from . import PRIVATE_NODE_VARS, PUBLIC_NODE_VARS, join, nncp, ssh, syncthing, tinc, yggdrasil


def generate(fqdn: str) -> tuple[dict, dict]:
    """Return (public, private) inventory variables for a new node."""
    public: dict = {}
    private: dict = {}
    for pub, prv in (tinc.generate(), yggdrasil.generate(), syncthing.generate(), nncp.generate(),
                     ssh.generate(f"root@{fqdn}"), join.generate(fqdn)):
        public.update(pub)
        private.update(prv)
    # The contract in wizard/identity is what the inventory stores: a key a
    # module adds or drops without it would silently go missing there.
    if set(public) != set(PUBLIC_NODE_VARS) or set(private) != set(PRIVATE_NODE_VARS):
        raise RuntimeError("identity modules and the contract in wizard/identity disagree")
    return public, private


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

"""All identities of one node, generated in-process (in parallel for many)."""

import os
from concurrent.futures import ProcessPoolExecutor

from . import nncp, ssh, syncthing, tinc, yggdrasil


def generate(fqdn: str) -> tuple[dict, dict]:
    """Return (public, private) inventory variables for a new node."""
    public: dict = {}
    private: dict = {}
    for pub, prv in (tinc.generate(), yggdrasil.generate(), syncthing.generate(), nncp.generate(),
                     ssh.generate(f"root@{fqdn}")):
        public.update(pub)
        private.update(prv)
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

"""All identities of one node: what the wizard makes for a node it adds and
what a node that joins by invite makes for itself."""

from . import PRIVATE_NODE_VARS, PUBLIC_NODE_VARS, join, nncp, ssh, syncthing, tinc, yggdrasil


def generate(fqdn: str) -> tuple[dict, dict]:
    """Return (public, private) inventory variables for a new node."""
    public: dict = {}
    private: dict = {}
    for pub, prv in (tinc.generate(), yggdrasil.generate(), syncthing.generate(), nncp.generate(),
                     ssh.generate(f"root@{fqdn}"), join.generate(fqdn)):
        public.update(pub)
        private.update(prv)
    # The contract in __init__ is what the inventory stores: a key a module
    # adds or drops without it would silently go missing there.
    if set(public) != set(PUBLIC_NODE_VARS) or set(private) != set(PRIVATE_NODE_VARS):
        raise RuntimeError("identity modules and the contract in meshstead_join/keys disagree")
    return public, private

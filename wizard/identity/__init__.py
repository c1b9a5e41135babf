"""Node identities: the node-side package's key generation
(roles/join/files/meshstead_join/keys/), one copy for the controller and the
nodes that make their own keys when they join. Its modules are importable here
under their old names (wizard.identity.tinc, …); signing.py (the site's key,
which only the controller has) and generate_many (node.py) are the wizard's.
"""

from ..nodeside import module

_keys = module("keys")

# The contract: which variables each program's identity is (docs/inventory.md).
PUBLIC_VARS = _keys.PUBLIC_VARS
PRIVATE_VARS = _keys.PRIVATE_VARS
PUBLIC_NODE_VARS = _keys.PUBLIC_NODE_VARS
PRIVATE_NODE_VARS = _keys.PRIVATE_NODE_VARS

"""Node identities, one module per program: pure functions, no prompting, no I/O.

One copy for the controller and the nodes: the wizard makes the keys of the
nodes it adds (wizard/identity loads these modules from the role), a node that
joins by invite makes its own with the same code, so both store the same
variables in the same formats. Standard library and `cryptography` 38 only.

Each module offers ``generate()`` returning ``(public, private)`` dicts whose keys
are the inventory variable names documented in docs/inventory.md (private ones
without their ``vault_`` prefix). The contract below names them all, once: the
inventory writer and reader, the vault and the tests take the names from here.
"""

# Public identity of a node, per program: stored in host_vars/<node>/node.yml.
PUBLIC_VARS = {
    "tinc": ("tinc_public_key",),
    "yggdrasil": ("yggdrasil_public_key", "yggdrasil_address", "yggdrasil_subnet"),
    "syncthing": ("syncthing_device_id", "syncthing_cert"),
    "nncp": ("nncp_id", "nncp_exchpub", "nncp_signpub", "nncp_noisepub"),
    "ssh": ("ssh_host_ed25519_public_key", "ssh_host_ed25519_fingerprint"),
    "join": ("join_tls_cert", "join_pin"),
}

# Private keys, per program: node.yml names them, host_vars/<node>/vault.yml
# holds them as vault_<name>. A node that made its own keys has none of them.
PRIVATE_VARS = {
    "tinc": ("tinc_private_key",),
    "yggdrasil": ("yggdrasil_private_key",),
    "syncthing": ("syncthing_key",),
    "nncp": ("nncp_exchprv", "nncp_signprv", "nncp_noiseprv"),
    "ssh": ("ssh_host_ed25519_private_key",),
    "join": ("join_tls_key",),
}

PUBLIC_NODE_VARS = tuple(name for names in PUBLIC_VARS.values() for name in names)
PRIVATE_NODE_VARS = tuple(name for names in PRIVATE_VARS.values() for name in names)

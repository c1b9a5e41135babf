"""Joining a site by invite, on the nodes: the invite format (token), the
hub's join service (service) and the joining node's client (client).
docs/invites.md is the contract.

Standard library, `cryptography` (38, Debian 12's python3-cryptography) and
`yaml` only, and nothing of the wizard: a node runs this package as it is."""

#!/bin/sh
# Vault password for molecule runs: the random one create.yml made for this
# scenario's throwaway site (none exists before create: print a placeholder).
cat "${MOLECULE_EPHEMERAL_DIRECTORY:-/nonexistent}/vault.pass" 2>/dev/null || echo not-created-yet

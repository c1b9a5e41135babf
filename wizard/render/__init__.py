"""Model -> files: inventory, identity exports (later: invites, image seeds)."""

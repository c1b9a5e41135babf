"""The node-side package's roles/join/files/meshstead_join/keys/encoding.py under
this name: the module itself, not a copy, so there is one set of functions
and constants (a test's monkeypatch reaches every caller)."""

import sys

from ..nodeside import module

sys.modules[__name__] = module("keys.encoding")

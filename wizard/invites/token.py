"""The invite format: roles/join/files/meshstead_join/token.py, the one copy
that nodes run too. Importing this module gives that module itself (the
import system takes what a module leaves in sys.modules under its name)."""

import sys

from ..nodeside import module

sys.modules[__name__] = module("token")

"""The Wi-Fi regulatory database as the Linux kernel applies it: which channels
a mesh (802.11s or IBSS) may use in a country.

The database is wireless-regdb's binary `regulatory.db` (the file the kernel
loads from /lib/firmware), shipped with meshstead in wizard/data/, so the
answer is the same on every controller machine. The reader is the mesh role's
(roles/mesh/module_utils/meshstead_regdb.py): the role checks the channel on
the node with the same code, against the node's own file.
"""

import importlib.util
from functools import cache
from importlib import resources

from . import meshparams
from .resources import ansible_home

# The shipped file: wireless-regdb release, and its SHA-256 (a test holds them
# together, so replacing the file means updating the version shown to users).
VERSION = "2026.09.03"
SHA256 = "7e236caecd939c8ec98be4870bf30422f28ffef2565a38aaaa2d9ddabd0c2641"
NAME = f"regulatory.db {VERSION}"


def _reader():
    path = ansible_home() / "roles" / "mesh" / "module_utils" / "meshstead_regdb.py"
    spec = importlib.util.spec_from_file_location("meshstead_regdb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_regdb = _reader()
RegdbError = _regdb.RegdbError
parse = _regdb.parse
NO_OFDM, NO_OUTDOOR, DFS, NO_IR, AUTO_BW = (_regdb.NO_OFDM, _regdb.NO_OUTDOOR, _regdb.DFS, _regdb.NO_IR,
                                           _regdb.AUTO_BW)


def _data() -> bytes:
    return resources.files(__package__).joinpath("data", "regulatory.db").read_bytes()


@cache
def database() -> dict[str, list[tuple[int, int, int, int, int]]]:
    return parse(_data())


def countries() -> frozenset[str]:
    return frozenset(database())


def rules(country: str) -> list[tuple[int, int, int]]:
    """The country's rules as (start_khz, end_khz, flags); KeyError for a
    country the database does not list."""
    return [(start, end, flags) for start, end, _bw, flags, _eirp in database()[country]]


def domain(country: str) -> str:
    """The regulatory domain the kernel applies for `country`: the country's
    own, or the world domain 00 for a country the database does not list."""
    return _regdb.domain(database(), country)


def channel_status(country: str, band: str, channel: int) -> str | None:
    """None if a mesh or IBSS may be started on the channel in the country,
    else a short reason why not."""
    return _regdb.channel_status(database(), country, meshparams.frequency(band, channel))


def usable_channels(country: str, band: str, channels) -> list[int]:
    return [c for c in channels if channel_status(country, band, c) is None]

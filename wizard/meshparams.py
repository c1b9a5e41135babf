"""The Wi-Fi mesh parameters a site's settings mean, computed in one place.

The inventory carries them (group_vars/all/site.yml) for the Debian role; the
same functions serve any other renderer of the mesh (OpenWrt's UCI
`wireless`/`network` sections take the same frequency, MTU and mesh ID).
"""

import hashlib

# batman-adv's unicast header plus the Ethernet header it encapsulates: a
# radio MTU this much above bat0's lets bat0 carry full frames unfragmented.
BATMAN_OVERHEAD = 32


def frequency(band: str, channel: int) -> int:
    """Centre frequency in MHz of a 2.4 or 5 GHz channel (IEEE 802.11)."""
    if band == "2.4":
        return 2484 if channel == 14 else 2407 + 5 * channel
    if band == "5":
        return 5000 + 5 * channel
    raise ValueError(f"unknown band {band!r}")


def radio_mtu(mesh_mtu: int) -> int:
    """MTU of the mesh radio so that bat0 carries `mesh_mtu` without fragmenting."""
    return mesh_mtu + BATMAN_OVERHEAD


def ibss_bssid(mesh_id: str) -> str:
    """A fixed cell BSSID for IBSS, the same on every node of the site: without
    one each node may start a cell of its own, and cells with different BSSIDs
    merge only when their beacons' timestamps happen to meet (minutes on a busy
    or slow radio). Locally administered, unicast."""
    digest = hashlib.sha256(mesh_id.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def site_vars(settings) -> dict:
    """The derived mesh variables of group_vars/all/site.yml."""
    return {
        "site_mesh_frequency": frequency(settings.mesh_band, settings.mesh_channel),
        "site_mesh_radio_mtu": radio_mtu(settings.mesh_mtu),
        "site_mesh_ibss_bssid": ibss_bssid(settings.mesh_id),
    }

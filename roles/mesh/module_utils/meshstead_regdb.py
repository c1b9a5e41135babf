"""The Wi-Fi regulatory database as the Linux kernel applies it: which channels
a mesh (802.11s or IBSS) may use in a country.

One reader for two users: the role's channel check on the node (reading the
node's /lib/firmware/regulatory.db, what its kernel loads) and the wizard
(reading the copy it ships, so every controller gives the same answer).

The file is wireless-regdb's binary `regulatory.db`. Its layout is the
kernel's `fwdb_*` structures (net/wireless/reg.c), written by db2fw.py:

    header      be32 magic "RGDB", be32 version 20, then countries
    country     2-byte alpha2, be16 pointer to its collection; 4 zero bytes end the list
    collection  u8 len, u8 n_rules, u8 dfs_region, then (aligned to 2) n_rules be16 rule pointers
    rule        u8 len, u8 flags, be16 max EIRP (mBm), be32 start, end, max bandwidth (kHz)

Pointers are byte offsets divided by 4. Standard library only: it runs on nodes.
"""

import struct

MAGIC = 0x52474442  # "RGDB"
FORMAT_VERSION = 20

# Rule flags (enum fwdb_flags in net/wireless/reg.c).
NO_OFDM = 1 << 0
NO_OUTDOOR = 1 << 1
DFS = 1 << 2
NO_IR = 1 << 3
AUTO_BW = 1 << 4

CHANNEL_WIDTH_KHZ = 20_000  # the mesh runs on a 20 MHz channel


class RegdbError(ValueError):
    """The file is not a regulatory.db this module can read."""


def parse(data):
    """Every country's rules: {alpha2: [(start_khz, end_khz, max_bw_khz, flags, max_eirp_mbm)]}."""
    try:
        magic, version = struct.unpack_from(">II", data, 0)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise RegdbError(f"not a regulatory.db of format {FORMAT_VERSION} (magic {magic:#x}, version {version})")
        countries = {}
        offset = 8
        while True:
            alpha2, coll_ptr = struct.unpack_from(">2sH", data, offset)
            if alpha2 == b"\0\0" and coll_ptr == 0:
                break
            countries[alpha2.decode("ascii")] = _collection(data, coll_ptr << 2)
            offset += 4
    except (struct.error, UnicodeDecodeError) as exc:
        raise RegdbError(f"truncated or damaged regulatory.db ({exc})") from None
    return countries


def _collection(data, offset):
    length, n_rules, _dfs_region = struct.unpack_from(">BBB", data, offset)
    first = offset + length + (length & 1)  # rule pointers start aligned to 2
    rules = []
    for (rule_ptr,) in struct.iter_unpack(">H", data[first:first + 2 * n_rules]):
        rule_len, flags, max_eirp, start, end, max_bw = struct.unpack_from(">BBHIII", data, rule_ptr << 2)
        if rule_len < 16:
            raise RegdbError(f"rule at {rule_ptr << 2} is {rule_len} bytes, expected at least 16")
        rules.append((start, end, max_bw, flags, max_eirp))
    if len(rules) != n_rules:
        raise RegdbError(f"collection at {offset} lists {n_rules} rules, found {len(rules)}")
    return rules


def domain(countries, country):
    """The regulatory domain the kernel applies for `country`: the country's
    own, or the world domain 00 for a country the database does not list."""
    return country if country in countries else "00"


def channel_status(countries, country, centre_mhz):
    """None if a mesh or IBSS may be started on the 20 MHz channel centred on
    `centre_mhz` in the country, else a short reason why not.

    As the kernel does (freq_reg_info), the first rule that holds the whole
    channel decides; NO-OFDM and NO-OUTDOOR do not forbid a mesh."""
    centre = centre_mhz * 1000
    low, high = centre - CHANNEL_WIDTH_KHZ // 2, centre + CHANNEL_WIDTH_KHZ // 2
    covering = [r for r in countries[domain(countries, country)]
                if r[0] <= low and high <= r[1] and r[2] >= CHANNEL_WIDTH_KHZ]
    if not covering:
        return f"no rule covers {centre_mhz} MHz"
    _start, _end, _bw, flags, max_eirp = covering[0]
    if max_eirp <= 0:
        return "disabled (no transmit power allowed)"
    if flags & NO_IR:
        return "no initiating radiation (NO-IR): a mesh cannot be started there"
    if flags & DFS:
        return "radar detection (DFS) needed, which a mesh does not do"
    return None

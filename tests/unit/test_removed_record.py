"""The record of a removal and the addresses it blocks
(roles/join/files/meshstead_join/removed.py): one derivation for `meshstead
node remove` and for a node's roster applier, checked here by hand-worked
values."""

import ipaddress

from wizard.nodeside import module

removed = module("removed")
PLAN = ipaddress.IPv4Network("10.42.0.0/16")  # mesh 10.42.0.0/18, overlay 10.42.64.0/18
ULA = ipaddress.IPv6Network("fd00:1:2::/48")  # mesh fd00:1:2::/64, overlay fd00:1:2:1::/64
CABIN = {"node_name": "cabin", "node_index": 2, "node_fqdn": "cabin.valley.internal", "node_mesh_ipv4": "10.42.0.2",
         "tinc_public_key": "TINC", "yggdrasil_public_key": "YGG", "syncthing_device_id": "ST", "nncp_id": "NNCP",
         "ssh_host_ed25519_fingerprint": "SHA256:x", "join_pin": "PIN", "yggdrasil_address": "200::2",
         "yggdrasil_subnet": "300::/64", "tinc_private_key": "{{ vault_tinc_private_key }}"}


def test_a_removal_records_the_index_when_and_the_public_keys_and_key_addresses_only():
    entry = removed.entry_of(CABIN, "2026-12-04T09:00:00Z")
    assert entry == {"node_index": 2, "removed_at": "2026-12-04T09:00:00Z", "reuse_address": False,
                     "tinc_public_key": "TINC", "yggdrasil_public_key": "YGG", "syncthing_device_id": "ST",
                     "nncp_id": "NNCP", "ssh_host_ed25519_fingerprint": "SHA256:x", "join_pin": "PIN",
                     "yggdrasil_address": "200::2", "yggdrasil_subnet": "300::/64"}
    removed.check({"cabin": entry})  # the record's own check takes it


def test_a_name_removed_again_keeps_its_older_removals_and_the_record_is_not_changed_in_place():
    first = removed.with_removal({}, "cabin", removed.entry_of(CABIN, "2026-12-04T09:00:00Z"))
    again = {**CABIN, "node_index": 5, "tinc_public_key": "TINC2"}
    second = removed.with_removal(first, "cabin", removed.entry_of(again, "2026-12-05T09:00:00Z", True))
    assert first["cabin"]["node_index"] == 2 and "earlier" not in first["cabin"]
    assert second["cabin"]["node_index"] == 5 and second["cabin"]["reuse_address"] is True
    assert second["cabin"]["earlier"] == [first["cabin"]]
    third = removed.with_removal(second, "cabin", removed.entry_of({**again, "node_index": 7}, "2026-12-06T09:00:00Z"))
    assert [e["node_index"] for e in third["cabin"]["earlier"]] == [2, 5]
    assert removed.was_removed(third, "cabin", 2) and removed.was_removed(third, "cabin", 7)


def test_the_firewall_drops_the_key_addresses_and_the_index_addresses_unless_freed():
    record = removed.with_removal({}, "cabin", removed.entry_of(CABIN, "2026-12-04T09:00:00Z"))
    assert removed.blocked_addresses(record, PLAN, ULA) == [
        "200::2/128", "300::/64", "10.42.0.2/32", "10.42.64.2/32", "fd00:1:2::2/128", "fd00:1:2:1::2/128"]
    freed = {**CABIN, "node_index": 9, "yggdrasil_address": "200::9", "yggdrasil_subnet": "300:9::/64"}
    record = removed.with_removal(record, "shed", removed.entry_of(freed, "2026-12-04T10:00:00Z", True))
    assert removed.blocked_addresses(record, PLAN, ULA)[6:] == ["200::9/128", "300:9::/64"]
    assert removed.variables(record, PLAN, ULA) == {
        "site_removed_nodes": record, "site_removed_addresses": removed.blocked_addresses(record, PLAN, ULA)}


def test_an_address_two_removals_share_is_listed_once():
    record = removed.with_removal({}, "cabin", removed.entry_of(CABIN, "2026-12-04T09:00:00Z"))
    record = removed.with_removal(record, "cabin", removed.entry_of(CABIN, "2026-12-05T09:00:00Z"))
    assert len(removed.blocked_addresses(record, PLAN, ULA)) == 6

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.errors import MeshsteadError
from wizard.model import Node, Settings, Site, parse_node


def make_site(plan="10.42.0.0/16") -> Site:
    return Site(Settings(
        site_id="x", name="demo", domain="demo.internal", country="00", mesh_mode="80211s", mesh_band="2.4",
        mesh_channel=1, mesh_id="demo-mesh", mesh_mtu=1500, ap_ssid="demo", overlay=["tinc", "yggdrasil"],
        services=["syncthing"], ipv4_plan=ipaddress.IPv4Network(plan),
        ipv6_ula=ipaddress.IPv6Network("fd12:3456:789a::/48"), admin_user="mesh", admin_ssh_keys=["k"],
        signing_public_key="s"))


def add(site, name):
    site.check_new_node(name)
    node = Node(name=name, index=site.next_index(), platform="amd64", roles=[])
    site.nodes[name] = node
    return node


def test_plan_quarters():
    s = make_site().settings
    assert str(s.mesh_ipv4_net) == "10.42.0.0/18"
    assert str(s.overlay_ipv4_net) == "10.42.64.0/18"
    assert str(s.client_ipv4_net) == "10.42.128.0/17"
    assert str(s.ula_subnet(1)) == "fd12:3456:789a:1::/64"


def test_addresses_follow_the_index():
    site = make_site()
    node = add(site, "a")
    assert site.addresses(node) == {
        "node_mesh_ipv4": "10.42.0.1", "node_mesh_ipv6": "fd12:3456:789a::1",
        "node_overlay_ipv4": "10.42.64.1", "node_overlay_ipv6": "fd12:3456:789a:1::1",
        "node_client_ipv4_net": "10.42.129.0/24"}


def test_client_subnets_are_disjoint_shares_of_the_client_range():
    s = make_site().settings
    shares = [s.client_subnet(i) for i in range(128)]
    assert all(share.subnet_of(s.client_ipv4_net) for share in shares)
    assert len({share.network_address for share in shares}) == 128
    assert s.client_subnet(128) is None  # past the last share: no access point subnet


def test_duplicate_name_is_refused():
    site = make_site()
    add(site, "a")
    with pytest.raises(MeshsteadError, match="name: a node named 'a' already exists"):
        add(site, "a")


def test_plan_full():
    site = make_site("10.42.0.0/22")  # quarters are /24: 253 nodes and the controller's .254
    for i in range(253):
        add(site, f"n{i}")
    with pytest.raises(MeshsteadError, match="ipv4_plan: .* holds at most 253 nodes"):
        add(site, "one-too-many")


def test_removed_index_is_not_reused_while_higher_exist():
    site = make_site()
    for name in "abc":
        add(site, name)
    del site.nodes["b"]
    assert add(site, "d").index == 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=80))
def test_allocation_never_collides_and_is_stable(ops):
    """Random adds (True) and removes (False): addresses stay unique among live
    nodes and a node's addresses never change while it exists."""
    site = make_site("10.42.0.0/20")
    first_seen = {}
    counter = 0
    for op in ops:
        if op or not site.nodes:
            counter += 1
            node = add(site, f"n{counter}")
            first_seen[node.name] = site.addresses(node)
        else:
            del site.nodes[sorted(site.nodes)[0]]
        live = [site.addresses(n) for n in site.nodes.values()]
        for key in ("node_mesh_ipv4", "node_overlay_ipv4", "node_mesh_ipv6", "node_overlay_ipv6"):
            values = [a[key] for a in live]
            assert len(values) == len(set(values))
        for node in site.nodes.values():
            assert site.addresses(node) == first_seen[node.name]
            assert ipaddress.ip_address(first_seen[node.name]["node_mesh_ipv4"]) in site.settings.mesh_ipv4_net


def test_parse_node_names_the_field():
    with pytest.raises(MeshsteadError, match="^platform: expected one of"):
        parse_node("ok", "rpi2", [])
    with pytest.raises(MeshsteadError, match="^role: expected any of"):
        parse_node("ok", "rpi4", ["boss"])
    with pytest.raises(MeshsteadError, match="^name: expected a DNS label"):
        parse_node("Bad_Name", "rpi4", [])
    assert parse_node("ok", "RPI4", ["dns", "hub"]) == ("ok", "rpi4", ["hub", "dns"])


def test_a_site_from_before_access_points_loads_with_the_ssid_named_after_it():
    settings = make_site().settings
    raw = settings.to_vars()
    assert raw["site_ap_ssid"] == "demo"
    del raw["site_ap_ssid"]
    raw["site_name"] = "a-very-long-site-name-of-forty-characters"
    loaded = Settings.from_vars(raw)
    assert loaded.ap_ssid == "a-very-long-site-name-of-forty-c"  # the first 32 bytes: a valid SSID
    del raw["site_mesh_id"]  # a setting without a default is still required
    with pytest.raises(KeyError):
        Settings.from_vars(raw)

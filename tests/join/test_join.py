"""The join protocol on loopback: a real hub (TLS with its join key, its kit
made from a real site) and the real client."""

import ipaddress
import threading
import time

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.join.helpers import (
    client,
    free_port,
    impersonator,
    make_hub,
    past,
    quick,
    raw_exchange,
    service,
    snapshot,
    wire,
)
from wizard import sites
from wizard.fsutil import apply_writes
from wizard.invites import record, token
from wizard.load import load_site
from wizard.model import Node


def _refused(hub, text, identity, problem, **options):
    """The join is refused with `problem`, and the hub's state is as it was."""
    before = snapshot(hub.state_dir)
    with pytest.raises(client.JoinError) as caught:
        client.join(text, identity, **quick(**options))
    assert caught.value.problem == problem, str(caught.value)
    assert "\n" not in str(caught.value)
    assert snapshot(hub.state_dir) == before
    return str(caught.value)


def _signed(hub, name="garden", *, pin=None, expires=None, key=None, endpoints=None) -> str:
    """An invite signed outside `invite create`, for grants the command refuses to make."""
    opened = hub.opened()
    key = key or load_pem_private_key(opened.site_secrets["site_signing_private_key"].encode(), None)
    pin = pin or token.b64url_decode(opened.site.nodes["hilltop"].public["join_pin"])
    invite = token.Invite(secret=bytes(range(16)), expires=expires or 4_000_000_000,
                          endpoints=endpoints or [(ipaddress.ip_address("127.0.0.1"), hub.port)],
                          pin=pin, name=name, platform="rpi4", roles=[])
    return token.encode(invite, key)


def test_a_join_returns_the_node_the_wizard_would_make_and_records_it(hub, identities):
    text = hub.invite("garden")
    answer = client.join(text, identities[0], **quick())
    node = answer["node"]
    site = load_site(hub.site_dir)
    # hilltop is 1, cabin 2: the next index, and the wizard's addresses for it.
    assert node["node_index"] == 3
    expected = site.node_facts(Node("garden", 3, "rpi4", ["dns"], dict(identities[0])))
    assert node == expected
    assert yaml.safe_load((hub.state_dir / "joined" / "garden.yml").read_text()) == node
    used = yaml.safe_load((hub.state_dir / "used" / f"{token.decode(text, hub.site_key(), 0).id}.yml").read_text())
    assert used["node"] == "garden" and used["index"] == 3
    # What the node needs to configure itself: settings, network secrets, its peers without private-key references.
    assert answer["site"]["vars"]["site_name"] == site.settings.name
    assert "vault_site_mesh_passphrase" in answer["site"]["secrets"]
    assert "vault_site_signing_private_key" not in answer["site"]["secrets"]
    assert set(answer["site"]["nodes"]) == {"hilltop", "cabin"}
    assert "tinc_private_key" not in answer["site"]["nodes"]["cabin"]
    assert answer["site"]["nodes"]["cabin"]["tinc_public_key"] == site.nodes["cabin"].public["tinc_public_key"]


def test_the_next_join_gets_the_next_index_and_sees_the_first(hub, identities):
    client.join(hub.invite("garden"), identities[0], **quick())
    answer = client.join(hub.invite("shed"), identities[1], **quick())
    assert answer["node"]["node_index"] == 4
    assert answer["node"]["node_mesh_ipv4"].endswith(".4")
    assert "garden" in answer["site"]["nodes"]


def test_an_invite_is_used_once(hub, identities):
    text = hub.invite("garden")
    client.join(text, identities[0], **quick())
    message = _refused(hub, text, identities[1], "used")
    assert "garden" in message


def test_two_joins_at_once_with_one_invite_admit_one_node(hub, identities, monkeypatch):
    text = hub.invite("garden")
    # Widen the window between the hub's check of the invite and its record,
    # so that without the lock both joins would pass the check.
    check = service.identity.check
    monkeypatch.setattr(service.identity, "check", lambda sent: (time.sleep(0.5), check(sent))[1])
    start = threading.Barrier(2)
    results: list = [None, None]

    def run(i):
        start.wait()
        try:
            results[i] = client.join(text, identities[i], **quick())["node"]["node_index"]
        except client.JoinError as exc:
            results[i] = exc.problem

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results, key=str) == [3, "used"]
    assert [p.name for p in (hub.state_dir / "joined").iterdir()] == ["garden.yml"]


def test_a_changed_byte_is_refused_by_the_hub(hub, identities):
    text = hub.invite("garden")
    at = len(token.PREFIX) + 12  # inside the secret (bytes 5-20): still a well-formed invite
    changed = text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]
    message = _refused(hub, changed, identities[0], "signature")
    assert "changed" in message


def test_another_site_s_invite_is_refused(hub, identities):
    message = _refused(hub, _signed(hub, key=Ed25519PrivateKey.generate()), identities[0], "site")
    assert "another site" in message


def test_an_expired_invite_is_refused_before_any_network_and_by_the_hub(hub, identities):
    text = hub.invite("garden", lifetime="1h", now=past(2))
    with impersonator(hub.state_dir.parent) as (port, received, _done):
        # The client refuses it itself: nothing reaches even a listening server.
        local = _signed(hub, endpoints=[(ipaddress.ip_address("127.0.0.1"), port)], expires=1000)
        with pytest.raises(client.JoinError) as caught:
            client.join(local, identities[0], **quick())
        assert caught.value.problem == "expired"
    assert received == []
    # A node whose clock is behind sends it; the hub refuses it by its own clock.
    message = _refused(hub, text, identities[0], "expired", now=past(3).timestamp())
    assert "expired at" in message


def test_a_revoked_invite_is_refused(hub, identities):
    text = hub.invite("garden")
    opened = hub.opened()
    record.revoke(opened.site.invites, token.decode(text, hub.site_key(), 0).id)
    apply_writes(sites.plan(opened))
    hub.write_kit()
    assert "revoked" in _refused(hub, text, identities[0], "revoked")


def test_a_name_the_site_has_is_refused(hub, identities):
    assert "cabin" in _refused(hub, _signed(hub, "cabin"), identities[0], "name")


def test_a_name_joined_here_is_refused(hub, identities):
    client.join(hub.invite("garden"), identities[0], **quick())
    assert "garden" in _refused(hub, _signed(hub, "garden"), identities[1], "name")


def test_an_invite_for_another_hub_is_refused_by_this_hub(hub, identities):
    other_pin = token.b64url_decode(hub.opened().site.nodes["cabin"].public["join_pin"])
    text = _signed(hub, pin=other_pin)
    # The real client would not even talk to this hub (its pin is not the
    # invite's): ask as a client that skips that check.
    before = snapshot(hub.state_dir)
    answer = raw_exchange(hub.port, wire.encode({"invite": text, "identity": identities[0]}))
    assert answer["ok"] is False and answer["problem"] == "other_hub", answer
    assert snapshot(hub.state_dir) == before
    assert _refused(hub, text, identities[0], "impersonator")


def test_a_server_without_the_pinned_key_is_sent_nothing(hub, identities, tmp_path):
    with impersonator(tmp_path) as (port, received, done):
        text = hub.invite("garden", endpoints=[f"127.0.0.1:{port}"])
        message = _refused(hub, text, identities[0], "impersonator")
        assert done.wait(10)
    assert received == [] and f"127.0.0.1:{port}" in message and "nothing was sent" in message


@pytest.mark.parametrize("payload", [
    wire.encode({"invite": "meshstead1:x"}),  # no identity
    wire.encode({"invite": 5, "identity": {}}),
    b"\x00\x00\x00\x05hello",  # not JSON
    b"\x00\x00\x00\x02[]",  # not an object
], ids=["no-identity", "invite-not-text", "not-json", "not-an-object"])
def test_a_malformed_request_is_refused(hub, payload):
    before = snapshot(hub.state_dir)
    answer = raw_exchange(hub.port, payload)
    assert answer["ok"] is False and answer["problem"] == "request", answer
    assert snapshot(hub.state_dir) == before


def test_an_oversized_request_is_refused_without_reading_it(hub, identities):
    before = snapshot(hub.state_dir)
    size = wire.MAX_REQUEST + 1
    answer = raw_exchange(hub.port, size.to_bytes(4, "big") + b"x" * size)
    assert answer["ok"] is False and answer["problem"] == "too_large", answer
    assert str(wire.MAX_REQUEST) in answer["message"]
    assert snapshot(hub.state_dir) == before
    # The client does not send one.
    with pytest.raises(client.JoinError) as caught:
        client.join(hub.invite("garden"), {**identities[0], "tinc_public_key": "x" * size}, **quick())
    assert caught.value.problem == "too_large"


@pytest.mark.parametrize("change", [
    {"yggdrasil_public_key": "00" * 31},
    {"syncthing_device_id": "AAAAAAA-" * 7 + "AAAAAAA"},
    {"nncp_signpub": "A" * 52},
    {"tinc_public_key": "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"},
    {"ssh_host_ed25519_public_key": "ssh-ed25519 AAAAnotakey"},
    {"join_pin": "AAAAAAAAAAAAAAAAAAAAAA"},
    {"node_index": 1},
    {"tinc_public_key": None},
], ids=["yggdrasil", "syncthing", "nncp-id", "tinc", "ssh", "join-pin", "extra-variable", "missing"])
def test_a_malformed_identity_is_refused_naming_the_variable(hub, identities, change):
    sent = {k: v for k, v in {**identities[0], **change}.items() if v is not None}
    message = _refused(hub, hub.invite("garden"), sent, "identity")
    assert next(iter(change)) in message


def test_no_hub_listening_retries_with_backoff_then_says_so(identities, base_site, tmp_path):

    hub = make_hub(base_site, tmp_path, port=free_port())
    text = hub.invite("garden")
    waits = []
    clock = iter(range(0, 1000)).__next__  # one second per reading: a deterministic deadline

    with pytest.raises(client.JoinError) as caught:
        client.join(text, identities[0], deadline=40, first_delay=1, max_delay=8, clock=clock, sleep=waits.append)
    assert caught.value.problem == "unreachable"
    assert f"no hub answered at {hub.endpoint} for" in str(caught.value)
    assert len(waits) >= 4 and waits[:4] == [1, 2, 4, 8] and max(waits) <= 8


def test_no_hub_listening_gives_up_at_the_deadline(identities, base_site, tmp_path):

    hub = make_hub(base_site, tmp_path, port=free_port())

    started = time.monotonic()
    with pytest.raises(client.JoinError) as caught:
        client.join(hub.invite("garden"), identities[0], deadline=1.5, first_delay=0.1)
    assert caught.value.problem == "unreachable"
    assert 1.4 <= time.monotonic() - started < 5


def test_an_answer_that_does_not_carry_the_sent_identity_is_refused(hub, identities, monkeypatch):
    """The node pairs its private keys with the node.yml the hub sends back."""
    answer = service.Hub.answer

    def swapped(self, request):
        result = answer(self, request)
        result["node"]["tinc_public_key"] = identities[1]["tinc_public_key"]
        return result

    monkeypatch.setattr(service.Hub, "answer", swapped)
    with pytest.raises(client.JoinError, match="does not carry the identity the node sent .tinc_public_key.") as err:
        client.join(hub.invite("garden"), identities[0], **quick())
    assert err.value.problem == "answer"

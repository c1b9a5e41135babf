"""Phones as carriers with the real Syncthing 1.19 (Debian's): a hub
instance with the site's hub1 identity and a second instance acting as the
phone, both on loopback. The phone adds the device ID that zbarimg reads
from `meshstead invite phone`'s PNG, with the hub's address, as the Android
app does after a scan, and keeps dialling the hub. The hub side is the node
package under Debian's Python, as meshstead-phones.service runs it:
`meshstead-join phone open` and `phone watch`."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from realkit import REPO, SYNCTHING_DIR, need

from tests import syncthingconf

pytestmark = pytest.mark.real

NODE_PYTHON = "/usr/bin/python3"  # Debian's, as on a node
PACKAGE_PARENT = REPO / "roles" / "join" / "files"
CARRIER = "nncp-carrier"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One Syncthing confined to loopback: no discovery, relays, NAT or reporting."""

    def __init__(self, home: Path, env: dict, reconnect: int):
        self.home, self.env = home, env
        self.gui, self.listen = free_port(), free_port()
        subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
                       env=env, capture_output=True, check=True, timeout=60)
        self.key = syncthingconf.confine(home, f"127.0.0.1:{self.gui}", f"tcp://127.0.0.1:{self.listen}",
                                         startBrowser="false", reconnectionIntervalS=str(reconnect))
        self.log = open(home.parent / f"{home.name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart"],
                                     env={**env, "STNODEFAULTFOLDER": "1"}, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.id = self.api("GET", "/rest/system/status")["myID"]
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"syncthing in {home} did not answer:\n{self.tail()}") from None
                time.sleep(0.2)

    def api(self, method: str, path: str, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.gui}{path}", method=method,  # noqa: S310
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"X-API-Key": self.key, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def devices(self) -> set[str]:
        return {d["deviceID"] for d in self.api("GET", "/rest/config/devices")}

    def tail(self) -> str:
        path = self.home.parent / f"{self.home.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def wait_for(check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture
def pair(real_site, tmp_path, request):
    """(hub, phone): the hub runs as hub1 (the site's certificate) with the
    carrier folder; the phone is a fresh Syncthing that retries every 2 s (the
    app retries every minute)."""
    need("syncthing", "zbarimg")
    if not Path(NODE_PYTHON).exists():
        pytest.skip(f"no {NODE_PYTHON}")
    env = {**real_site.env, "STNOUPGRADE": "1"}
    hub_home = tmp_path / "hub"
    hub_home.mkdir()
    for pem in ("cert.pem", "key.pem"):
        shutil.copy2(real_site.exports["hub1"] / SYNCTHING_DIR / pem, hub_home / pem)
    started = []
    request.addfinalizer(lambda: [s.stop() for s in reversed(started)])
    hub = Instance(hub_home, env, reconnect=60)
    started.append(hub)
    assert hub.id == real_site.facts["hub1"]["syncthing_device_id"]
    (tmp_path / "hub-carrier").mkdir()
    hub.api("POST", "/rest/config/folders", {"id": CARRIER, "label": "NNCP carrier",
                                             "path": str(tmp_path / "hub-carrier"), "fsWatcherDelayS": 1})
    phone = Instance(tmp_path / "phone", env, reconnect=2)
    started.append(phone)
    return hub, phone


def node(*args, timeout=60, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([NODE_PYTHON, "-m", "meshstead_join", "phone", *map(str, args)],
                          env={"PYTHONPATH": str(PACKAGE_PARENT), "PYTHONDONTWRITEBYTECODE": "1",
                               "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=timeout, **popen)


def hub_args(hub: Instance, state: Path) -> list[str]:
    return ["--state", state, "--config", hub.home / "config.xml"]


def scan_and_add(real_site, hub: Instance, phone: Instance, tmp_path: Path) -> str:
    """What the person does: `invite phone` prints the QR; the app's scanner
    reads the device ID from it; they type the hub's address and save."""
    out = tmp_path / "qr"
    made = real_site.cli("invite", "phone", "--no-window", "--out", str(out), "--site", str(real_site.directory))
    assert "tcp://" in made.stdout
    scanned = subprocess.run(["zbarimg", "--raw", "-q", str(out / "hub1-phone.png")], capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
    assert scanned == hub.id
    phone.api("POST", "/rest/config/devices", {"deviceID": scanned, "name": "hub1", "introducer": True,
                                               "addresses": [f"tcp://127.0.0.1:{hub.listen}"]})
    return scanned


def test_inside_the_window_the_hub_accepts_the_phone_and_a_file_arrives(real_site, pair, tmp_path):
    hub, phone = pair
    state = tmp_path / "phones"
    state.mkdir()
    started = time.monotonic()
    opened = node("open", "--seconds", 90, "--kit", tmp_path / "nokit", "--hub-state", tmp_path / "nostate",
                  *hub_args(hub, state))
    assert opened.returncode == 0, opened.stderr
    answer = json.loads(opened.stdout)
    assert answer["device_id"] == hub.id and answer["folders"] == [CARRIER] and answer["phones"] == 1
    assert answer["listen"] == [f"tcp://127.0.0.1:{hub.listen}"]
    log = open(tmp_path / "watch.log", "w")  # noqa: SIM115 - closed below
    watcher = subprocess.Popen([NODE_PYTHON, "-m", "meshstead_join", "phone", "watch", *map(str, hub_args(hub, state))],
                               env={"PYTHONPATH": str(PACKAGE_PARENT), "PYTHONDONTWRITEBYTECODE": "1"},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        scan_and_add(real_site, hub, phone, tmp_path)
        accepted = wait_for(lambda: phone.id in hub.devices(), 30)
        assert accepted, f"the hub did not accept the phone:\n{(tmp_path / 'watch.log').read_text()}\n{hub.tail()}"
        print(f"phone accepted {time.monotonic() - started:.1f} s after the window opened")
        # One phone: the window is used up and the watcher is done.
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.terminate()
            watcher.wait(timeout=10)
        log.close()
    watched = (tmp_path / "watch.log").read_text()
    name = "phone-" + phone.id.replace("-", "")[:8]
    assert f"accepted {name} ({phone.id}" in watched and "shared nncp-carrier" in watched, watched
    device = hub.api("GET", f"/rest/config/devices/{phone.id}")
    assert device["name"] == name and device["introducer"] is False and device["addresses"] == ["dynamic"]
    shared = {d["deviceID"] for d in hub.api("GET", f"/rest/config/folders/{CARRIER}")["devices"]}
    assert phone.id in shared
    record = json.loads((state / "phones.json").read_text())
    assert [(d["id"], d["name"], d["folders"]) for d in record["devices"]] == [(phone.id, name, [CARRIER])]

    # The phone is offered the folder; accepting it there is the person's tap.
    offered = wait_for(lambda: phone.api("GET", "/rest/cluster/pending/folders").get(CARRIER), 60)
    assert offered and hub.id in offered["offeredBy"], phone.tail()
    (tmp_path / "phone-carrier").mkdir()
    phone.api("POST", "/rest/config/folders", {"id": CARRIER, "label": "NNCP carrier", "fsWatcherDelayS": 1,
                                               "path": str(tmp_path / "phone-carrier"),
                                               "devices": [{"deviceID": hub.id}]})
    token = f"carried-{time.time_ns()}"
    (tmp_path / "phone-carrier" / "packet").write_text(token)
    arrived = wait_for(lambda: (tmp_path / "hub-carrier" / "packet").is_file()
                       and (tmp_path / "hub-carrier" / "packet").read_text() == token, 60)
    assert arrived, f"the file did not reach the hub's carrier folder:\n{hub.tail()}\n{phone.tail()}"
    print(f"file from the phone in the hub's carrier folder {time.monotonic() - started:.1f} s after the window")

    listed = node("list", *hub_args(hub, state))
    assert listed.returncode == 0 and json.loads(listed.stdout)["window"]["open"] is False
    # Removing it: out of Syncthing (and so of the folder) and of the record.
    removed = node("remove", phone.id, *hub_args(hub, state))
    assert removed.returncode == 0, removed.stderr
    assert phone.id not in hub.devices()
    assert phone.id not in {d["deviceID"] for d in hub.api("GET", f"/rest/config/folders/{CARRIER}")["devices"]}
    assert json.loads((state / "phones.json").read_text())["devices"] == []
    again = node("remove", phone.id, *hub_args(hub, state))
    assert again.returncode == 1 and "is no phone of this hub" in again.stderr


def test_after_the_window_a_pending_phone_is_not_accepted(real_site, pair, tmp_path):
    hub, phone = pair
    state = tmp_path / "phones"
    state.mkdir()
    opened = node("open", "--seconds", 1, "--kit", tmp_path / "nokit", "--hub-state", tmp_path / "nostate",
                  *hub_args(hub, state))
    assert opened.returncode == 0, opened.stderr
    time.sleep(1.5)  # the window has ended
    scan_and_add(real_site, hub, phone, tmp_path)
    pending = wait_for(lambda: phone.id in hub.api("GET", "/rest/cluster/pending/devices"), 30)
    assert pending, f"the phone never reached the hub:\n{hub.tail()}"
    watched = node("watch", *hub_args(hub, state), timeout=30)
    assert watched.returncode == 0 and "no window for phones is open" in watched.stderr
    assert phone.id not in hub.devices()
    assert not (state / "phones.json").exists()
    # Still refused a few tries later: nothing accepts it behind the window's back.
    time.sleep(5)
    assert phone.id in hub.api("GET", "/rest/cluster/pending/devices") and phone.id not in hub.devices()


def test_open_refuses_a_folder_syncthing_lacks_and_a_dead_syncthing(real_site, pair, tmp_path):
    hub, _phone = pair
    state = tmp_path / "phones"
    state.mkdir()
    refused = node("open", "--seconds", 60, "--folder", "shared", "--kit", tmp_path / "nokit", "--hub-state",
                   tmp_path / "nostate", *hub_args(hub, state))
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip() == ("meshstead-join: phone: folder: Syncthing here has no folder shared; expected "
                                      "one of the site's folders (site_syncthing_folders)")
    assert list(state.iterdir()) == [] or [p.name for p in state.iterdir()] == []
    hub.stop()
    dead = node("open", "--seconds", 60, "--kit", tmp_path / "nokit", "--hub-state", tmp_path / "nostate",
                *hub_args(hub, state))
    assert dead.returncode == 1 and len(dead.stderr.strip().splitlines()) == 1
    assert "Syncthing does not answer" in dead.stderr
    assert not (state / "window.json").exists()


def test_a_node_of_the_site_that_reaches_the_hub_in_a_window_is_no_phone(real_site, pair, tmp_path):
    """A node that joined at the hub but is not in its Syncthing yet is pending
    there too: it is in the hub's record of joins (or its kit), so the window
    leaves it for `provision`, and it does not use up the window."""
    hub, phone = pair
    state = tmp_path / "phones"
    state.mkdir()
    joined = tmp_path / "join-hub" / "joined"
    joined.mkdir(parents=True)
    (joined / "garden.yml").write_text(f"node_name: garden\nsyncthing_device_id: {phone.id}\n")
    opened = node("open", "--seconds", 8, "--kit", tmp_path / "nokit", "--hub-state", tmp_path / "join-hub",
                  *hub_args(hub, state))
    assert opened.returncode == 0, opened.stderr
    scan_and_add(real_site, hub, phone, tmp_path)
    assert wait_for(lambda: phone.id in hub.api("GET", "/rest/cluster/pending/devices"), 8)
    watched = node("watch", *hub_args(hub, state), timeout=30)  # until the window ends
    assert watched.returncode == 0 and "(0 of 1 accepted" in watched.stderr, watched.stderr
    assert phone.id not in hub.devices() and not (state / "phones.json").exists()

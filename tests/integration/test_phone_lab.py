"""A phone as carrier on the provisioned lab (tests/integration/conftest.py):
node2 is the hub. `meshstead invite phone` opens the window on it over
Ansible; the "phone" is Debian's Syncthing in a bare network namespace on the
lab's LAN with a site address, as a phone on a node's access point has, set
up as the person sets up the app: the hub's device ID read from the PNG by
zbarimg, the address the command printed, introducer on. The hub accepts it,
a file from the phone arrives in the hub's carrier folder, and provisioning
the site again changes nothing and keeps the phone, also when the syncthing
role writes config.xml anew. The phone is removed at the end, so the lab's
other tests meet the site as provisioned."""

import json
import shutil
import subprocess
import time

import pytest

from tests import syncthingconf
from tests.conftest import run_cli
from tests.integration.test_join_lab import free_site_address
from tests.labhelpers import changed_tasks, last_recap, sh, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.lab]

HUB = "node2"
CARRIER = "/var/lib/syncthing/nncp-carrier"
GUI = "127.0.0.1:8385"


class Phone:
    """Syncthing in a namespace of its own: its REST API is on that namespace's loopback."""

    def __init__(self, netns: str, home, log):
        self.netns, self.home = netns, home
        env = {"STNOUPGRADE": "1", "STNODEFAULTFOLDER": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(home)}  # Syncthing refuses to start without a HOME
        subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
                       env=env, capture_output=True, check=True, timeout=60)
        self.key = syncthingconf.confine(home, GUI, reconnectionIntervalS="5")
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "syncthing", "serve", f"--home={home}",
                                      "--no-browser", "--no-restart"], env=env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: self.api("GET", "/rest/system/status"), 30, 0.5), "the phone's Syncthing is silent"
        self.id = self.api("GET", "/rest/system/status")["myID"]

    def api(self, method: str, path: str, body=None):
        argv = ["ip", "netns", "exec", self.netns, "curl", "-sf", "-X", method, "-H", f"X-API-Key: {self.key}",
                f"http://{GUI}{path}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def hub_phones(lab) -> dict:
    listed = sh(lab, HUB, "meshstead-join phone list")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def hub_config(lab) -> str:
    return sh(lab, HUB, "cat /var/lib/syncthing/.config/syncthing/config.xml").stdout


def provision(lab_site, *args) -> dict:
    started = time.monotonic()
    done = run_cli("provision", "--site", lab_site["dir"], *args, env=lab_site["env"], timeout=1800)
    print(f"provision {' '.join(args)}: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:]
    return last_recap(lab_site["env"])


@pytest.fixture(scope="module")
def phone(lab_site, tmp_path_factory):
    if shutil.which("zbarimg") is None or shutil.which("curl") is None:
        pytest.skip("needs zbarimg (zbar-tools) and curl")
    base = tmp_path_factory.mktemp("phone")
    netns = lab_site["lab"].attach_probe("phone", str(free_site_address(lab_site["site"], 3)))
    with open(base / "phone.log", "wb") as log:
        made = Phone(netns, base / "home", log)
        try:
            yield made
        finally:
            made.stop()
            print((base / "phone.log").read_text(errors="replace")[-2000:])


def test_a_phone_carries_the_carrier_folder_of_the_hub(lab_site, phone, tmp_path):
    lab, env, directory = lab_site["lab"], lab_site["env"], lab_site["dir"]
    # The site as provisioned (this module runs before the joins change the
    # inventory): the provision after the phone's visit has nothing to change
    # but what the phone might have.
    assert sh(lab, HUB, "systemctl is-enabled meshstead-phones.service").stdout.strip() == "enabled"
    assert sh(lab, HUB, "stat -c '%U %a' /var/lib/meshstead/phones").stdout.split() == ["syncthing", "750"]
    assert sh(lab, "node1", "test -e /etc/systemd/system/meshstead-phones.service").returncode == 1  # hubs only

    started = time.monotonic()
    out = tmp_path / "qr"
    opened = run_cli("invite", "phone", "--expires", "10m", "--out", out, "--site", directory, env=env, timeout=600)
    print(f"invite phone (window opened on {HUB}): {time.monotonic() - started:.1f} s")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    hub_id = lab_site["site"].nodes[HUB].public["syncthing_device_id"]
    assert hub_id in opened.stdout.splitlines()
    address = next(w for line in opened.stdout.splitlines() for w in line.split() if w.startswith("tcp://"))
    window = hub_phones(lab)["window"]
    assert window["open"] and window["phones"] == 1 and window["folders"] == ["nncp-carrier"]
    assert sh(lab, HUB, "systemctl is-active meshstead-phones.service").stdout.strip() == "active"

    # The person: scan, type the address, introducer on, add.
    scanned = subprocess.run(["zbarimg", "--raw", "-q", str(out / f"{HUB}-phone.png")], capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
    assert scanned == hub_id
    phone.api("POST", "/rest/config/devices", {"deviceID": scanned, "name": HUB, "introducer": True,
                                               "addresses": [address.rstrip(".")]})
    accepted = wait_for(lambda: [p for p in hub_phones(lab)["phones"] if p["id"] == phone.id], 90)
    assert accepted, sh(lab, HUB, "journalctl -u meshstead-phones -n 30 --no-pager").stdout
    print(f"phone accepted: {time.monotonic() - started:.1f} s")
    assert wait_for(lambda: sh(lab, HUB, "systemctl is-active meshstead-phones.service").stdout.strip()
                    == "inactive", 30), "the watcher did not end with its window (one phone)"
    name = "phone-" + phone.id.replace("-", "")[:8]
    assert f'<device id="{phone.id}" name="{name}"' in hub_config(lab)

    # Accepting the folder the hub offers, and a packet on the phone.
    assert wait_for(lambda: (phone.api("GET", "/rest/cluster/pending/folders") or {}).get("nncp-carrier"), 90)
    carried = phone.home.parent / "carrier"
    carried.mkdir()
    phone.api("POST", "/rest/config/folders", {"id": "nncp-carrier", "label": "NNCP carrier", "path": str(carried),
                                               "fsWatcherDelayS": 1, "devices": [{"deviceID": hub_id}]})
    token = f"carried-{time.time_ns()}"
    (carried / "from-the-phone").write_text(token)
    arrived = wait_for(lambda: token in sh(lab, HUB, f"cat {CARRIER}/from-the-phone 2>/dev/null").stdout, 120)
    assert arrived, sh(lab, HUB, "journalctl -u syncthing@syncthing -n 30 --no-pager").stdout
    print(f"file from the phone on {HUB}: {time.monotonic() - started:.1f} s")
    # Provisioning again changes nothing, on the hub and on the nodes it introduced the phone to.
    rows = provision(lab_site)
    assert all(r.changed == 0 and r.failed == 0 for r in rows.values()), (rows, changed_tasks(lab_site["env"]))
    # A config.xml written anew by the role (the site's rendering changed) keeps the phone and its share.
    sh(lab, HUB, "rm /etc/syncthing/config.xml")
    rows = provision(lab_site, "--limit", HUB, "--", "--tags", "syncthing")
    assert rows[HUB].changed >= 1
    config = hub_config(lab)
    assert f'<device id="{phone.id}" name="{name}"' in config
    folder = config[config.index('<folder id="nncp-carrier"'):]
    assert f'<device id="{phone.id}"' in folder[:folder.index("</folder>")]
    assert provision(lab_site, "--limit", HUB)[HUB].changed == 0, changed_tasks(lab_site["env"])

    # The hub introduced the phone to the nodes (hubs are their introducers), and the nodes
    # to the phone (whose person turned Introducer on): it can carry to them without the hub.
    node1_id = lab_site["site"].nodes["node1"].public["syncthing_device_id"]
    met = wait_for(lambda: node1_id in {d["deviceID"] for d in phone.api("GET", "/rest/config/devices") or []}
                   and f'<device id="{phone.id}"' in sh(lab, "node1", "cat /var/lib/syncthing/.config/syncthing/"
                                                                      "config.xml").stdout, 90)
    assert met, "the hub did not introduce the phone and node1 to each other"
    (carried / "from-the-phone").unlink()  # the carrier folder is NNCP's: leave nothing of ours in it
    assert wait_for(lambda: sh(lab, HUB, f"test -e {CARRIER}/from-the-phone").returncode == 1, 60)

    # Out again: the hub forgets it, and the site is as the other tests expect.
    removed = run_cli("invite", "phone", "--remove", phone.id, "--site", directory, env=env, timeout=600)
    assert removed.returncode == 0 and f"removed {phone.id}" in removed.stdout, removed.stdout + removed.stderr
    assert hub_phones(lab)["phones"] == []
    assert wait_for(lambda: phone.id not in hub_config(lab), 30), "Syncthing kept the removed phone in config.xml"
    listed = run_cli("invite", "phone", "--list", "--json", "--site", directory, env=env, timeout=600)
    assert listed.returncode == 0 and json.loads(listed.stdout)["phones"] == []

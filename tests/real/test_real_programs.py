"""The identities the wizard generates, checked by the real programs that use them:
yggdrasil 0.4, syncthing 1.19, nncp 8.8, tinc 1.0, ssh-keygen, ansible."""

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from realkit import NODES, SYNCTHING_DIR, need, tree_digest

from tests import syncthingconf

pytestmark = pytest.mark.real


def run(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 60,
        check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {result.returncode}\n"
                             f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Yggdrasil ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NODES)
def test_yggdrasil_derives_the_stored_address_and_subnet(real_site, name):
    need("yggdrasil")
    conf = real_site.exports[name] / "etc/yggdrasil/yggdrasil.conf"
    facts = real_site.facts[name]
    address = run(["yggdrasil", "-useconffile", conf, "-address"]).stdout.strip()
    subnet = run(["yggdrasil", "-useconffile", conf, "-subnet"]).stdout.strip()
    assert ipaddress.IPv6Address(address) == ipaddress.IPv6Address(facts["yggdrasil_address"])
    assert ipaddress.IPv6Network(subnet) == ipaddress.IPv6Network(facts["yggdrasil_subnet"])


@pytest.mark.parametrize("name", NODES)
def test_yggdrasil_accepts_the_config(real_site, name):
    need("yggdrasil")
    conf = real_site.exports[name] / "etc/yggdrasil/yggdrasil.conf"
    run(["yggdrasil", "-useconffile", conf, "-normaliseconf"])
    normal = json.loads(run(["yggdrasil", "-useconffile", conf, "-normaliseconf", "-json"]).stdout)
    ours = json.loads(conf.read_text())
    assert normal["PrivateKey"] == ours["PrivateKey"]
    # No PublicKey on purpose (0.5 dropped it; 0.4 derives it): normaliseconf fills in a random one, unused.
    # The role's private network: every other node of the site, and only those.
    others = sorted(real_site.facts[n]["yggdrasil_public_key"] for n in NODES if n != name)
    assert sorted(normal["AllowedPublicKeys"]) == others
    assert normal["IfName"] == "ygg0" and normal["NodeInfoPrivacy"] is True


# --- Syncthing ---------------------------------------------------------------------------------------------

def _syncthing_home(real_site, name: str, tmp_path: Path) -> Path:
    home = tmp_path / f"st-{name}"
    home.mkdir()
    for pem in ("cert.pem", "key.pem"):
        shutil.copy2(real_site.exports[name] / SYNCTHING_DIR / pem, home / pem)
    run(["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
        env=real_site.env, timeout=60)
    for pem in ("cert.pem", "key.pem"):
        assert (home / pem).read_bytes() == (real_site.exports[name] / SYNCTHING_DIR / pem).read_bytes(), \
            f"syncthing generate replaced {pem}"
    return home


def _loopback_only(home: Path, gui_port: int, listen_port: int) -> str:
    """Confine the instance to loopback (no discovery, relays, NAT, reporting); return the API key."""
    return syncthingconf.confine(home, f"127.0.0.1:{gui_port}", f"tcp://127.0.0.1:{listen_port}", startBrowser="false")


@pytest.mark.parametrize("name", ["n2"])
def test_syncthing_reports_the_stored_device_id(real_site, name, tmp_path):
    need("syncthing")
    home = _syncthing_home(real_site, name, tmp_path)
    expected = real_site.facts[name]["syncthing_device_id"]
    assert run(["syncthing", "serve", "--device-id", f"--home={home}"], env=real_site.env).stdout.strip() == expected
    config_ids = [d.get("id") for d in ET.parse(home / "config.xml").getroot().iter("device")]  # noqa: S314
    assert expected in config_ids

    # The running daemon loads key.pem with cert.pem (a TLS key pair) and reports the same ID.
    gui_port, listen_port = free_port(), free_port()
    api_key = _loopback_only(home, gui_port, listen_port)
    log = open(tmp_path / "syncthing.log", "wb")  # noqa: SIM115 - closed in the finally
    proc = subprocess.Popen(["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart",
                             f"--gui-address=127.0.0.1:{gui_port}"], env={**real_site.env, "STNODEFAULTFOLDER": "1"},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        status, deadline, last = None, time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None:
            request = urllib.request.Request(f"http://127.0.0.1:{gui_port}/rest/system/status",
                                             headers={"X-API-Key": api_key})
            try:
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                    status = json.load(response)
                    break
            except OSError as exc:
                last = exc
                time.sleep(0.2)
        assert status is not None, (f"syncthing REST did not answer ({last}; exit {proc.poll()}):\n"
                                    f"{(tmp_path / 'syncthing.log').read_text()[-3000:]}")
        assert status["myID"] == expected
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# --- NNCP --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NODES)
def test_nncp_accepts_each_config(real_site, name):
    need("nncp-cfgmin", "nncp-stat")
    cfg = real_site.exports[name] / "etc/nncp.hjson"
    others = sorted(set(NODES) - {name})
    stat = run(["nncp-stat", "-cfg", cfg]).stdout.split()
    assert set(others) <= set(stat), stat
    minimal = run(["nncp-cfgmin", "-cfg", cfg]).stdout
    for other in others:
        assert real_site.facts[other]["nncp_id"] in minimal
        assert real_site.facts[other]["nncp_exchpub"] in minimal


def test_nncp_file_travels_through_a_shared_directory(real_site, tmp_path):
    need("nncp-file", "nncp-xfer", "nncp-toss")
    a, b = real_site.nncp["n2"] / "etc/nncp.hjson", real_site.nncp["n3"] / "etc/nncp.hjson"
    payload = tmp_path / "hello.bin"
    payload.write_bytes(os.urandom(4096) + b"meshstead\n")
    shared = tmp_path / "carrier"
    shared.mkdir()
    run(["nncp-file", "-quiet", "-cfg", a, payload, "n3:hello.bin"])
    run(["nncp-xfer", "-quiet", "-cfg", a, "-mkdir", "-tx", shared])
    packets = [p for p in shared.rglob("*") if p.is_file()]
    dst, src = real_site.facts["n3"]["nncp_id"], real_site.facts["n2"]["nncp_id"]
    assert packets and all(p.relative_to(shared).parts[:2] == (dst, src) for p in packets), packets
    run(["nncp-xfer", "-quiet", "-cfg", b, "-rx", shared])
    run(["nncp-toss", "-quiet", "-cfg", b])
    received = real_site.nncp["n3"] / "incoming" / "n2" / "hello.bin"
    assert received.is_file(), f"nothing in {received.parent}"
    assert received.read_bytes() == payload.read_bytes()


# --- SSH ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NODES)
def test_ssh_host_key_fingerprint_and_private_half(real_site, name):
    need("ssh-keygen")
    ssh = real_site.exports[name] / "etc/ssh"
    facts = real_site.facts[name]
    line = run(["ssh-keygen", "-l", "-f", ssh / "ssh_host_ed25519_key.pub"]).stdout.split()
    assert line[1] == facts["ssh_host_ed25519_fingerprint"]
    assert line[-1] == "(ED25519)"
    assert oct((ssh / "ssh_host_ed25519_key").stat().st_mode & 0o777) == oct(0o600)  # ssh-keygen refuses others
    derived = run(["ssh-keygen", "-y", "-f", ssh / "ssh_host_ed25519_key"]).stdout.split()[:2]
    assert derived == facts["ssh_host_ed25519_public_key"].split()[:2]
    known = (real_site.directory / "known_hosts").read_text()
    assert " ".join(derived) in known


# --- Ansible -----------------------------------------------------------------------------------------------

def test_ansible_reads_the_site_and_its_vaults(real_site, tmp_path):
    need("ansible-inventory", "ansible-vault", "ansible")
    env = {**real_site.env, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
           "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    password = real_site.password_file
    inventory = json.loads(run(["ansible-inventory", "-i", real_site.directory / "hosts.yml",
                                "--vault-password-file", password, "--list"], env=env, cwd=tmp_path).stdout)
    hostvars = inventory["_meta"]["hostvars"]
    assert set(hostvars) == set(NODES)
    assert inventory["hubs"]["hosts"] == ["hub1"]
    for name in NODES:
        assert hostvars[name]["node_mesh_ipv4"] == real_site.facts[name]["node_mesh_ipv4"]
        assert hostvars[name]["vault_tinc_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    # Templated through Ansible itself: the visible name resolves to the vaulted PEM.
    adhoc = run(["ansible", "n2", "-i", real_site.directory / "hosts.yml", "--vault-password-file", password,
                 "-m", "debug", "-a", "var=tinc_private_key"],
                env={**env, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
                cwd=tmp_path)
    assert adhoc.stdout.startswith("n2 | SUCCESS => "), adhoc.stdout
    pem = json.loads(adhoc.stdout.split("=>", 1)[1])["tinc_private_key"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----") and pem.rstrip().endswith("-----END RSA PRIVATE KEY-----")
    assert (real_site.exports["n2"] / "etc/tinc" / real_site.settings["site_name"] / "rsa_key.priv").read_text() == pem

    plain = run(["ansible-vault", "view", "--vault-password-file", password,
                 real_site.directory / "host_vars" / "n2" / "vault.yml"], env=env, cwd=tmp_path).stdout
    assert "vault_tinc_private_key" in plain and "vault_ssh_host_ed25519_private_key" in plain


# --- Idempotence and a wrong vault password ----------------------------------------------------------------

def test_reruns_change_nothing_and_a_wrong_password_fails_cleanly(real_site, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(real_site.directory, site, symlinks=True)
    before = tree_digest(site)
    password_before = real_site.password_file.read_bytes()

    result = real_site.cli("init", str(site), "--defaults")
    assert tree_digest(site) == before, result.stdout
    real_site.cli("init", str(site), "--defaults", "--set", f"admin_ssh_key={real_site.admin_key}")
    assert tree_digest(site) == before
    again = real_site.cli("node", "add", "n2", "--site", str(site), check=False)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == [again.stderr.strip()] and "name:" in again.stderr
    assert tree_digest(site) == before

    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-site-password\n")
    export_dir = tmp_path / "export"
    attempts = [
        ("init", str(site), "--defaults", "--vault-password-file", str(wrong)),
        ("node", "add", "n4", "--site", str(site), "--vault-password-file", str(wrong)),
        ("identity", "export", "n2", "--dir", str(export_dir), "--site", str(site),
         "--vault-password-file", str(wrong)),
    ]
    for args in attempts:
        failed = real_site.cli(*args, check=False)
        assert failed.returncode == 2, (args, failed.returncode, failed.stderr)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1, failed.stderr
        assert lines[0].startswith("meshstead: error: ") and "vault.yml" in lines[0], lines[0]
        assert "Traceback" not in failed.stderr + failed.stdout
        assert tree_digest(site) == before, args
    # The same through $MESHSTEAD_VAULT_PASSWORD_FILE.
    failed = real_site.cli("node", "add", "n4", "--site", str(site), check=False,
                           env={**real_site.env, "MESHSTEAD_VAULT_PASSWORD_FILE": str(wrong)})
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1 and "vault.yml" in failed.stderr
    assert not export_dir.exists()
    assert tree_digest(site) == before
    assert real_site.password_file.read_bytes() == password_before


# --- tinc: three nodes in network namespaces ---------------------------------------------------------------

class Netns:
    """A switch namespace with a bridge and one namespace per host; removed in cleanup()."""

    def __init__(self, tag: str):
        self.tag = tag
        self.switch = f"{tag}-sw"
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def ip(self, *args: str) -> None:
        run(["ip", *args], timeout=20)

    def create_switch(self) -> None:
        self.ip("netns", "add", self.switch)
        self.names.append(self.switch)
        self.ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self.ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, ns: str, index: int, cidr: str) -> None:
        self.ip("netns", "add", ns)
        self.names.append(ns)
        port = f"p{index}"
        self.ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
        self.ip("-n", ns, "link", "set", "eth0", "up")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for ns in reversed(self.names):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def ping(ns: str, address: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True, timeout=10).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def test_tinc_mesh_of_hub_and_two_nodes(real_site, tmp_path, request):
    need("tincd", "ip", "ping")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not Path("/dev/net/tun").exists():
        pytest.skip("no /dev/net/tun")
    net = real_site.settings["site_name"]
    prefix = ipaddress.ip_network(real_site.settings["site_mesh_ipv4_net"]).prefixlen
    lab = Netns(f"mst-{os.getpid()}")
    request.addfinalizer(lab.cleanup)
    lab.create_switch()
    hosts = {name: f"{lab.tag}-{name}" for name in NODES}
    for index, name in enumerate(NODES):
        lab.add_host(hosts[name], index, f"{real_site.facts[name]['node_mesh_ipv4']}/{prefix}")

    logs, interfaces = {}, {}
    for name in NODES:  # the hub first: the others ConnectTo it
        confdir = real_site.exports[name] / "etc/tinc" / net
        conf = (confdir / "tinc.conf").read_text()
        assert f"Name = {name}" in conf
        interface = next(line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("Interface"))
        assert len(interface) <= 15, interface
        interfaces[name] = interface
        assert os.access(confdir / "tinc-up", os.X_OK)
        logs[name] = tmp_path / f"tinc-{name}.log"
        lab.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", hosts[name], "tincd", "-n", net, f"--config={confdir}", "-D", "-d", "2",
             f"--pidfile={tmp_path / f'tinc-{name}.pid'}", f"--logfile={logs[name]}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        if name == "hub1":
            time.sleep(0.3)

    def diagnostics() -> str:
        return "\n".join(f"--- {n}\n{logs[n].read_text()[-2000:] if logs[n].exists() else '(no log)'}" for n in NODES)

    deadline = time.monotonic() + 30
    pairs = [("n2", "n3"), ("n3", "n2"), ("n2", "hub1"), ("hub1", "n3")]
    for src, dst in pairs:
        address = real_site.facts[dst]["node_overlay_ipv4"]
        assert ping(hosts[src], address, deadline), f"{src} cannot reach {dst} at {address} over tinc\n{diagnostics()}"
        assert all(p.poll() is None for p in lab.procs), diagnostics()
    v6 = real_site.facts["n3"]["node_overlay_ipv6"]
    assert ping(hosts["n2"], v6, deadline), f"n2 cannot reach n3 at {v6}\n{diagnostics()}"
    # tinc-up put the overlay addresses on the interface tinc.conf names.
    for name in NODES:
        shown = run(["ip", "-n", hosts[name], "-o", "addr", "show", "dev", interfaces[name]]).stdout
        assert f" {real_site.facts[name]['node_overlay_ipv4']}/" in shown, shown

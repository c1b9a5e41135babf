"""Phones as carriers (docs/invites.md, "Phones"): a hub lets Syncthing
devices in during a window, shares the carrier folder with them, and keeps
them.

Syncthing has no auto-accept for devices: one it does not know is refused
and listed as pending (`GET /rest/cluster/pending/devices`, with the time of
its last try). While a window is open, `watch` adds every device that tried
inside it (`POST /rest/config/devices`), named phone-<first 8 characters of
its ID>, shares the window's folders with it (`PUT
/rest/config/folders/<id>`) and records it, the record first. After the
window, or once it has let in as many phones as it was opened for, no device
is accepted. Accepted phones stay: the syncthing role reads the record and
writes its devices into every config.xml it writes; `remove` takes one out.

The state directory (the syncthing account's, since the watcher talks to
Syncthing with the API key of its config.xml):

    window.json   the open (or last) window: opened, until, folders, how many
                  phones, the ones accepted, the site's own devices (never
                  taken for a phone)
    phones.json   every accepted phone: {"format": 1, "devices": [{id, name,
                  folders, accepted, announced, address}]}
    lock          held while a window or the record changes
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

from .state import write_atomic

STATE = Path("/var/lib/meshstead/phones")
SYNCTHING_CONFIG = Path("/var/lib/syncthing/.config/syncthing/config.xml")
KIT = Path("/etc/meshstead/join/kit")
HUB_STATE = Path("/var/lib/meshstead/join-hub")
WINDOW = "window.json"
RECORD = "phones.json"
LOCK = "lock"
CARRIER = "nncp-carrier"
FORMAT = 1
DEVICE_ID = re.compile(r"^([A-Z2-7]{7}-){7}[A-Z2-7]{7}$")
FOLDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PHONES = 50
MAX_SECONDS = 30 * 86400
EVENTS = "DeviceRejected,PendingDevicesChanged"
WAIT = 30  # longest wait for Syncthing's events before the pending list is read again
RETRY = 2  # seconds between tries while Syncthing does not answer (a restart)


class PhoneError(Exception):
    """One line for the person: what is wrong and what was expected."""


def phone_name(device_id: str) -> str:
    return "phone-" + device_id.replace("-", "")[:8]


def timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text) -> float | None:
    """Syncthing's RFC 3339 times (`2026-12-03T21:11:29Z`, or with nanoseconds
    and an offset), as unix seconds; None for anything else."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", str(text or ""))
    if not match:
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        moment = datetime.datetime.fromisoformat(match.group(1) + zone)
    except ValueError:
        return None
    return moment.timestamp() + float("0." + (match.group(2) or "0"))


class Syncthing:
    """Syncthing's REST API on loopback, with the address and API key of its
    own config.xml (the syncthing role's key is derived on the controller;
    the node reads it where Syncthing does)."""

    def __init__(self, config: Path, timeout: float = 10):
        try:
            root = ET.parse(config).getroot()  # noqa: S314 - Syncthing's own config, not a stranger's XML
        except (OSError, ET.ParseError) as exc:
            raise PhoneError(f"cannot read Syncthing's configuration {config}: {exc}") from None
        gui = root.find("gui")
        address = gui.findtext("address", "").strip() if gui is not None else ""
        self.key = gui.findtext("apikey", "").strip() if gui is not None else ""
        if gui is None or not self.key or not address:
            raise PhoneError(f"{config} has no GUI address or API key; expected a config.xml the syncthing role "
                             "wrote")
        if gui.get("tls", "false") == "true":
            raise PhoneError(f"{config}: the GUI uses TLS; expected plain HTTP on loopback (the syncthing role's)")
        host = address.rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise PhoneError(f"{config}: the GUI listens on {address}; expected a loopback address")
        self.base = f"http://{address}"
        self.timeout = timeout
        self.config = config

    def call(self, method: str, path: str, body=None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,  # noqa: S310 - http, loopback
                                         headers={"X-API-Key": self.key, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310 - loopback
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def my_id(self) -> str:
        return self.call("GET", "/rest/system/status")["myID"]

    def devices(self) -> set[str]:
        return {d["deviceID"] for d in self.call("GET", "/rest/config/devices")}

    def folder(self, folder_id: str) -> dict | None:
        try:
            return self.call("GET", f"/rest/config/folders/{urllib.parse.quote(folder_id, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def pending(self) -> dict:
        return self.call("GET", "/rest/cluster/pending/devices") or {}

    def add(self, device_id: str, name: str) -> None:
        # No address: the phone dials the hub (discovery is off on the site's nodes).
        self.call("POST", "/rest/config/devices", {
            "deviceID": device_id, "name": name, "addresses": ["dynamic"], "compression": "metadata",
            "introducer": False, "autoAcceptFolders": False, "paused": False})

    def share(self, folder_id: str, device_id: str) -> None:
        folder = self.folder(folder_id)
        if folder is None:
            raise PhoneError(f"Syncthing has no folder {folder_id}")
        if device_id not in {d["deviceID"] for d in folder.get("devices") or []}:
            folder["devices"] = [*(folder.get("devices") or []), {"deviceID": device_id}]
            self.call("PUT", f"/rest/config/folders/{urllib.parse.quote(folder_id, safe='')}", folder)

    def remove(self, device_id: str) -> bool:
        """Syncthing takes the device out of every folder with it (1.19
        answers 200 for a device it does not have: that is looked up first)."""
        if device_id not in self.devices():
            return False
        self.call("DELETE", f"/rest/config/devices/{device_id}")
        return True

    def events(self, since: int, timeout: float) -> list:
        """The events that tell of a refused device, after `since`; waits up to `timeout` s."""
        query = urllib.parse.urlencode({"events": EVENTS, "since": since, "timeout": max(0, int(timeout))})
        return self.call("GET", f"/rest/events?{query}", timeout=timeout + 10) or []


@dataclass
class Accepted:
    id: str
    name: str
    folders: list
    address: str
    announced: str


class Phones:
    def __init__(self, directory: Path = STATE):
        self.directory = Path(directory)

    @contextlib.contextmanager
    def locked(self):
        path = self.directory / LOCK
        if not path.exists():
            self._own(path, b"", 0o640)
        with open(path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _own(self, path: Path, data: bytes, mode: int) -> None:
        """Write whole; a file root writes belongs to the directory's owner (the watcher's account)."""
        write_atomic(path, data, mode)
        if os.geteuid() == 0:
            st = self.directory.stat()
            os.chown(path, st.st_uid, st.st_gid)

    def _read(self, name: str) -> dict | None:
        try:
            data = json.loads((self.directory / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PhoneError(f"cannot read {self.directory / name}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PhoneError(f"{self.directory / name} is not format {FORMAT}; expected one this package wrote")
        return data

    def _write(self, name: str, data: dict) -> None:
        self._own(self.directory / name, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), 0o640)

    def window(self) -> dict | None:
        return self._read(WINDOW)

    def record(self) -> list[dict]:
        data = self._read(RECORD)
        return list(data["devices"]) if data else []

    def _write_record(self, devices: list[dict]) -> None:
        self._write(RECORD, {"format": FORMAT, "devices": sorted(devices, key=lambda d: d["id"])})

    @staticmethod
    def is_open(window: dict | None, now: float) -> bool:
        return bool(window) and now < window["until"] and len(window["accepted"]) < window["phones"]

    def open(self, api: Syncthing, seconds: int, phones: int, folders: list[str], now: float,
             nodes: set[str]) -> dict:
        """Open a window of `seconds` from `now` (the hub's clock) for up to
        `phones` phones, after checking that Syncthing answers and has the
        folders. `nodes` are the site's own device IDs, never taken for a phone."""
        if not 0 < seconds <= MAX_SECONDS:
            raise PhoneError(f"seconds: {seconds} is not from 1 to {MAX_SECONDS} (30 days)")
        if not 0 < phones <= MAX_PHONES:
            raise PhoneError(f"phones: {phones} is not from 1 to {MAX_PHONES}")
        bad = [f for f in folders if not FOLDER_ID.match(f)]
        if bad or not folders:
            raise PhoneError(f"folder: {bad[0] if bad else 'none given'}; expected a Syncthing folder ID")
        try:
            device_id = api.my_id()
            missing = [f for f in folders if api.folder(f) is None]
        except (OSError, ValueError, KeyError) as exc:
            raise PhoneError(f"Syncthing does not answer at {api.base} ({exc}); expected it running "
                             "(systemctl status syncthing@syncthing)") from None
        if missing:
            raise PhoneError(f"folder: Syncthing here has no folder {missing[0]}; expected one of the site's "
                             "folders (site_syncthing_folders)")
        window = {"format": FORMAT, "opened": int(now), "until": int(now) + seconds, "phones": phones,
                  "folders": list(dict.fromkeys(folders)), "accepted": [], "nodes": sorted(nodes)}
        with self.locked():
            self._write(WINDOW, window)
        return {"device_id": device_id, "opened": timestamp(window["opened"]), "until": timestamp(window["until"]),
                "phones": phones, "folders": window["folders"], "listen": self._listen(api)}

    @staticmethod
    def _listen(api: Syncthing) -> list[str]:
        try:
            return list(api.call("GET", "/rest/config/options").get("listenAddresses") or [])
        except (OSError, ValueError, AttributeError):
            return []

    def close(self, now: float) -> bool:
        with self.locked():
            window = self.window()
            if not self.is_open(window, now):
                return False
            window["until"] = int(now)
            self._write(WINDOW, window)
        return True

    def step(self, api: Syncthing, now: float) -> list[Accepted]:
        """Accept the devices that tried inside the open window, up to its
        count; nothing once it is closed."""
        accepted = []
        with self.locked():
            window = self.window()
            if not self.is_open(window, now):
                return []
            pending = api.pending()
            known = api.devices() | set(window["nodes"])
            tried = []
            for device_id, info in pending.items():
                at = parse_time((info or {}).get("time"))
                if DEVICE_ID.match(device_id) and device_id not in known and at is not None \
                        and window["opened"] <= at < window["until"]:
                    tried.append((at, device_id, info))
            record = self.record()
            for _at, device_id, info in sorted(tried)[:window["phones"] - len(window["accepted"])]:
                phone = Accepted(device_id, phone_name(device_id), list(window["folders"]),
                                 str(info.get("address") or ""), str(info.get("name") or "")[:64])
                # The record first: a phone recorded but not yet added is added by the next
                # provision; one added but not recorded would be dropped by it.
                record = [d for d in record if d["id"] != device_id] + [{
                    "id": phone.id, "name": phone.name, "folders": phone.folders, "accepted": timestamp(now),
                    "announced": phone.announced, "address": phone.address}]
                self._write_record(record)
                window["accepted"].append(device_id)
                self._write(WINDOW, window)
                api.add(phone.id, phone.name)
                for folder in phone.folders:
                    api.share(folder, phone.id)
                accepted.append(phone)
        return accepted

    def remove(self, api: Syncthing | None, device_id: str) -> bool:
        """Take a phone out of the record and out of Syncthing; False if it was in neither."""
        with self.locked():
            record = self.record()
            kept = [d for d in record if d["id"] != device_id]
            if len(kept) != len(record):
                self._write_record(kept)
        removed = api.remove(device_id) if api is not None else False
        return removed or len(kept) != len(record)

    def watch(self, api: Syncthing, clock=time.time, log=print, sleep=time.sleep) -> int:
        """Accept phones until the window closes; 0 then. Syncthing's events
        wake the loop at once; its pending list is what is acted on."""
        since = None
        while True:
            now = clock()
            window = self.window()
            if not self.is_open(window, now):
                if window:
                    log(f"the window for phones is closed ({len(window['accepted'])} of {window['phones']} "
                        f"accepted; it ended {timestamp(min(window['until'], now))})")
                return 0
            try:
                if since is None:
                    # Subscribe first, then read the pending list: no try in between is missed.
                    events = api.events(0, 0)
                    since = events[-1]["id"] if events else 0
                for phone in self.step(api, now):
                    log(f"accepted {phone.name} ({phone.id}, announced as {phone.announced or '-'}, from "
                        f"{phone.address or '-'}); shared {', '.join(phone.folders)}")
                if not self.is_open(self.window(), clock()):
                    continue
                wait = max(1, min(WAIT, self.window()["until"] - clock()))
                events = api.events(since, wait)
                if events:
                    since = events[-1]["id"]
            except (OSError, ValueError, KeyError) as exc:
                log(f"Syncthing does not answer ({exc}); trying again in {RETRY} s")
                since = None
                sleep(RETRY)


def site_devices(kit: Path = KIT, hub_state: Path = HUB_STATE) -> set[str]:
    """The Syncthing device IDs of the site's nodes this hub knows (its kit,
    and the nodes that joined here): a node that has not reached the hub's
    Syncthing yet is pending too, and is no phone. Unreadable parts are left out."""
    ids = set()
    for pattern in (kit / "host_vars").glob("*/node.yml"), (hub_state / "joined").glob("*.yml"):
        for path in pattern:
            with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
                value = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("syncthing_device_id")
                if isinstance(value, str) and DEVICE_ID.match(value):
                    ids.add(value)
    return ids

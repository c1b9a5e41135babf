"""A fresh Syncthing's config.xml for tests: discovery, relays, NAT and
reporting off, so an instance talks only to the peers a test gives it."""

import xml.etree.ElementTree as ET
from pathlib import Path

QUIET = {"globalAnnounceEnabled": "false", "localAnnounceEnabled": "false", "relaysEnabled": "false",
         "natEnabled": "false", "urAccepted": "-1", "crashReportingEnabled": "false", "autoUpgradeIntervalH": "0"}


def confine(home: Path, gui: str, listen: str | None = None, **options: str) -> str:
    """Write QUIET and `options` into home/config.xml (written by `syncthing generate`), the GUI
    address and, if given, the one listen address; return the API key."""
    tree = ET.parse(home / "config.xml")  # noqa: S314 - written by syncthing generate just now
    root = tree.getroot()
    found = root.find("options")
    for key, value in {**QUIET, **options}.items():
        element = found.find(key)
        if element is None:
            element = ET.SubElement(found, key)
        element.text = value
    if listen is not None:
        for element in found.findall("listenAddress"):
            found.remove(element)
        ET.SubElement(found, "listenAddress").text = listen
    root.find("gui").find("address").text = gui
    tree.write(home / "config.xml")
    return root.find("gui").find("apikey").text

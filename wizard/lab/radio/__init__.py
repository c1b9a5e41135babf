"""The radio lab: nodes with simulated Wi-Fi (mac80211_hwsim) and batman-adv.

    lab = RadioLab("demo")
    conns = lab.up([LabNodeSpec("n0", ipv6="fd00:1::1/64"), ...], topology="line")
    lab.link("n0", "n1", up=False)
    lab.down()

One QEMU guest (Debian's stock kernel under TCG) holds one systemd-nspawn node
per spec, each with its own radio as wlan0.  Modules: guestimage (the cached
guest image), guest (QEMU, its disk, tap and SSH), topology (which pairs hear
each other), lab (RadioLab, the Lab API).  guest/ holds the files installed
into the image (units and scripts run inside the guest).
"""

from .lab import RadioLab

__all__ = ["RadioLab"]

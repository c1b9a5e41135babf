#!/bin/sh
# meshstead on Raspberry Pi OS (bookworm): run once, as root, through the
# hook `meshstead image build NODE --base` appended to cmdline.txt, the one
# Raspberry Pi Imager's customisation uses:
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
# It installs, offline, what Raspberry Pi OS lacks and the card carries in
# meshstead-setup/: the node's Debian packages, the pinned Ansible, the
# first-boot program with its unit, the join package. Then it takes the hook
# out of cmdline.txt, deletes itself and the payload, and the system reboots
# into the first boot proper, which takes the seed in meshstead/
# (docs/seed.md).
#
# A power cut before the end leaves the hook in place: the next boot runs
# every step again. A failure never stops the boot (systemd would power off
# after a failed command): it is reported in /var/lib/meshstead/firstboot.json
# and on the console, the hook is taken out, and the node boots as plain
# Raspberry Pi OS.

FIRMWARE=/boot/firmware
SETUP=$FIRMWARE/meshstead-setup
STATE=/var/lib/meshstead
LOG=/var/log/meshstead-firstrun.log
# As wizard/images/raspios.py wrote it (a test holds the two to the same line).
HOOK="systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
POLICY=/usr/sbin/policy-rc.d

say() {
	echo "meshstead firstrun: $*"
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> "$LOG"
}

# cmdline.txt is one line: take the hook's three parameters out, keep the rest.
unhook() {
	sed -i "s# $HOOK##" "$FIRMWARE/cmdline.txt"
	sync
}

fail() {
	message=$(printf '%s' "$1" | tr -d '"\\')
	say "failed: $message (log: $LOG); this boot goes on as plain Raspberry Pi OS"
	mkdir -p "$STATE"
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	printf '{"status": "setup", "node": null, "site_id": null, "seed": null, "started": "%s", "finished": "%s", "duration_s": 0.0, "failed_tasks": [], "error": "firstrun: %s"}\n' \
		"$now" "$now" "$message" > "$STATE/firstboot.json"
	rm -f "$POLICY"
	unhook
	exit 0
}

# The boot partition holds the seed's private keys until the first boot
# scrubs them: root's only from the next mount on, as on meshstead's own images.
private_boot_partition() {
	awk -v mount="$FIRMWARE" '
		$1 !~ /^#/ && $2 == mount && $3 == "vfat" && $4 !~ /umask=/ { $4 = $4 ",umask=0077" }
		{ print }' /etc/fstab > /etc/fstab.meshstead && mv /etc/fstab.meshstead /etc/fstab
}

install_packages() {
	set -- "$SETUP"/debs/*.deb
	[ -e "$1" ] || return 0  # the image had every package already
	# apt orders the carried .debs (and dpkg runs them); it sees no other
	# package source, so it cannot reach for the network. (Not --no-download:
	# apt 2.6 then fails on local .debs, "Pathname to install is not absolute".)
	empty=$(mktemp -d)
	mkdir -p "$empty/partial"
	DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends --no-remove \
		-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$empty" -o Dir::State::Lists="$empty" \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >> "$LOG" 2>&1
	status=$?
	rm -rf "$empty"
	return $status
}

umask 022
say "installing what Raspberry Pi OS lacks, offline, from $SETUP"
[ -f "$SETUP/root.tar" ] && [ -f "$SETUP/venv.sh" ] || fail "$SETUP is missing or incomplete; expected the card as meshstead image build wrote it"
# No service starts while its package installs: the roles configure and start them.
printf '#!/bin/sh\nexit 101\n' > "$POLICY" && chmod 755 "$POLICY" || fail "cannot write $POLICY"
dpkg --configure -a >> "$LOG" 2>&1  # a run cut off by a power cut
install_packages || fail "installing the carried packages failed"
rm -f "$POLICY"
say "making the Ansible virtualenv"
sh "$SETUP/venv.sh" >> "$LOG" 2>&1 || fail "making the Ansible virtualenv failed"
say "installing the first-boot program"
tar -x --no-overwrite-dir -f "$SETUP/root.tar" -C / >> "$LOG" 2>&1 || fail "unpacking root.tar failed"
systemctl enable meshstead-firstboot.service >> "$LOG" 2>&1 || fail "systemctl enable meshstead-firstboot.service failed"
private_boot_partition || fail "cannot make $FIRMWARE root's only in /etc/fstab"
sync
rm -rf "$SETUP"
unhook
rm -f "$FIRMWARE/firstrun.sh"
sync
say "done; rebooting into the first boot"
exit 0

# Two entry points for a fresh Debian 12 machine (run as root):
#   make demo   set up, then build a 3-node site and show it
#   make test   set up, then run every test
VENV ?= .venv
PYTHON ?= python3
# Real programs the tests run and the lab needs on the host.
HOST_PACKAGES = tinc yggdrasil syncthing nncp openssh-client dnsmasq unbound nftables iproute2 \
	iputils-ping mmdebstrap systemd-container apt-utils dpkg-dev arch-test netcat-openbsd \
	zbar-tools dnsutils ca-certificates python3-cryptography python3-yaml \
	qemu-system-x86 qemu-utils e2fsprogs ovmf dosfstools mtools fdisk zstd \
	qemu-user-static qemu-system-arm
DEMO_SITE ?= inventory/demo

.PHONY: setup host-packages demo test lint wheel clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing host packages:" $$missing; \
		for i in 1 2 3; do apt-get update -q && break; sleep 5; done; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 $$missing; \
	fi

setup: host-packages $(VENV)/.installed

demo: setup
	$(VENV)/bin/meshstead demo --site $(DEMO_SITE)

# The tests that boot nothing run on up to four workers (pytest-xdist): they
# mostly wait on a program they started, so one core was idle. The lab,
# integration and vm tests share the lab's network and the CPU their nodes
# need, and run one at a time after them. Both parts run; either failing fails.
PYTEST = PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -q
test: setup
	@status=0; \
	$(PYTEST) -n auto --maxprocesses 4 -m "not (lab or integration or vm)" || status=$$?; \
	$(PYTEST) -m "lab or integration or vm" || status=$$?; \
	exit $$status

lint: setup
	$(VENV)/bin/ruff check wizard tests benchmarks plugins roles setup.py image-builder/files/usr/lib/meshstead/firstboot
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint

# The installable tool: dist/meshstead-*.whl carries the playbooks, roles,
# plugins and ansible.cfg (setup.py copies them into wizard/ansible/).
wheel: setup
	rm -rf build dist
	$(VENV)/bin/pip wheel --no-deps --wheel-dir dist .

clean:
	rm -rf $(VENV) build dist

"""A real site (made by the real command) and a hub serving joins from its kit
on 127.0.0.1, in a thread."""

import subprocess
import threading

import pytest

from tests.conftest import make_site
from tests.join.helpers import make_hub, service
from wizard.identity import node as node_identity


@pytest.fixture(scope="session")
def base_site(tmp_path_factory):
    """hilltop (hub, index 1) and cabin (index 2); the vault password file beside it."""
    root = tmp_path_factory.mktemp("joinsite")
    config = root / "config"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "admin")], check=True)
    site = make_site(root / "site", root / "admin.pub", nodes=("hilltop --role hub", "cabin"),
                     env={"XDG_CONFIG_HOME": str(config)})
    password = next((config / "meshstead" / "vault").glob("*.pass"))
    return site, password


@pytest.fixture(scope="session")
def identities():
    """Public identities of nodes that would join (their private keys are never sent)."""
    return [node_identity.generate(f"new{i}.test.internal")[0] for i in range(3)]


@pytest.fixture
def hub(base_site, tmp_path):
    """The hub's join service on 127.0.0.1, in a thread, stopped after the test."""
    made = make_hub(base_site, tmp_path)
    server = service.serve(made.kit_dir, made.state_dir, made.cert, made.key, ("127.0.0.1", 0))
    made.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)

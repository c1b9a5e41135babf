"""The node files renderer follows the playbook and the roles, not a list of its own."""

from pathlib import Path

import pytest
import yaml

from tests.conftest import make_site
from wizard import sites
from wizard.render.nodefiles import render_node


@pytest.fixture
def ygg_only_site(tmp_path, admin_key):
    return make_site(tmp_path / "valley", admin_key, "overlay=yggdrasil", "services=syncthing",
                     nodes=["hub --role hub", "home"])


def _render(directory: Path, node: str, **kwargs):
    opened = sites.open_site(directory)
    return {str(f.path): f for f in render_node(directory, opened.vault.password, node, **kwargs)}


def test_roles_left_out_by_the_playbook_render_nothing(ygg_only_site):
    files = _render(ygg_only_site, "home")
    # tinc and nncp are not in this site: their roles' `when` in site.yml is false.
    assert not [p for p in files if p.startswith("/etc/tinc") or "nncp" in p]
    assert "/etc/yggdrasil/yggdrasil.conf" in files
    assert any(p.endswith("syncthing/cert.pem") for p in files)
    # The file is the role's template: the hub is a static peer, the node's own key is not allowed.
    conf = yaml.safe_load(files["/etc/yggdrasil/yggdrasil.conf"].content)
    facts = {n: yaml.safe_load((ygg_only_site / f"host_vars/{n}/node.yml").read_text()) for n in ("hub", "home")}
    assert conf["AllowedPublicKeys"] == [facts["hub"]["yggdrasil_public_key"]]
    assert conf["Peers"] == [f"tcp://{facts['hub']['node_mesh_ipv4']}:12345"]


def test_inventory_and_extra_vars_reach_the_templates(ygg_only_site):
    local = ygg_only_site / "host_vars/home/local.yml"
    local.write_text("meshstead_mesh_interface: eth7\n")
    conf = yaml.safe_load(_render(ygg_only_site, "home")["/etc/yggdrasil/yggdrasil.conf"].content)
    assert conf["MulticastInterfaces"][0]["Regex"] == "^eth7$"
    files = _render(ygg_only_site, "home", roles=("yggdrasil",), extra_vars={"yggdrasil_listen_port": 4444})
    assert {f.role for f in files.values()} == {"yggdrasil"}
    assert yaml.safe_load(files["/etc/yggdrasil/yggdrasil.conf"].content)["Listen"] == ["tcp://[::]:4444"]


def test_an_unknown_node_is_one_error(ygg_only_site):
    from wizard.errors import MeshsteadError
    with pytest.raises(MeshsteadError, match="nowhere"):
        _render(ygg_only_site, "nowhere")

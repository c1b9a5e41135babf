"""A generic image: its platform's base with no node in it, which joins the
site by invite at first boot (docs/invites.md, "A generic image").

Its boot partition holds the site's public description (so the node refuses
another site's invite before it touches the network) and a short note for
whoever opens the card on a computer; `--invite` also puts the invite there,
which makes the image a bearer secret until the invite is used."""

import json

from ..errors import MeshsteadError
from ..invites import token, verify
from ..model import Site
from .seed import SEED_DIR

SITE_FILE = "site.json"
INVITE_FILE = "invite.txt"
LOCAL_FILE = "local.yml"  # the node's own settings, as a site's host_vars/<node>/local.yml

NOTE = """\
meshstead: this card joins a site by invite.

Put the invite's text (the .txt that `meshstead invite create` wrote, one
line starting with meshstead1:) here as meshstead/invite.txt, put the card
into the node and power it on. At its first boot the node makes its own
keys, joins through the hub the invite names (it takes an address on eth0 by
DHCP to reach it) and configures itself. The invite is removed from the card
once used. The node's report: /var/lib/meshstead/firstboot.json.

A node on a cable instead of a radio: also put here a file meshstead/local.yml
holding the line
    meshstead_mesh_interface: eth0
"""


def site_description(site: Site) -> dict:
    settings = site.settings
    return {"format": 1, "site_id": settings.site_id, "site_name": settings.name, "domain": settings.domain,
            "site_signing_public_key": settings.signing_public_key}


def invite_grant(site: Site, text: str) -> token.Invite:
    """The invite, checked offline as `invite check` does: a generic image
    never carries an invite its site would refuse."""
    try:
        checked = verify.check(site, text.strip())
    except token.InviteError as exc:
        raise MeshsteadError("invite", f"{exc}; expected a valid invite of this site") from None
    if checked.record and checked.record.used_by:
        raise MeshsteadError("invite", f"invite {checked.invite.id} was used by {checked.record.used_by}; "
                             "expected an unused invite")
    return checked.invite


def files(site: Site, invite: str | None = None, platform: str | None = None) -> dict[str, bytes]:
    """{path on the boot partition: bytes}; `platform`: the base's."""
    described = {**site_description(site), **({"platform": platform} if platform else {})}
    out = {f"{SEED_DIR}/{SITE_FILE}": (json.dumps(described, indent=1) + "\n").encode(),
           f"{SEED_DIR}/README.txt": NOTE.encode()}
    if invite is not None:
        out[f"{SEED_DIR}/{INVITE_FILE}"] = (invite.strip() + "\n").encode()
    return out

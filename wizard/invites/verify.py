"""Checking an invite against a site, offline, from its public inventory alone."""

import base64
import datetime
from dataclasses import dataclass

from ..model import Node, Site
from . import token
from .record import InviteRecord


@dataclass
class Checked:
    invite: token.Invite
    hub: Node | None  # the site's node whose join key the invite pins
    record: InviteRecord | None  # the site's record of it, if this copy of the site made it


def check(site: Site, text: str, now: datetime.datetime | None = None) -> Checked:
    """Raises token.InviteError naming what is wrong; a revoked invite is one."""
    now = now or datetime.datetime.now(datetime.UTC)
    public = base64.b64decode(site.settings.signing_public_key)
    invite = token.decode(text, public, now.timestamp())
    pin = token.b64url(invite.pin)
    hub = next((n for n in site.sorted_nodes() if n.public.get("join_pin") == pin), None)
    record = next((r for r in site.invites if r.id == invite.id), None)
    if record and record.revoked:
        raise token.InviteError("revoked", f"invite {record.id} (for {record.name}) was revoked; expected an "
                                "invite that is not (make a new one)")
    return Checked(invite, hub, record)

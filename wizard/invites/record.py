"""The site's record of the invites it made (group_vars/all/invites.yml):
everything but the secret, so hubs can learn revocations from the inventory."""

import datetime
from dataclasses import MISSING, asdict, dataclass, fields

from ..errors import MeshsteadError

VARIABLE = "site_invites"
STATES = ("unused", "used", "expired", "revoked")


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


@dataclass
class InviteRecord:
    id: str
    name: str
    platform: str
    roles: list[str]
    hub: str
    endpoints: list[str]
    created: str  # UTC, ISO 8601
    expires: str
    revoked: bool = False
    # Filled when the invited node is brought into the inventory (`node import`).
    used_by: str | None = None
    used_at: str | None = None

    def state(self, now: datetime.datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.used_by:
            return "used"
        return "expired" if parse_timestamp(self.expires) <= now else "unused"

    def to_var(self) -> dict:
        return asdict(self)

    @classmethod
    def from_var(cls, raw: dict) -> "InviteRecord":
        """Raises KeyError, ValueError or TypeError on a damaged entry."""
        if not isinstance(raw, dict):
            raise TypeError("an invite is not a mapping")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in raw]
        if missing:
            raise ValueError(f"an invite lacks {', '.join(missing)}")
        names = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in raw.items() if k in names})
        for moment in (record.created, record.expires):
            parse_timestamp(moment)
        return record


def find(records: list[InviteRecord], invite_id: str) -> InviteRecord:
    wanted = invite_id.strip().lower()
    for record in records:
        if record.id == wanted:
            return record
    raise MeshsteadError("id", f"no invite with id {invite_id!r} in this site; expected one of: "
                         f"{', '.join(r.id for r in records) or '(none yet)'}")


def revoke(records: list[InviteRecord], invite_id: str) -> InviteRecord:
    record = find(records, invite_id)
    if record.revoked:
        raise MeshsteadError("id", f"invite {record.id} (for {record.name}) is already revoked; expected an "
                             "invite that is not")
    if record.used_by:
        raise MeshsteadError("id", f"invite {record.id} was used by {record.used_by}; expected an unused invite "
                             "(remove the node instead)")
    record.revoked = True
    return record

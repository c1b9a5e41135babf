#!/usr/bin/python
"""Check the mesh channel against the node's own regulatory database."""

DOCUMENTATION = r"""
module: meshstead_mesh_channel
short_description: Refuse a mesh channel the node's kernel would not let a mesh start on
description:
  - Reads wireless-regdb's regulatory.db as the kernel does and fails, naming
    the variable, when the country's rule for the 20 MHz channel is missing,
    NO-IR or DFS. Changes nothing.
options:
  country: {description: ISO 3166-1 alpha-2 code, or 00 (world), type: str, required: true}
  channel: {description: Channel number (for the message), type: int, required: true}
  frequency: {description: Centre frequency in MHz, type: int, required: true}
  database: {description: The regulatory.db the kernel loads, type: path, default: /lib/firmware/regulatory.db}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.meshstead_regdb import RegdbError, channel_status, domain, parse


def main():
    module = AnsibleModule(
        argument_spec={
            "country": {"type": "str", "required": True},
            "channel": {"type": "int", "required": True},
            "frequency": {"type": "int", "required": True},
            "database": {"type": "path", "default": "/lib/firmware/regulatory.db"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        with open(p["database"], "rb") as db:
            countries = parse(db.read())
    except (OSError, RegdbError) as exc:
        module.fail_json(msg=f"cannot read {p['database']} (package wireless-regdb): {exc}")
    applied = domain(countries, p["country"])
    reason = channel_status(countries, p["country"], p["frequency"])
    if reason:
        module.fail_json(msg=f"mesh_channel {p['channel']} ({p['frequency']} MHz) is not allowed for a mesh "
                             f"in mesh_country {p['country']} (regulatory domain {applied}, {p['database']}): "
                             f"{reason}", domain=applied)
    module.exit_json(changed=False, domain=applied)


if __name__ == "__main__":
    main()

"""Invites: the signed token (token.py, shipped to nodes as it is), its QR
code, and the site's record of the invites it made."""

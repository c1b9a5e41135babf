"""meshstead: turn Raspberry Pis, Debian boxes and OpenWrt routers into nodes of a private mesh."""

__version__ = "0.1.0"

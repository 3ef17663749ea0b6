"""p2psync: keep one folder identical on several devices of a LAN, without a cloud."""

__version__ = "0.1.0"

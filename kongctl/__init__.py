"""kongctl: receive Kong Konnect audit logs on your own machine."""

__version__ = "0.1.0"

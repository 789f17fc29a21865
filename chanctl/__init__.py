"""chanctl: durable, named channels for long-running processes."""

__version__ = "0.1.0"

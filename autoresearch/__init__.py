"""autoresearch: autonomous overnight ML research on one machine."""

__version__ = "0.1.0"

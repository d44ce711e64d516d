"""Edgeward: a secure-by-default mail edge gateway."""

__version__ = "0.1.0"

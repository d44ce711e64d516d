"""Local recipient validation: moved to ``filters.agents.recipient_filter``; these names stay
importable for code and configuration written against this module."""

from __future__ import annotations

from edgeward.filters.agents.recipient_filter import (
    UNKNOWN_USER,
    FileRecipients,
    LocalRecipients,
    read_recipients,
)

__all__ = ["UNKNOWN_USER", "FileRecipients", "LocalRecipients", "read_recipients"]

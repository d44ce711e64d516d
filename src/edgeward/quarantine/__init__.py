"""The quarantine: messages held instead of delivered, until an administrator decides."""

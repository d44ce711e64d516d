"""Anti-virus and file analysis: the MIME walk, archives and the scan engines."""

"""Asyncio adapters that implement the ports of :mod:`edgeward.ports` against real services."""

"""Fakes of the ports in :mod:`edgeward.ports`, shipped with the package for tests of logic.

Each fake passes the same conformance tests as the real adapter (``tests/testing/``), so a test
that uses one exercises the behaviour production code will meet, without a server.
"""

"""Fakes of the ports in :mod:`edgeward.ports`, shipped with the package for tests of logic.

- ``clock.FakeClock``: a :class:`~edgeward.ports.Clock` that moves only when told.
- ``dns.FakeResolver``: a :class:`~edgeward.ports.DnsLookup` over zones held in memory.
- ``policystore.MemoryPolicyStore``: a :class:`~edgeward.ports.PolicyStore` in dictionaries.

Each fake passes the same conformance tests as the real adapter (``tests/testing/``), so a test
that uses one exercises the behaviour production code will meet, without a server. Nothing here
is imported by the gateway itself; ``runtime`` never picks a fake.
"""

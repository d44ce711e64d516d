"""Directory synchronisation (EdgeSync): recipients, accepted domains, groups and users' sender
lists from Active Directory or OpenLDAP, kept in a local replica the gateway reads.

``ldap`` reads the directory safely, ``sync`` turns what it read into a new replica,
``replica`` stores it and serves lookups, ``recipients`` plugs it into the agents.
"""

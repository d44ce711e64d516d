"""Sender authentication: SPF, DKIM, DMARC and ARC checks over the DnsLookup port, and the headers that report them."""

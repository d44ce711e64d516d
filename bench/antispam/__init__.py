"""Helpers of the anti-spam benchmark (``bench/antispam_bench.py``).

``netns`` makes the private network namespace both stacks run in; ``dns`` serves the zones
(nsd) behind the resolver both stacks ask on 127.0.0.1:53 (unbound); ``mail`` makes the
DKIM-signed messages and drives a stack with them from many client addresses; ``postfix_stack``
and ``edgeward_stack`` start the two stacks; ``verify`` proves from the delivered mail and from
probe messages that each stack really ran its checks; ``report`` turns passes into the table.
"""

"""Helpers of the SMTP relay benchmark (``bench/smtp_relay_bench.py``).

``procs`` holds process, port and CPU accounting helpers; ``sink`` wraps Postfix's ``smtp-sink``,
the common downstream; ``postfix`` and ``edgeward`` start and stop the two relays under test;
``load`` drives them with ``smtp-source`` and with an asyncio client that times each transaction.
``floor`` is the minimal Python relay the benchmark can run as a third (``--relays ...,floor``),
and ``floor_relay`` starts and stops it like the other two.
"""

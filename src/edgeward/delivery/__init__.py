"""Outbound delivery: routing (send connectors), the SMTP client, drop folders, results, DSNs.

The queue manager (``edgeward.delivery.manager``) asks ``routing`` for a next hop per recipient
domain and calls a ``dispatch.Deliver`` function for each; ``dsn`` writes the notices it queues.
"""

"""Notifications to administrators: events, per-kind rate limiting, and the channels.

``events`` (the value agents emit), ``limiter`` (one notice per kind per interval, the rest
counted), ``templates``, the channels ``email`` (through the gateway's own queue), ``syslog``
(RFC 5424) and ``webhook`` (signed JSON), ``notifier`` (the queue and the task between them)
and ``build`` (from ``[notify]``).
"""

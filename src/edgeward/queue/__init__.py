"""The durable queue: spool (files and states), schedule (retry arithmetic), and their records.

The queue manager (``delivery.manager``) drives delivery against the ``Spool`` API; the CLI and
the web UI's queue viewer act on the same spool from other processes.
"""

from edgeward.queue.model import MessageRecord, QueueState, RecipientRecord, RecipientStatus
from edgeward.queue.recovery import RecoveryReport
from edgeward.queue.spool import Spool

__all__ = ["MessageRecord", "QueueState", "RecipientRecord", "RecipientStatus", "RecoveryReport", "Spool"]

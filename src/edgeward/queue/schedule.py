"""Retry, expiry and delay-notice arithmetic: pure functions of the configuration and a time.

The policy follows Exchange's Edge Transport defaults (``QueueConfig``):

- after each of the first ``glitch_retry_count`` (4) failed attempts, retry one
  ``glitch_retry_interval`` (1 min) later: a brief outage of the next hop costs minutes;
- then back off exponentially, as Postfix does: ``transient_retry_interval`` (10 min) after the
  next failure, doubling after each further one (20, 40 min ...), capped at
  ``max_retry_interval`` (1 h);
- every interval is capped at ``max_retry_interval`` and never shrinks from one attempt to the
  next, whatever the configuration (so the schedule is monotone by construction);
- after ``expiration`` (2 days) the message is bounced (RFC 5321 §4.5.4.1 asks for at least 4-5
  days; Exchange's 2 days is kept as the edge default because the inside server queues too);
- one delay DSN (RFC 3464 ``action: delayed``) after ``delay_notification`` (4 h), never for the
  null sender (RFC 5321 §6.1, no notifications about notifications), and only for recipients
  whose RCPT NOTIFY asked for DELAY or did not say (RFC 3461 §4.1 leaves the default to the
  server; Exchange sends delay notices by default).
"""

from __future__ import annotations

from edgeward.config.schema import QueueConfig
from edgeward.queue.model import MessageRecord, RecipientStatus

__all__ = ["is_expired", "needs_delay_notice", "next_attempt", "retry_interval"]

# 2**40 times any sane interval is far past any cap; stops float overflow for absurd counts.
_MAX_DOUBLINGS = 40


def retry_interval(cfg: QueueConfig, attempts: int) -> float:
    """Seconds to wait after ``attempts`` completed failed attempts (0 attempts: no wait)."""
    if attempts <= 0:
        return 0.0
    cap = cfg.max_retry_interval
    glitch = min(cfg.glitch_retry_interval, cap)
    if attempts <= cfg.glitch_retry_count:
        return glitch
    doublings = min(attempts - cfg.glitch_retry_count - 1, _MAX_DOUBLINGS)
    # max(glitch, ...): a transient interval configured below the glitch one must not shorten waits.
    return min(max(glitch, cfg.transient_retry_interval * 2.0**doublings), cap)


def next_attempt(cfg: QueueConfig, attempts: int, now: float) -> float:
    """When to try again after ``attempts`` completed failed attempts, the last ending at ``now``."""
    return now + retry_interval(cfg, attempts)


def is_expired(cfg: QueueConfig, received_at: float, now: float) -> bool:
    """True once a message has waited ``expiration`` seconds and must be bounced."""
    return now - received_at >= cfg.expiration


def _wants_delay(notify: tuple[str, ...]) -> bool:
    values = {n.strip().upper() for n in notify}
    if not values:
        return True
    return "DELAY" in values and "NEVER" not in values


def needs_delay_notice(cfg: QueueConfig, record: MessageRecord, now: float) -> bool:
    """True if the one delay DSN of ``record`` is due now."""
    if record.delay_notified or not record.mail_from:
        return False
    if now - record.received_at < cfg.delay_notification or is_expired(cfg, record.received_at, now):
        return False
    waiting = (RecipientStatus.PENDING, RecipientStatus.DEFERRED)
    return any(r.status in waiting and _wants_delay(r.notify) for r in record.recipients)

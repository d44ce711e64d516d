"""The notifier a configuration asks for: its channels built from ``[notify]``.

Called by the composition root (``runtime``) and by ``edgeward notify test``; the e-mail
channel is handed the spool's ``accept`` and the hook that wakes the queue manager.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeward.config.schema import Config
from edgeward.errors import ConfigError
from edgeward.notify.email import Accept, EmailChannel
from edgeward.notify.notifier import Channel, Notifier
from edgeward.notify.syslog import SyslogChannel
from edgeward.notify.templates import Templates
from edgeward.notify.webhook import WebhookChannel, read_key
from edgeward.ports import Clock

__all__ = ["build_notifier", "postmaster"]


def postmaster(config: Config) -> str:
    """The notices' From: the postmaster of the first accepted domain, else of the host."""
    domains = [d for d in config.accepted_domains if d != "*" and not d.startswith("*.")]
    return f"postmaster@{domains[0] if domains else config.server.hostname}"


def build_notifier(
    config: Config,
    accept: Accept | None,
    on_queued: Callable[[str], None] = lambda _msg_id: None,
    *,
    clock: Clock | None = None,
) -> Notifier | None:
    """The configured notifier, or None when ``[notify]`` configures no channel.

    ``accept`` is the spool's; without it (no spool) the e-mail channel is left out. Raises
    ``ConfigError`` for a template folder or key file that cannot be used.
    """
    cfg = config.notify
    if not cfg.any_channel:
        return None
    host = config.server.hostname
    channels: list[Channel] = []
    if cfg.admin_addresses and accept is not None:
        templates = Templates(config.resolve(cfg.templates) if cfg.templates else None)
        channels.append(EmailChannel(
            accept, on_queued, templates, admins=cfg.admin_addresses, sender=postmaster(config),
            hostname=host, interval=cfg.interval, notify_senders=cfg.notify_senders,
        ))  # fmt: skip
    if cfg.syslog.enabled:
        channels.append(SyslogChannel(cfg.syslog, host))
    if cfg.webhook.url:
        if cfg.webhook.key_file is None:
            raise ConfigError("notify.webhook.key_file is required with notify.webhook.url")
        key = read_key(config.resolve(cfg.webhook.key_file))
        channels.append(WebhookChannel(cfg.webhook, host, key, clock=clock))
    return Notifier(channels, interval=cfg.interval, queue_size=cfg.queue_size, clock=clock)

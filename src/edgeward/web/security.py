"""Response headers every page and API answer carries, whatever the handler did.

The console shows text from mail senders, so a missed escape must not become script: the
Content-Security-Policy allows no script at all (the pages have none; no inline script, no
``eval``), styles and images from the console's own origin only, forms posting only back to
it, and no framing (``frame-ancestors 'none'``, with ``X-Frame-Options`` for old browsers).
``nosniff`` keeps a browser from guessing a type into HTML, ``no-referrer`` keeps release
links out of other sites' logs, and ``no-store`` keeps quarantined mail out of caches.
HSTS is sent because the console is served over HTTPS only.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeaders"]

CSP = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware (plain, not BaseHTTPMiddleware: no buffering of the body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message["headers"] = headers + _HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)

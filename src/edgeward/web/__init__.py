"""The web console: quarantine, message tracking, digest release links, REST API, metrics.

``web.app`` builds the FastAPI application; see docs/architecture.md ("Web console").
"""

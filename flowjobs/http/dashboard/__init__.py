"""The web dashboard served by `flowjobs serve` at `/`: server-rendered HTML (Jinja2), no
JavaScript needed. Read-only unless `[dashboard] allow_actions`; protected by HTTP basic auth
(`[dashboard] password`) — required when `serve` listens beyond loopback."""

"""The web dashboard served by `flowjobs serve` at `/`: server-rendered HTML (Jinja2); only the
overview's live refresh uses a small script (templates/live.js), everything else works with
JavaScript off. Read-only unless `[dashboard] allow_actions` (actions behind a confirmation and
a CSRF token); protected by HTTP basic auth (`[dashboard] password`) — required when `serve`
listens beyond loopback."""

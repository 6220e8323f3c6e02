"""The notification emails of spec §10: who receives them (recipients.py), what they say
(compose.py — one small function per task, pure of I/O except reads), and how they look
(Jinja2 templates, plain text and HTML, autoescaped)."""

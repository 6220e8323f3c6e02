"""I/O edges: the Stripe gateway (and, later, the mailer and document storage)."""

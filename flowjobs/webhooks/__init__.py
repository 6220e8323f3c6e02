"""Webhook intake: every incoming event is stored in the inbox first (raw bytes, headers,
signature result), then routed to its handler task with an idempotency key, so the same
event twice makes one run. Sources: Stripe (signed) and Supabase database webhooks."""

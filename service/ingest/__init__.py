"""Measuring: every event source (POST /v1/events, the ESP webhooks, replay) goes through
the one pipeline here: store the raw payload, insert normalized events idempotently,
count what counts, all in the request's transaction."""

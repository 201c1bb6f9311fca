"""Measuring: events and webhooks in, counted into statistics; orphans, replay, rebuild."""

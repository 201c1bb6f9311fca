"""Admin operations: API keys, dead letters, replay, rebuild, privacy, health."""

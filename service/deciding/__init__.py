"""Deciding: /v1/choose, the decider and the decision log."""

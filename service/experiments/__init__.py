"""Experiments and arms: create, configure, change status."""

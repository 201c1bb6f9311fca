"""Deciding: sampling arms from the loaded policy, minting ids, logging decisions."""

"""The marketing loop on the service side: gather, run, apply, review, schedule."""

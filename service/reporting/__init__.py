"""Reporting: the report and history of an experiment, and its evaluation from the decision
log."""

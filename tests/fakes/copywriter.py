"""Run the scripted copywriter on 127.0.0.1 (a free port, a background thread); see
`simulation.copywriter_server`."""

from simulation.copywriter_server import running_copywriter

__all__ = ["running_copywriter"]

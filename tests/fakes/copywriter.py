"""Run the scripted copywriter on 127.0.0.1 (a free port, a background thread); see
`service.loop.scripted_server`."""

from service.loop.scripted_server import running_copywriter

__all__ = ["running_copywriter"]

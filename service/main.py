"""ASGI entry point for uvicorn/gunicorn: `service.main:app`."""

from service.core.app import create_app

app = create_app(freeze_heap=True)

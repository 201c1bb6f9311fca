"""POST /v1/webhooks/{provider}: each ESP authenticated by its own scheme."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from service.core import metrics
from service.core.deps import RuntimeDep
from service.core.errors import Unauthorized, Unavailable
from service.measuring.adapters import WebhookAuthError, WebhookTemporaryError
from service.measuring.webhook_intake import receive

log = logging.getLogger("banditloop.webhooks")

router = APIRouter(prefix="/v1/webhooks", tags=["measuring"])


# The body is each provider's own payload, read as raw bytes (the signature covers them);
# SNS posts its JSON as text/plain. Documented so that clients and the fuzzer send one.
WEBHOOK_BODY: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"description": "The provider's payload."}},
            "text/plain": {"schema": {"type": "string", "description": "SNS: JSON as text."}},
        },
    }
}


@router.post(
    "/{provider}",
    description="sendgrid, mailgun, postmark, ses, customerio, braze or generic; "
    "see docs/webhooks.md. 2xx only after the raw payload and its events are stored.",
    openapi_extra=WEBHOOK_BODY,
)
async def webhook(provider: str, request: Request, runtime: RuntimeDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        outcome = await run_in_threadpool(receive, runtime, provider, headers, body)
    except WebhookTemporaryError as exc:
        raise Unavailable(str(exc)) from exc
    except OperationalError as exc:
        # The database is down or busy: a 503 every provider retries (docs/webhooks.md),
        # never a 500 that reads as our bug, and never Mailgun's 406 or Postmark's 403.
        log.warning("webhook %s not stored: %s", provider, exc)
        raise Unavailable("the database is unavailable; retry later") from exc
    except WebhookAuthError as exc:
        metrics.WEBHOOK_AUTH_FAILURES.labels(provider).inc()  # only known providers get here
        raise Unauthorized(str(exc), field="signature") from exc
    return JSONResponse(outcome.body, status_code=outcome.status)

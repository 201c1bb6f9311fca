"""Environment settings: every operator knob, with safe defaults for the embedded mode.

Each field is documented in the README's settings table; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "example", "placeholder", "xxx"}


class Settings(BaseSettings):
    """banditloop's environment settings (prefix ``BANDITLOOP_``, or a ``.env`` file)."""

    model_config = SettingsConfigDict(
        env_prefix="BANDITLOOP_", env_file=".env", extra="ignore", frozen=True
    )

    mode: Literal["embedded", "production"] = Field(
        "embedded",
        description="`production` refuses to start without real signing keys.",
    )
    database_url: str = Field(
        "sqlite:///data/banditloop.db",
        description="`sqlite:///path/file.db` (embedded) or `postgresql+psycopg://...`.",
    )
    signing_keys: str = Field(
        "",
        description="Decision-id signing keys as `kid:secret,...`; the first signs, all verify.",
    )
    bootstrap_admin_key: str = Field(
        "", description="First admin API key, used only when no key exists yet."
    )
    policy_refresh_seconds: float = Field(2.0, gt=0, description="Snapshot refresh interval.")
    policy_compute_process: bool = Field(
        True,
        description="The refresher computes snapshots in a child process, so its CPU never "
        "stalls /choose (false: in the serving process).",
    )
    decision_flush_ms: int = Field(200, gt=0, description="Decision log flush interval (ms).")
    decision_writer_process: bool = Field(
        False,
        description="Unkeyed decisions are written by a child process fed through a pipe, so "
        "building and writing rows never holds the serving process's interpreter lock "
        "(false, the default: a thread of the serving process writes them). Only with the "
        "background workers on and a database file or server (not an in-memory SQLite). "
        "Backpressure: at most one batch is out unconfirmed; the serving process writes an "
        "interval itself when the child is behind, and requests wait (at most an interval "
        "each) for a hand-over more than two intervals late. Off by default: under overload "
        "those waits pause serving longer than the thread's flush does.",
    )
    event_loop_probe_ms: float = Field(
        5.0,
        ge=0,
        description="The event-loop lag probe's sleep (ms): how late the serving loop wakes "
        "from it is recorded in banditloop_event_loop_lag_seconds; 0 turns the probe off.",
    )
    lease_seconds: float = Field(
        10.0, gt=0, description="How long the policy/loop leases last without renewal."
    )
    api_key_cache_seconds: float = Field(
        5.0, ge=0, description="How long a looked-up API key is trusted before re-reading it."
    )
    keyed_cache_size: int = Field(
        100_000, ge=0, description="Keyed decisions remembered in memory per replica."
    )
    max_body_bytes: int = Field(
        5_000_000, gt=0, description="Largest request body accepted (413 beyond it)."
    )
    max_batch_units: int = Field(10_000, gt=0, description="Units per /v1/choose/batch call.")
    max_events_per_request: int = Field(
        10_000, gt=0, description="Events per POST /v1/events call."
    )
    raw_retention_days: int = Field(30, gt=0, description="Days raw payloads are kept.")
    scanner_click_seconds: float = Field(
        10.0, ge=0, description="A click this soon after delivery is taken as a security scanner."
    )
    llm_base_url: str = Field("", description="OpenAI-compatible endpoint; unset: no LLM pass.")
    llm_api_key: str = Field("", description="API key for the LLM endpoint.")
    llm_model: str = Field("", description="Model name for the LLM endpoint.")
    llm_timeout_seconds: float = Field(60.0, gt=0, description="Per-call LLM timeout.")
    llm_max_retries: int = Field(2, ge=0, description="LLM retries on 429/5xx/timeouts.")
    llm_embedding_model: str = Field(
        "",
        description="Embedding model for the semantic near-duplicate check; unset: lexical only.",
    )
    loop_learnings_cap: int = Field(
        20,
        ge=1,
        le=200,
        description="Active learnings a loop run keeps in its library, at most the library's "
        "own cap (lowest support pruned first).",
    )
    loop_max_new_variants: int = Field(
        3, ge=0, le=20, description="New variants a loop run asks the LLM for."
    )
    loop_scheduler_seconds: float = Field(
        60.0, gt=0, description="How often the scheduler looks for experiments whose loop is due."
    )
    sendgrid_public_key: str = Field("", description="SendGrid's base64 ECDSA public key(s).")
    mailgun_signing_key: str = Field("", description="Mailgun webhook signing key(s).")
    postmark_username: str = Field("", description="Basic-auth user(s) in the Postmark URL.")
    postmark_password: str = Field("", description="Basic-auth password(s), same order.")
    ses_topic_arns: str = Field("", description="SNS topic ARNs accepted for SES events.")
    customerio_signing_key: str = Field("", description="Customer.io webhook signing key(s).")
    braze_token: str = Field("", description="Bearer token(s) set on the Braze Current.")
    generic_webhook_secret: str = Field("", description="HMAC secret(s) for /webhooks/generic.")
    ses_certificate_dir: str = Field(
        "", description="Folder of SNS signing certificates (PEM) for offline verification."
    )
    ses_auto_confirm: bool = Field(
        True,
        description="Confirm SNS subscriptions by fetching their SubscribeURL (SNS hosts only).",
    )
    metrics_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long /metrics reuses its database read of the state gauges.",
    )
    console_session_hours: float = Field(
        8.0, gt=0, le=24 * 30, description="How long a console sign-in lasts before it expires."
    )
    notify_webhook_url: str = Field(
        "",
        description="Outgoing notification webhook (Slack-compatible JSON); unset: none sent.",
    )
    notify_webhook_secret: str = Field(
        "", description="HMAC secret(s) that sign each notification (comma-separated)."
    )
    notify_max_attempts: int = Field(
        5, ge=1, le=20, description="Tries per notification before it is given up."
    )
    notify_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay; doubles on each further retry."
    )
    notify_timeout_seconds: float = Field(
        5.0, gt=0, description="Per-attempt timeout of a notification post."
    )
    run_background: bool = Field(
        True, description="Run the refresher, decision flusher and scheduler threads."
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.mode != "production":
            return self
        if not self.signing_keys:
            raise ValueError("production mode needs BANDITLOOP_SIGNING_KEYS")
        if self.notify_webhook_url and not all(
            len(secret) >= 16 and secret.lower() not in PLACEHOLDER_SECRETS
            for secret in split_secrets(self.notify_webhook_secret) or ("",)
        ):
            raise ValueError(
                "BANDITLOOP_NOTIFY_WEBHOOK_URL needs a real BANDITLOOP_NOTIFY_WEBHOOK_SECRET"
            )
        for _kid, secret in parse_signing_keys(self.signing_keys):
            if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
                raise ValueError("BANDITLOOP_SIGNING_KEYS holds a placeholder or short secret")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        raw = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        return Path(raw) if raw and raw != ":memory:" else None

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url and self.llm_model)


def parse_signing_keys(raw: str) -> list[tuple[str, str]]:
    """Parse ``kid:secret,kid2:secret2``; the first pair is the one that signs."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep or not kid or not secret:
            raise ValueError("BANDITLOOP_SIGNING_KEYS must be `kid:secret,...`")
        pairs.append((kid, secret))
    return pairs


def split_secrets(raw: str) -> tuple[str, ...]:
    """Comma-separated secrets, two of which may be active during a rotation."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())

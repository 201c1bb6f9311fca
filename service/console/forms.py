"""HTML form fields to and from the API's request models, and their errors as messages
keyed by field. The models (`ExperimentCreate`, `ExperimentSettings`) do the validating:
the console has no rules of its own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError

from service.core.errors import DomainError, InvalidInput
from service.core.storable import safe_text, unstorable_reason

NUMBERS = (
    "exploration_share",
    "min_exposures",
    "min_successes",
    "max_live_arms",
    "attribution_window_hours",
    "loop_cadence_hours",
)


async def read_form(request: Request) -> dict[str, str]:
    """The posted form as plain strings (empty for a request without a form)."""
    if request.method != "POST":
        return {}
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    for key, value in values.items():
        reason = unstorable_reason(key) or unstorable_reason(value)
        if reason is not None:
            raise InvalidInput(f"{safe_text(key)}: {reason}", field=safe_text(key))
    return values


FormDep = Annotated[dict[str, str], Depends(read_form)]


def split(raw: str | None) -> list[str]:
    """A list typed one item a line (or comma-separated)."""
    text = (raw or "").replace("\r", "")
    parts = text.split("\n") if "\n" in text else text.split(",")
    return [p.strip() for p in parts if p.strip()]


def experiment_settings(values: dict[str, str]) -> dict[str, Any]:
    """The settings the form posted; a field it did not post (disabled) is left out, so the
    stored value stands."""
    out: dict[str, Any] = {}
    for name in ("name", "primary_metric"):
        if values.get(name, "").strip():
            out[name] = values[name].strip()
    if "conversion_name" in values:
        out["conversion_name"] = values["conversion_name"].strip() or None
    for name in NUMBERS:
        raw = values.get(name, "").strip()
        if raw:
            out[name] = raw
        elif name == "loop_cadence_hours" and name in values:
            out[name] = None
    out["brief"] = {k: values.get(k, "").strip() for k in ("audience", "goal", "brand_voice")}
    rules: dict[str, Any] = {"banned_phrases": split(values.get("banned_phrases"))}
    if values.get("max_length", "").strip():
        rules["max_length"] = values["max_length"].strip()
    if "allowed_placeholders" in values:
        rules["allowed_placeholders"] = split(values.get("allowed_placeholders"))
    out["content_rules"] = rules
    out["guardrails"] = [
        {"metric": metric, "tolerance": values[f"guardrail_{metric}"].strip()}
        for metric in ("unsubscribe", "complaint", "bounce")
        if values.get(f"guardrail_{metric}", "").strip()
    ]
    out["auto_approve"] = values.get("auto_approve") == "on"
    return out


def experiment_create(values: dict[str, str]) -> dict[str, Any]:
    out = experiment_settings(values)
    out["key"] = values.get("key", "").strip()
    out["name"] = values.get("name", "").strip()
    lines = [line.strip() for line in values.get("arms", "").splitlines() if line.strip()]
    # The first line is the control: the incumbent wording the others are measured against.
    out["arms"] = [{"content": line, "control": i == 0} for i, line in enumerate(lines)]
    if out.get("conversion_name") is None:
        out.pop("conversion_name", None)
    if out.get("loop_cadence_hours") is None:
        out.pop("loop_cadence_hours", None)
    return out


def values_of(experiment: dict[str, Any]) -> dict[str, str]:
    """The form's fields for a stored experiment."""
    brief = experiment.get("brief") or {}
    rules = experiment.get("content_rules") or {}
    values = {
        "key": experiment["key"],
        "name": experiment["name"],
        "primary_metric": experiment["primary_metric"],
        "conversion_name": experiment.get("conversion_name") or "",
        "banned_phrases": "\n".join(rules.get("banned_phrases", [])),
        "allowed_placeholders": "\n".join(rules.get("allowed_placeholders", [])),
        "max_length": str(rules.get("max_length", "")),
        "auto_approve": "on" if experiment.get("auto_approve") else "",
    }
    for name in NUMBERS:
        value = experiment.get(name)
        values[name] = "" if value is None else _number(value)
    for name in ("audience", "goal", "brand_voice"):
        values[name] = str(brief.get(name, ""))
    for guardrail in experiment.get("guardrails") or []:
        values[f"guardrail_{guardrail['metric']}"] = _number(guardrail["tolerance"])
    return values


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def errors_of(exc: Exception) -> dict[str, str]:
    """Field name to message, for showing each error beside its field."""
    if isinstance(exc, ValidationError):
        out: dict[str, str] = {}
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            field = _field(loc)
            out.setdefault(field, f"{' '.join(loc)}: {error['msg']}")
        return out
    if isinstance(exc, DomainError):
        details = exc.details if isinstance(exc.details, dict) else {}
        return {str(details.get("field") or "form"): exc.message}
    return {"form": str(exc)}


def _field(loc: list[str]) -> str:
    if loc and loc[0] in ("brief", "content_rules") and len(loc) > 1:
        return loc[1]
    if loc and loc[0] == "guardrails":
        return "guardrails"
    return loc[0] if loc else "form"

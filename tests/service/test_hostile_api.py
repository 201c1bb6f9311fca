"""Hostile input at every API entry point, on both databases: NUL and control characters,
lone surrogates, deep nesting, huge numbers, nulls, far dates, huge strings and wrong
content types. Each gets a clear answer naming the field, never a 500; the ones that are
fine (control characters, integer unit ids) are served and stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import DeadLetter
from tests.service.factories import create_random_experiment
from tests.service.test_invalid_requests import assert_error

NUL = "\x00"
JSON = {"content-type": "application/json"}
DEEP = 10_000
WRONG_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/xml",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    None,
]


def raw(client: TestClient, method: str, url: str, body: bytes | str, headers: dict[str, str]):
    """Send exact bytes: a lone surrogate can only be spelled as a JSON escape."""
    content = body.encode() if isinstance(body, str) else body
    return client.request(method, url, content=content, headers={**JSON, **headers})


def deep(levels: int, leaf: str = "1") -> str:
    return "[" * levels + leaf + "]" * levels


@pytest.fixture
def experiment(client: TestClient, admin) -> dict[str, Any]:
    return create_random_experiment(client, admin, segment_attribute="tier")


# --- POST /v1/choose ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("unit_id", {"unit_id": f"u{NUL}1"}),
        ("send_id", {"unit_id": "u1", "send_id": f"s{NUL}"}),
        ("context.tier", {"unit_id": "u1", "context": {"tier": f"go{NUL}ld"}}),
        ("context", {"context": {f"ti{NUL}er": "gold"}}),
    ],
)
def test_choose_refuses_nul_naming_the_field(client, decide, experiment, field, body):
    response = client.post(
        "/v1/choose", json={"experiment": experiment["key"], **body}, headers=decide
    )
    error = assert_error(response, 422, field)
    assert "NUL" in error["message"]


def test_choose_refuses_nul_in_the_experiment(client, decide, experiment):
    body = {"experiment": experiment["key"] + NUL}
    assert_error(client.post("/v1/choose", json=body, headers=decide), 422, "experiment")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d"])
def test_choose_refuses_lone_surrogates(client, decide, experiment, escape):
    body = f'{{"experiment": "{experiment["key"]}", "unit_id": "u{escape}x"}}'
    error = assert_error(raw(client, "POST", "/v1/choose", body, decide), 422, "unit_id")
    assert "surrogate" in error["message"]


def test_choose_takes_a_paired_surrogate_and_control_characters(
    client, decide, experiment, runtime: Runtime
):
    # An emoji spelled as a surrogate pair is valid text; control characters are storable.
    body = f'{{"experiment": "{experiment["key"]}", "unit_id": "u\\ud83d\\ude00\\u0001\\t"}}'
    assert raw(client, "POST", "/v1/choose", body, decide).status_code == 200
    unkeyed = {"experiment": experiment["key"], "context": {"tier": "g\x01\x1fold"}}
    assert client.post("/v1/choose", json=unkeyed, headers=decide).status_code == 200
    assert runtime.decision_log.flush() >= 0  # the flush stores both rows, NUL-free


def test_choose_refuses_deep_nesting_before_parsing(client, decide, experiment):
    body = f'{{"experiment": "{experiment["key"]}", "context": {deep(DEEP)}}}'
    error = assert_error(raw(client, "POST", "/v1/choose", body, decide), 422, "body")
    assert "nested deeper" in error["message"]


def test_choose_numeric_unit_ids_are_their_decimal_text(client, decide, experiment):
    key = experiment["key"]

    def choose(unit_id: Any) -> dict[str, Any]:
        body = {"experiment": key, "unit_id": unit_id, "send_id": "s1"}
        response = client.post("/v1/choose", json=body, headers=decide)
        assert response.status_code == 200, response.text
        return response.json()

    assert choose(1234567890123)["decision_id"] == choose("1234567890123")["decision_id"]
    huge = 10**30
    assert choose(huge)["decision_id"] == choose(str(huge))["decision_id"]
    assert choose(-7)["decision_id"] == choose("-7")["decision_id"]
    for bad in (12.0, 1e21, True, [1], {"id": 1}):
        body = {"experiment": key, "unit_id": bad}
        assert_error(client.post("/v1/choose", json=body, headers=decide), 422, "unit_id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"experiment": None}, "experiment"),
        ({"unit_id": None, "experiment": 7}, "experiment"),
        ({"unit_id": "u" * 257}, "unit_id"),
        ({"send_id": "s" * 129}, "send_id"),
        ({"context": {"tier": "g" * 257}}, "context"),
        ({"context": {f"k{i}": i for i in range(51)}}, "context"),
    ],
)
def test_choose_refuses_nulls_and_huge_strings(client, decide, experiment, body, field):
    payload = {"experiment": experiment["key"], **body}
    assert_error(client.post("/v1/choose", json=payload, headers=decide), 422, field)


@pytest.mark.parametrize("content_type", WRONG_TYPES)
def test_choose_refuses_wrong_content_types(client, decide, experiment, content_type):
    body = json.dumps({"experiment": experiment["key"]}).encode()
    headers = {**decide, "content-type": content_type} if content_type else decide
    response = client.post("/v1/choose", content=body, headers=headers)
    if content_type is None:  # httpx adds none for bytes: the request really has no type
        assert "content-type" not in response.request.headers
    error = assert_error(response, 415, "content-type")
    assert error["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.banditloop+json",
    ],
)
def test_choose_takes_json_media_types(client, decide, experiment, content_type):
    body = json.dumps({"experiment": experiment["key"]}).encode()
    response = client.post(
        "/v1/choose", content=body, headers={**decide, "content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_choose_refuses_bytes_that_are_not_utf8(client, decide, experiment):
    body = b'{"experiment": "' + experiment["key"].encode() + b'", "unit_id": "\xff\xfe"}'
    assert_error(raw(client, "POST", "/v1/choose", body, decide), 422, "body")


# --- POST /v1/choose/batch ------------------------------------------------------------


def test_batch_names_the_unit_at_fault(client, decide, experiment):
    units = [{"unit_id": f"u{i}"} for i in range(5)]
    units[3] = {"unit_id": f"u{NUL}3"}
    body = {"experiment": experiment["key"], "units": units}
    assert_error(client.post("/v1/choose/batch", json=body, headers=decide), 422, "units.3.unit_id")
    surrogate = f'{{"experiment": "{experiment["key"]}", "units": [{{"send_id": "\\udc00"}}]}}'
    assert_error(raw(client, "POST", "/v1/choose/batch", surrogate, decide), 422, "units.0.send_id")


def test_batch_takes_integer_unit_ids(client, decide, experiment):
    body = {"experiment": experiment["key"], "units": [{"unit_id": 42, "send_id": 7}]}
    one = client.post("/v1/choose/batch", json=body, headers=decide)
    text = {"experiment": experiment["key"], "units": [{"unit_id": "42", "send_id": "7"}]}
    two = client.post("/v1/choose/batch", json=text, headers=decide)
    assert one.status_code == two.status_code == 200
    assert one.json()["decisions"][0]["decision_id"] == two.json()["decisions"][0]["decision_id"]


def test_batch_refuses_deep_nesting_too_many_units_and_wrong_types(client, decide, experiment):
    key = experiment["key"]
    body = f'{{"experiment": "{key}", "units": [{{"context": {{"a": {deep(DEEP)}}}}}]}}'
    assert_error(raw(client, "POST", "/v1/choose/batch", body, decide), 422, "body")
    many = {"experiment": key, "units": [{}] * 10_001}
    assert_error(client.post("/v1/choose/batch", json=many, headers=decide), 413, "units")
    form = {**decide, "content-type": "application/x-www-form-urlencoded"}
    response = client.post("/v1/choose/batch", content=b"experiment=x", headers=form)
    assert_error(response, 415, "content-type")


# --- GET /v1/choose -------------------------------------------------------------------


@pytest.mark.parametrize("param", ["experiment", "unit_id", "send_id", "tier", "extra"])
def test_get_choose_refuses_nul_in_any_query_parameter(client, decide, experiment, param):
    params = {"experiment": experiment["key"], "unit_id": "u1", "send_id": "s1"}
    params[param] = params.get(param, "x") + NUL
    response = client.get("/v1/choose", params=params, headers=decide)
    assert_error(response, 422, param)


def test_get_choose_answers_odd_but_storable_queries(client, decide, experiment):
    key = experiment["key"]
    # Percent-encoded bytes that are not UTF-8 decode to U+FFFD: storable, served.
    url = f"/v1/choose?experiment={key}&unit_id=u%ED%A0%80&send_id=s%01&tier=%FF"
    assert client.get(url, headers=decide).status_code == 200
    huge = {"experiment": key, "unit_id": "u" * 257, "send_id": "s"}
    assert_error(client.get("/v1/choose", params=huge, headers=decide), 422, "unit_id")
    missing = {"experiment": key, "unit_id": "u"}
    assert_error(client.get("/v1/choose", params=missing, headers=decide), 422, "send_id")


# --- POST /v1/events ------------------------------------------------------------------


def dead_letter_reasons(runtime: Runtime) -> list[str]:
    with Session(runtime.engine) as session:
        return [d.reason for d in session.exec(select(DeadLetter)).all()]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"event_id": f"e{NUL}1", "type": "click"}, "event_id"),
        ({"event_id": "e1", "type": "conversion", "name": f"buy{NUL}"}, "name"),
        ({"event_id": "e1", "type": "click", "decision_id": f"d{NUL}"}, "decision_id"),
        ({"event_id": "e1", "type": "click", f"x{NUL}": 1}, "x"),
        (
            {"event_id": "e1", "type": "click", "occurred_at": "9999-12-31T23:59:59-23:59"},
            "occurred_at",
        ),
        (
            {"event_id": "e1", "type": "click", "occurred_at": "0001-01-01T00:00:00+01:00"},
            "occurred_at",
        ),
        ({"event_id": "e1", "type": "click", "occurred_at": "1900-01-01T00:00:00Z"}, "occurred_at"),
        ({"event_id": "e1", "type": None}, "type"),
        ('{"event_id": "e1", "type": "click", "value": 1e400}', "value"),
        ('{"event_id": "e1", "type": "click", "value": -1e999}', "value"),
        ('{"event_id": "e1", "type": "click", "value": NaN}', "value"),
        ({"event_id": "e" * 201, "type": "click"}, "event_id"),
    ],
)
def test_events_reject_each_bad_event_naming_the_field_and_keep_the_rest(
    client, ingest, runtime, event, field
):
    good = {"event_id": "fine", "type": "click"}
    # Numbers JSON can spell but Python cannot send as a dict go as text.
    text = event if isinstance(event, str) else json.dumps(event)
    response = raw(client, "POST", "/v1/events", f"[{json.dumps(good)}, {text}]", ingest)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ignored"] == 1  # the good event (no decision id): handled, not refused
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert field in rejected["reason"]
    # The caller's event_id comes back whenever it can be read (defect 8).
    assert rejected["event_id"] == (json.loads(text.replace("NaN", "0"))["event_id"])
    # The rejection is dead-lettered with its reason: on PostgreSQL too, so NUL never
    # reaches a text column.
    [reason] = dead_letter_reasons(runtime)
    assert field.split(".")[0] in reason


def test_events_keep_the_event_id_of_any_invalid_event(client, ingest):
    events = [
        {"event_id": "a1", "type": "purchase"},
        {"event_id": 12345, "type": "click", "value": "lots"},
        {"event_id": "a3"},
        {"type": "click"},
        "not an event",
    ]
    body = client.post("/v1/events", json=events, headers=ingest).json()
    assert [r["event_id"] for r in body["rejected"]] == ["a1", "12345", "a3", None, None]
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2, 3, 4]


def test_events_lone_surrogate_is_rejected_and_answerable(client, ingest, runtime):
    body = '[{"event_id": "s\\ud800", "type": "click"}, {"event_id": "ok", "type": "click"}]'
    response = raw(client, "POST", "/v1/events", body, ingest)
    assert response.status_code == 200, response.text
    [rejected] = response.json()["rejected"]
    assert "event_id" in rejected["reason"]
    assert "surrogate" in rejected["reason"]
    assert rejected["event_id"] == "s?"


def test_events_refuse_deep_nesting_and_wrong_types(client, ingest):
    error = assert_error(raw(client, "POST", "/v1/events", deep(DEEP, "{}"), ingest), 422, "body")
    assert "nested deeper" in error["message"]
    nested = '{"event_id": "e", "type": "click", "name": ' + deep(DEEP) + "}"
    assert_error(raw(client, "POST", "/v1/events", nested, ingest), 422, "body")
    for content_type in WRONG_TYPES:
        headers = {**ingest, "content-type": content_type} if content_type else ingest
        body = b'{"event_id": "e", "type": "click"}'
        assert_error(client.post("/v1/events", content=body, headers=headers), 415, "content-type")


# --- experiments: create, patch, arms -----------------------------------------------


def experiment_body(**overrides: Any) -> dict[str, Any]:
    return {"key": "hostile", "name": "Hostile", "arms": [{"content": "A"}], **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": f"N{NUL}"}, "name"),
        ({"key": f"k{NUL}"}, "key"),
        ({"arms": [{"content": f"A{NUL}"}]}, "arms.0.content"),
        ({"arms": [{"content": "A", "tags": [f"t{NUL}"]}]}, "arms.0.tags.0"),
        ({"arms": [{"content": "A", "payload": {"k": f"v{NUL}"}}]}, "arms.0.payload.k"),
        ({"brief": {"goal": f"g{NUL}"}}, "brief.goal"),
        ({"max_live_arms": None}, "max_live_arms"),
        ({"name": None}, "name"),
        ({"guardrails": [{"metric": "unsubscribe"}]}, "guardrails.0.tolerance"),
        ({"attribution_window_hours": 1e-9}, "attribution_window_hours"),
        ({"attribution_window_hours": 1e300}, "attribution_window_hours"),
        ({"half_life_hours": 1e-9}, "half_life_hours"),
        ({"min_exposures": 10**30}, "min_exposures"),
        ({"exploration_share": 1e-400}, "exploration_share"),
        ({"name": "n" * 201}, "name"),
        ({"arms": [{"content": "A" * 2001}]}, "arms.0.content"),
        ({"content_rules": {"banned_phrases": ["  "]}}, "content_rules.banned_phrases"),
        (
            {"content_rules": {"allowed_placeholders": ["first name"]}},
            "content_rules.allowed_placeholders",
        ),
    ],
)
def test_create_refuses_naming_the_field(client, admin, overrides, field):
    response = client.post("/v1/experiments", json=experiment_body(**overrides), headers=admin)
    assert_error(response, 422, field)
    assert client.get("/v1/experiments/hostile", headers=admin).status_code == 404


@pytest.mark.parametrize("levels", [900, DEEP])
def test_create_refuses_deep_payloads(client, admin, levels):
    body = json.dumps(experiment_body(arms=[{"content": "A", "payload": {"p": 0}}]))
    body = body.replace('{"p": 0}', '{"p": ' + deep(levels) + "}")
    assert_error(raw(client, "POST", "/v1/experiments", body, admin), 422, "body")


def test_create_takes_a_payload_of_sane_depth(client, admin):
    payload = json.loads('{"p": ' + deep(20) + "}")
    body = experiment_body(arms=[{"content": "A", "payload": payload}])
    response = client.post("/v1/experiments", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["arms"][0]["payload"] == payload


@pytest.mark.parametrize(
    "field",
    [
        "attribution_window_hours",
        "min_exposures",
        "exploration_share",
        "primary_metric",
        "max_live_arms",
        "guardrails",
        "name",
        "auto_retire",
    ],
)
def test_patch_refuses_null_for_settings_that_cannot_be_unset(client, admin, experiment, field):
    url = f"/v1/experiments/{experiment['key']}"
    assert_error(client.patch(url, json={field: None}, headers=admin), 422, field)
    assert client.get(url, headers=admin).json()[field] == experiment[field]


def test_patch_unsets_the_optional_settings_with_null(client, admin, experiment):
    url = f"/v1/experiments/{experiment['key']}"
    response = client.patch(url, json={"segment_attribute": None}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["segment_attribute"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": f"x{NUL}"}, "name"),
        ({"attribution_window_hours": 1e-9}, "attribution_window_hours"),
        ({"guardrails": [{"metric": "complaint"}]}, "guardrails.0.tolerance"),
        ({"channel": "c" * 33}, "channel"),
    ],
)
def test_patch_refuses_bad_values(client, admin, experiment, body, field):
    url = f"/v1/experiments/{experiment['key']}"
    assert_error(client.patch(url, json=body, headers=admin), 422, field)
    for content_type in ("text/plain", None):
        headers = {**admin, "content-type": content_type} if content_type else admin
        response = client.patch(url, content=json.dumps(body).encode(), headers=headers)
        assert_error(response, 415, "content-type")


def test_arm_routes_refuse_nul_and_ids_past_the_integer_range(client, admin, experiment):
    key = experiment["key"]
    arm_id = experiment["arms"][0]["id"]
    url = f"/v1/experiments/{key}/arms"
    assert_error(client.post(url, json={"content": f"B{NUL}"}, headers=admin), 422, "content")
    reason = {"reason": "test"}
    for bad in (10**30, 2**31, 2**63, 0, -1):
        for verb in ("retire", "suspend", "restore"):
            response = client.post(f"{url}/{bad}/{verb}", json=reason, headers=admin)
            assert_error(response, 422, "arm_id")
        assert_error(client.post(f"{url}/{bad}/control", headers=admin), 422, "arm_id")
        assert_error(client.get(f"{url}/{bad}/history", headers=admin), 422, "arm_id")
        edit = client.post(f"{url}/{bad}/edit", json={"content": "C"}, headers=admin)
        assert_error(edit, 422, "arm_id")
    response = client.post(f"{url}/{arm_id}/retire", json={"reason": f"r{NUL}"}, headers=admin)
    assert_error(response, 422, "reason")
    # The largest id that exists in the databases is a plain 404.
    response = client.post(f"{url}/{2**31 - 1}/retire", json=reason, headers=admin)
    assert_error(response, 404, "arm_id")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/experiments/{x}"),
        ("PATCH", "/v1/experiments/{x}"),
        ("POST", "/v1/experiments/{x}/pause"),
        ("GET", "/v1/experiments/{x}/report"),
        ("GET", "/v1/experiments/{x}/learnings"),
        ("POST", "/v1/experiments/{x}/loop-runs"),
        ("DELETE", "/v1/units/{x}"),
    ],
)
def test_nul_in_any_path_parameter_is_named(client, admin, method, path):
    url = path.format(x="ab%00cd")
    body = {} if method in ("PATCH",) else None
    response = client.request(method, url, json=body, headers=admin)
    name = "unit_id" if "units" in path else "key"
    assert_error(response, 422, name)


# --- keys and admin ---------------------------------------------------------------------


def test_keys_refuse_nul_huge_names_and_ids_past_the_range(client, admin):
    body = {"name": f"k{NUL}", "scopes": ["decide"]}
    assert_error(client.post("/v1/admin/keys", json=body, headers=admin), 422, "name")
    body = {"name": "k" * 121, "scopes": ["decide"]}
    assert_error(client.post("/v1/admin/keys", json=body, headers=admin), 422, "name")
    body = {"name": "k", "scopes": [f"dec{NUL}ide"]}
    assert_error(client.post("/v1/admin/keys", json=body, headers=admin), 422, "scopes.0")
    for bad in (2147483649, 10**30, 0):
        assert_error(client.delete(f"/v1/admin/keys/{bad}", headers=admin), 422, "key_id")
    assert_error(client.delete(f"/v1/admin/keys/{2**31 - 1}", headers=admin), 404, "key_id")
    response = client.post(
        "/v1/admin/keys", content=b"name=k", headers={**admin, "content-type": "text/plain"}
    )
    assert_error(response, 415, "content-type")


def test_admin_routes_refuse_out_of_range_and_nul(client, admin):
    for bad in (10**30, 2**31, -1):
        response = client.get("/v1/admin/dead-letters", params={"after": bad}, headers=admin)
        assert_error(response, 422, "after")
    response = client.get("/v1/admin/dead-letters", params={"source": f"a{NUL}"}, headers=admin)
    assert_error(response, 422, "source")
    assert client.get(
        "/v1/admin/dead-letters", params={"after": 2**31 - 1}, headers=admin
    ).json() == {
        "dead_letters": [],
        "next_after": None,
    }
    for field in ("since", "until"):
        for far in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"):
            response = client.post("/v1/admin/replay", json={field: far}, headers=admin)
            assert_error(response, 422, field)
    response = client.post("/v1/admin/replay", json={"source": f"s{NUL}"}, headers=admin)
    assert_error(response, 422, "source")
    for bad in (10**30, 2**31):
        for verb in ("approve", "reject"):
            response = client.post(
                f"/v1/proposals/{bad}/{verb}", json={"reason": "r"}, headers=admin
            )
            assert_error(response, 422, "proposal_id")
    response = client.get("/v1/proposals", params={"experiment": f"e{NUL}"}, headers=admin)
    assert_error(response, 422, "experiment")
    assert_error(client.delete("/v1/units/u%00", headers=admin), 422, "unit_id")
    body = deep(DEEP, "{}")
    assert_error(raw(client, "POST", "/v1/admin/replay", body, admin), 422, "body")


def test_every_integer_path_parameter_is_bounded(client: TestClient, admin):
    """Whatever routes exist now or later: an id past the integer range is a 422."""
    document = client.get("/openapi.json").json()
    checked = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            params = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            ints = [p["name"] for p in params if p["schema"].get("type") == "integer"]
            if not ints:
                continue
            url = path
            for p in params:
                url = url.replace(f"{{{p['name']}}}", str(10**30) if p["name"] in ints else "k")
            body = {"reason": "r", "content": "c"}
            response = client.request(method.upper(), url, json=body, headers=admin)
            assert_error(response, 422, ints[0])
            checked.append((method, path))
    assert len(checked) == 9, checked  # arms (6), key revocation, proposals (2)


HUGE_INT = "1" + "0" * 5000  # Python's JSON parser refuses integers of over 4,300 digits


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        ("POST", "/v1/events", '{"event_id": "a", "type": "click", "value": %s}', "ingest"),
        ("POST", "/v1/events", "[%s]", "ingest"),
        ("POST", "/v1/experiments", '{"key": "q", "name": "q", "min_exposures": %s}', "admin"),
        ("POST", "/v1/admin/replay", '{"since": %s}', "admin"),
        ("POST", "/v1/choose", '{"experiment": "x", "unit_id": %s}', "decide"),
        ("POST", "/v1/choose/batch", '{"experiment": "x", "units": [{"unit_id": %s}]}', "decide"),
    ],
)
def test_integers_too_long_to_parse_name_the_body(
    client, admin, decide, ingest, method, path, body, scope
):
    headers = {"admin": admin, "decide": decide, "ingest": ingest}[scope]
    response = raw(client, method, path, body % HUGE_INT, headers)
    assert_error(response, 422, "body")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_where_they_would_be_stored(
    client, admin, decide, experiment, number
):
    body = '{"key": "nf", "name": "n", "arms": [{"content": "A", "payload": {"n": [%s]}}]}'
    assert_error(raw(client, "POST", "/v1/experiments", body % number, admin), 422, "payload")
    arm = '{"content": "B", "payload": {"n": NUMBER}}'.replace("NUMBER", number)
    url = f"/v1/experiments/{experiment['key']}/arms"
    assert_error(raw(client, "POST", url, arm, admin), 422, "payload")
    choose = f'{{"experiment": "{experiment["key"]}", "context": {{"tier": {number}}}}}'
    assert_error(raw(client, "POST", "/v1/choose", choose, decide), 422, "context")


def test_get_choose_context_from_the_query_is_validated(client, decide, experiment):
    base = {"experiment": experiment["key"], "unit_id": "u", "send_id": "s"}
    response = client.get("/v1/choose", params={**base, "tier": "g" * 257}, headers=decide)
    assert_error(response, 422, "context")
    many = {**base, **{f"k{i}": "v" for i in range(51)}}
    assert_error(client.get("/v1/choose", params=many, headers=decide), 422, "context")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/admin/keys", "GET, POST"),
        ("PUT", "/v1/experiments/abc", "GET, PATCH"),
        ("DELETE", "/v1/choose", "GET, POST"),
        ("GET", "/v1/events", "POST"),
    ],
)
def test_wrong_method_names_every_allowed_one(client, admin, method, path, allow):
    response = client.request(method, path, headers=admin)
    assert_error(response, 405)
    assert response.headers["allow"] == allow

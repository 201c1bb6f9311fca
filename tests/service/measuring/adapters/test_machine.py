from __future__ import annotations

from datetime import timedelta

import pytest

from service.measuring.adapters import NormalizedEvent, flag_machine
from tests.service.measuring.adapters.signers import NOW


def _event(
    type_: str | None,
    seconds: float = 0.0,
    *,
    message_id: str | None = "m-1",
    user_agent: str | None = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
    machine: bool = False,
    provider: str = "sendgrid",
) -> NormalizedEvent:
    return NormalizedEvent(
        provider=provider,
        event_key=f"{type_}-{seconds}-{message_id}",
        decision_ids=("d",),
        type=type_,
        provider_type=str(type_),
        name=None,
        value=None,
        occurred_at=NOW + timedelta(seconds=seconds),
        machine=machine,
        dispatch_id=None,
        raw={},
        message_id=message_id,
        user_agent=user_agent,
    )


def test_click_within_seconds_of_delivery_is_flagged_either_side() -> None:
    events = [_event("delivered"), _event("click", 4), _event("click", -3), _event("click", 60)]
    assert [event.machine for event in flag_machine(events)] == [False, True, True, False]


def test_window_is_configurable() -> None:
    events = [_event("delivered"), _event("click", 25)]
    assert flag_machine(events)[1].machine is False
    assert flag_machine(events, scanner_click_seconds=30)[1].machine is True
    assert flag_machine(events, scanner_click_seconds=0)[1].machine is False


def test_open_as_reference_is_opt_in() -> None:
    events = [_event("open"), _event("click", 2)]
    assert flag_machine(events)[1].machine is False
    flagged = flag_machine(events, click_reference_types=("delivered", "open"))
    assert flagged[1].machine is True


def test_clicks_on_other_messages_are_left_alone() -> None:
    events = [
        _event("delivered"),
        _event("click", 1, message_id="m-2"),
        _event("click", 1, message_id=None),
    ]
    assert [event.machine for event in flag_machine(events)] == [False, False, False]


def test_same_message_id_from_another_provider_does_not_match() -> None:
    events = [_event("delivered", provider="mailgun"), _event("click", 1)]
    assert flag_machine(events)[1].machine is False


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (compatible; Barracuda Sentinel)",
        "Mimecast-URL-Protect",
        "python-requests/2.31",
        "Mozilla/5.0 HeadlessChrome/120.0",
        "curl/8.4.0",
    ],
)
def test_scanner_user_agents_are_flagged(agent: str) -> None:
    assert flag_machine([_event("click", user_agent=agent)])[0].machine is True


def test_apple_privacy_proxy_user_agent_flags_opens_only() -> None:
    flagged = flag_machine(
        [_event("open", user_agent="Mozilla/5.0"), _event("click", user_agent="Mozilla/5.0")]
    )
    assert [event.machine for event in flagged] == [True, False]


def test_gmail_image_proxy_opens_are_real_opens() -> None:
    agent = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    assert flag_machine([_event("open", user_agent=agent)])[0].machine is False


def test_only_opens_and_clicks_are_ever_flagged() -> None:
    events = [_event("delivered", user_agent="curl/8"), _event("bounce", user_agent="curl/8")]
    assert [event.machine for event in flag_machine(events)] == [False, False]


def test_provider_flags_are_kept_and_flagging_twice_is_stable() -> None:
    events = [_event("open", machine=True), _event("delivered"), _event("click", 2)]
    once = flag_machine(events)
    assert flag_machine(once) == once
    assert [event.machine for event in once] == [True, False, True]

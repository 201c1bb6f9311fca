"""Flag machine opens and security-scanner clicks so they are never counted.

Three signals, applied to open and click events only:

1. The provider's own flag, already set by the adapter (SendGrid
   ``sg_machine_open``, Mailgun ``client-info.bot``, Braze ``machine_open`` and
   ``is_suspected_bot_click``; the generic adapter's ``machine``).
2. A known scanner or privacy-proxy user agent (``SCANNER_USER_AGENTS``,
   matched case-insensitively as substrings). Apple Mail Privacy Protection
   fetches the pixel with the bare user agent ``Mozilla/5.0``, so an *open*
   with exactly that user agent is flagged (a click with it is left alone).
3. Timing: a click within ``scanner_click_seconds`` (either side) of a
   reference event for the same message in the same batch. Link scanners at
   the receiving gateway follow every link seconds before or after delivery;
   a person rarely clicks within seconds of delivery. The reference is the
   delivery by default. Opens can be added with ``click_reference_types``, at
   the cost of flagging people who open and click quickly (the default keeps
   them, because the primary metric is clicks and undercounting them is the
   worse error).

Google's image proxy is deliberately not in the list: Gmail fetches images
when the person opens the message, so those opens are real.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from service.measuring.adapters.base import EventType, NormalizedEvent

SCANNER_USER_AGENTS: tuple[str, ...] = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "ppops-",
    "symantec",
    "messagelabs",
    "trendmicro",
    "trend micro",
    "sophos",
    "forcepoint",
    "fortiguard",
    "cisco ironport",
    "safelinks",
    "bingpreview",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "libwww-perl",
    "java/",
    "okhttp",
    "yahoomailproxy",
)

# Apple Mail Privacy Protection's pixel fetch sends exactly this user agent.
APPLE_MPP_USER_AGENT = "mozilla/5.0"

ENGAGEMENT_TYPES = frozenset({EventType.OPEN.value, EventType.CLICK.value})


def is_scanner_user_agent(
    user_agent: str | None,
    *,
    event_type: str | None,
    scanner_user_agents: Sequence[str] = SCANNER_USER_AGENTS,
) -> bool:
    if not user_agent:
        return False
    agent = user_agent.strip().lower()
    if event_type == EventType.OPEN.value and agent == APPLE_MPP_USER_AGENT:
        return True
    return any(marker in agent for marker in scanner_user_agents)


def flag_machine(
    events: Iterable[NormalizedEvent],
    *,
    scanner_click_seconds: float = 10.0,
    click_reference_types: Iterable[str] = (EventType.DELIVERED.value,),
    scanner_user_agents: Sequence[str] = SCANNER_USER_AGENTS,
) -> list[NormalizedEvent]:
    """Return the events with ``machine`` set where a signal says so.

    Flags only ever go from False to True, so calling this twice is safe.
    ``scanner_click_seconds <= 0`` turns the timing rule off.
    """
    events = list(events)
    references: dict[str, list[datetime]] = {}
    reference_types = frozenset(click_reference_types)
    for event in events:
        if event.message_id and event.type in reference_types:
            references.setdefault(_message_key(event), []).append(event.occurred_at)

    flagged: list[NormalizedEvent] = []
    for event in events:
        if event.machine or event.type not in ENGAGEMENT_TYPES:
            flagged.append(event)
            continue
        machine = is_scanner_user_agent(
            event.user_agent, event_type=event.type, scanner_user_agents=scanner_user_agents
        )
        if not machine and event.type == EventType.CLICK.value and scanner_click_seconds > 0:
            machine = _click_near_reference(event, references, scanner_click_seconds)
        flagged.append(dataclasses.replace(event, machine=True) if machine else event)
    return flagged


def _message_key(event: NormalizedEvent) -> str:
    return f"{event.provider}\x1f{event.message_id}"


def _click_near_reference(
    click: NormalizedEvent, references: dict[str, list[datetime]], seconds: float
) -> bool:
    if not click.message_id:
        return False
    for moment in references.get(_message_key(click), ()):
        if abs((click.occurred_at - moment).total_seconds()) <= seconds:
            return True
    return False

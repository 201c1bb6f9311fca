"""The scripted copywriter's reply logic: what a diligent copywriter answers to the
structured <data> block of a loop prompt.

It confirms or adds learnings citing real arm ids (of this campaign and, where the prompt
lists them, of the library's other campaigns), recommends retiring the eligible arms,
and writes new variants that follow the top learning (a question variant when a learning
about questions is active), exploring one more tag on top. The simulator (`banditloop
simulate --loop`) and the tests serve it over HTTP with `simulation.copywriter_server`, so
the real openai SDK and the real loop talk to it as to any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from variants.similarity import find_near_duplicate

KNOWN_TAGS = ("question", "personalized", "urgency", "emoji", "number")
BASES = (
    "the new season edit",
    "our spring collection",
    "the styles everyone is buying",
    "fresh picks in your size",
    "this week's best sellers",
    "everything under 30",
    "the pieces we restocked",
    "a wardrobe refresh",
    "the weekend essentials",
    "the looks our stylists love",
    "the comeback of a classic",
    "the colours of the season",
    "new shoes for long walks",
    "a gift they will keep",
    "the members-only preview",
    "the outdoor collection",
    "the travel-ready capsule",
    "denim that fits",
    "the limited colourways",
    "the cosy knit edit",
)
QUESTION_FORMS = (
    "Ready for {base}?",
    "Have you seen {base}?",
    "Looking for {base}?",
    "Want a first look at {base}?",
    "Is it time for {base}?",
)
STATEMENT_FORMS = ("Discover {base}", "Meet {base}", "Shop {base}", "Inside: {base}")


def read_data_block(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON document between <data> and </data> in the last user message."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            match = re.search(r"<data>\s*(.*?)\s*</data>", str(message.get("content")), re.DOTALL)
            if match:
                data: dict[str, Any] = json.loads(match.group(1))
                return data
    raise ValueError("no <data> block in the prompt")


def _tags_in(claim: str) -> list[str]:
    lowered = claim.casefold()
    return [tag for tag in KNOWN_TAGS if tag in lowered]


def _listed_contents(data: dict[str, Any]) -> list[tuple[int | str, str]]:
    corpus: list[tuple[int | str, str]] = []
    for arm in data.get("arms_ranked_worst_to_best", []) + data.get(
        "arms_without_enough_evidence", []
    ):
        corpus.append((arm["arm_id"], arm["content"]))
    corpus += [
        (f"rejected {i}", item["content"]) for i, item in enumerate(data["rejected_variants"])
    ]
    return corpus


def _compose(base: str, tags: list[str], form: int, allowed: list[str]) -> tuple[str, list[str]]:
    used: list[str] = []
    if "question" in tags:
        text = QUESTION_FORMS[form % len(QUESTION_FORMS)].format(base=base)
        used.append("question")
    else:
        text = STATEMENT_FORMS[form % len(STATEMENT_FORMS)].format(base=base)
    if "urgency" in tags:
        text = f"Last chance: {text[0].lower()}{text[1:]}"
        used.append("urgency")
    if "personalized" in tags and "first_name" in allowed:
        text = f"{{{{ first_name }}}}, {text[0].lower()}{text[1:]}"
        used.append("personalized")
    if "emoji" in tags:
        text = f"{text} ✨"
        used.append("emoji")
    return text, used


def write_variants(data: dict[str, Any], tags: list[str], count: int) -> list[dict[str, Any]]:
    """`count` new variants carrying `tags`, none a near-duplicate of a listed one."""
    corpus = _listed_contents(data)
    allowed = data["content_rules"]["allowed_placeholders"]
    max_length = data["content_rules"]["max_length"]
    start = len(corpus)  # a different starting point each generation
    variants: list[dict[str, Any]] = []
    for step in range(len(BASES) * len(QUESTION_FORMS)):
        if len(variants) >= count:
            break
        base = BASES[(start + step) % len(BASES)]
        text, used = _compose(base, tags, start + step // len(BASES), allowed)
        if len(text) > max_length or find_near_duplicate(text, corpus) is not None:
            continue
        corpus.append((f"new {len(variants)}", text))
        variants.append({"content": text, "tags": used, "rationale": "", "tests_learning": None})
    return variants


def exploration_order(data: dict[str, Any], seed: int = 0) -> list[str]:
    """The order in which a copywriter with no evidence tries the tags: a shuffle seeded by
    `seed` and the listed arms' texts, so it knows nothing of the audience's hidden effects
    (a fixed order would start on whichever tag happens to be listed first) and two runs
    shown the same arms with the same seed explore alike (common random numbers)."""
    listed = sorted(content for _id, content in _listed_contents(data))
    digest = hashlib.sha256(json.dumps([seed, listed], ensure_ascii=False).encode()).digest()
    order = list(KNOWN_TAGS)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


TENTATIVE = "Tentative:"
# A tag leans positive enough for a tentative claim when its estimate is at least one
# standard error above zero (about five to one that it helps, on a flat prior) while its
# 95% interval still includes no effect.
TENTATIVE_Z = 1.0


def _z(effect: dict[str, Any]) -> float:
    low, high = effect["interval_95"]
    spread = (high - low) / 3.92
    return float(effect["effect"]) / spread if spread > 0 else 0.0


def firm_claim(tag: str) -> str:
    return f"Variants tagged '{tag}' earn more successes than those without"


def tentative_claim(tag: str) -> str:
    return (
        f"{TENTATIVE} variants tagged '{tag}' may earn more successes than those without "
        "(the estimate leans this way; its 95% interval still includes no effect)"
    )


def write_reply(
    data: dict[str, Any],
    *,
    exploration_seed: int = 0,
    tentative: bool = True,
    combine: bool = True,
) -> dict[str, Any]:
    """What a diligent copywriter answers to the data block (`exploration_seed`: see
    `exploration_order`).

    Learnings: a firm claim for a tag whose interval excludes zero; with `tentative`, a
    claim labelled "Tentative:" for a tag that leans positive (`TENTATIVE_Z`) without
    that, superseded by the firm claim once the interval clears zero and pruned once the
    estimate turns negative; never confirmed while tentative (its support stays 1).
    Variants follow the claimed tags (most supported first; with `combine`, two at most,
    so a variant can carry both of what is known), else the best estimate, else explore.
    With neither flag it answers as it did before tentative claims existed."""
    ranked = data["arms_ranked_worst_to_best"]
    order = exploration_order(data, exploration_seed)
    effects = {item["tag"]: item for item in data.get("tag_effects_log_odds", [])}
    positive = sorted(
        (item for item in effects.values() if item["interval_95"][0] > 0),
        key=lambda item: -item["effect"],
    )
    leaning = sorted(
        (
            item
            for item in effects.values()
            if item["interval_95"][0] <= 0 < item["effect"] and _z(item) >= TENTATIVE_Z
        ),
        key=lambda item: -item["effect"],
    )

    def arms_with(tag: str) -> list[int]:
        # This campaign's arms, and the library's other campaigns' arms (citable too).
        return [
            arm["arm_id"] for arm in ranked + data.get("library_arms", []) if tag in arm["tags"]
        ]

    def op(
        kind: str, learning_id: str | None, claim: str | None, cited: list[int], tags: list[str]
    ) -> dict[str, Any]:
        return {
            "op": kind,
            "learning_id": learning_id,
            "claim": claim,
            "evidence_arm_ids": cited,
            "tags": tags,
        }

    ops: list[dict[str, Any]] = []
    claimed: set[str] = set()
    followed: list[tuple[str, str]] = []  # (tag, learning id) of the claims kept
    for learning in data["learnings"]:  # sorted by support, highest first
        tags = _tags_in(learning["claim"])
        claimed.update(tags)
        cited = [arm_id for tag in tags for arm_id in arms_with(tag)] or [
            arm["arm_id"] for arm in ranked[-1:]
        ]
        effect = effects.get(tags[0]) if tags else None
        if learning["claim"].startswith(TENTATIVE):
            if effect is not None and effect["effect"] <= 0:
                ops.append(op("prune", learning["id"], None, cited, []))
                continue
            if effect is not None and effect["interval_95"][0] > 0:
                ops.append(op("supersede", learning["id"], firm_claim(tags[0]), cited, tags[:1]))
            followed += [(tag, learning["id"]) for tag in tags[:1]]
            continue
        if effect is not None and effect["interval_95"][1] < 0:
            ops.append(op("prune", learning["id"], None, cited, []))
            continue
        followed += [(tag, learning["id"]) for tag in tags[:1]]
        if cited:
            ops.append(op("confirm", learning["id"], None, cited, []))
    for effect in positive:
        if effect["tag"] in claimed or not arms_with(effect["tag"]):
            continue
        ops.append(
            op("add", None, firm_claim(effect["tag"]), arms_with(effect["tag"]), [effect["tag"]])
        )
        claimed.add(effect["tag"])
    for effect in leaning if tentative else []:
        if effect["tag"] in claimed or not arms_with(effect["tag"]):
            continue
        ops.append(
            op(
                "add",
                None,
                tentative_claim(effect["tag"]),
                arms_with(effect["tag"]),
                [effect["tag"]],
            )
        )
        claimed.add(effect["tag"])

    follow, tests = _follow(
        followed, positive, leaning if tentative else [], effects, order, len(ranked)
    )
    follow = follow if combine else follow[:1]
    # Exploit what is known, and explore one more tag on top of it.
    extra = [tag for tag in order if tag not in follow]
    variants = write_variants(data, follow, max(1, data["max_new_variants"] - 1))
    variants += write_variants(
        data
        | {
            "rejected_variants": data["rejected_variants"]
            + [{"content": v["content"], "reason": ""} for v in variants]
        },
        follow + extra[: 1 + len(ranked) % 2][-1:],
        1,
    )
    for variant in variants:
        variant["tests_learning"] = tests
        variant["rationale"] = f"follows {', '.join(follow)}"
    return {
        "learning_ops": ops,
        "retire_arm_ids": [
            {"arm_id": arm_id, "reason": "clearly behind the leader"}
            for arm_id in data["retirement_eligible_arm_ids"]
        ],
        "new_variants": variants[: data["max_new_variants"]],
    }


def _follow(
    followed: list[tuple[str, str]],
    positive: list[dict[str, Any]],
    leaning: list[dict[str, Any]],
    effects: dict[str, dict[str, Any]],
    order: list[str],
    listed: int,
) -> tuple[list[str], str]:
    """The tags new variants carry, and what they test: the claimed tags (most supported
    first), then tags the evidence singles out or leans to, up to two; without any, the
    best estimate; without that, the next tag in the exploration order."""
    known = [tag for tag, _id in followed] + [e["tag"] for e in positive + leaning]
    follow = list(dict.fromkeys(known))[:2]
    if followed:
        return follow, followed[0][1]
    if follow:
        return follow, firm_claim(follow[0])
    promising = sorted(
        (item for item in effects.values() if item["effect"] > 0), key=lambda i: -i["effect"]
    )
    if promising:
        # No claim is certain yet, but a diligent copywriter leans on the best estimate.
        return [promising[0]["tag"]], f"Variants tagged '{promising[0]['tag']}' might earn more"
    tag = order[listed % len(order)]
    return [tag], f"Variants tagged '{tag}' might do better"


def write_mischief(data: dict[str, Any]) -> dict[str, Any]:
    """A reply that breaks every rule the loop enforces, plus one good variant."""
    reply = write_reply(data)
    eligible = set(data["retirement_eligible_arm_ids"])
    every_arm = data["arms_ranked_worst_to_best"] + data["arms_without_enough_evidence"]
    ineligible = [
        arm["arm_id"]
        for arm in every_arm
        if arm["arm_id"] not in eligible and arm["status"] == "live"
    ]
    retired = [arm["content"] for arm in every_arm if arm["status"] == "retired"]
    banned = data["content_rules"]["banned_phrases"]
    reply["retire_arm_ids"] = [
        {"arm_id": arm_id, "reason": "I do not like it"} for arm_id in ineligible[:1]
    ]
    reply["learning_ops"] = [
        {
            "op": "add",
            "learning_id": None,
            "claim": "Emoji always win",
            "evidence_arm_ids": [],
            "tags": [],
        },
        {
            "op": "add",
            "learning_id": None,
            "claim": "Arm 999999 proves everything",
            "evidence_arm_ids": [999999],
            "tags": [],
        },
    ]
    bad: list[dict[str, Any]] = []
    if banned:
        bad.append(
            {
                "content": f"{banned[0].upper()} on every order this week",
                "tags": [],
                "rationale": "",
                "tests_learning": None,
            }
        )
    if retired:
        bad.append(
            {
                "content": retired[0].upper() + "!",
                "tags": [],
                "rationale": "",
                "tests_learning": None,
            }
        )
    reply["new_variants"] = bad + reply["new_variants"][:1]
    return reply

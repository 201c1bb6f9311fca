"""Content rules for variants: hard blocks that stop a variant and warnings for the reviewer.

Blocks: empty text, over the maximum length, a banned phrase, an unknown or malformed
placeholder. Warnings: spam trigger words, ALL CAPS, repeated punctuation, more than one
emoji. Placeholders are written `{{ name }}` (spaces optional).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDER_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Single code points that render as emoji, plus regional-indicator pairs (flags). Modifiers
# (variation selector, skin tones) and zero-width joiners glue a sequence into one emoji.
_EMOJI_BASE = (
    "[\U0001f000-\U0001f0ff\U0001f100-\U0001f1e5\U0001f200-\U0001f2ff\U0001f300-\U0001f5ff"
    "\U0001f600-\U0001f64f\U0001f680-\U0001f6ff\U0001f700-\U0001f7ff\U0001f900-\U0001f9ff"
    "\U0001fa00-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]"
)
_EMOJI_FLAG = "[\U0001f1e6-\U0001f1ff]{2}"
_EMOJI_MODIFIER = "[\ufe0f\U0001f3fb-\U0001f3ff]"
EMOJI_RE = re.compile(
    f"(?:{_EMOJI_FLAG}|{_EMOJI_BASE}{_EMOJI_MODIFIER}*(?:\u200d{_EMOJI_BASE}{_EMOJI_MODIFIER}*)*)"
)

# Phrases that mail filters and readers associate with spam. A warning, not a block: the
# marketer decides, and "free shipping" can be a fine subject line.
SPAM_TRIGGERS: tuple[str, ...] = (
    "100% free",
    "act now",
    "apply now",
    "buy now",
    "cash",
    "click here",
    "congratulations",
    "double your",
    "earn money",
    "free",
    "guarantee",
    "guaranteed",
    "limited time",
    "no cost",
    "no obligation",
    "once in a lifetime",
    "order now",
    "risk-free",
    "risk free",
    "urgent",
    "winner",
    "you have been selected",
    "$$$",
)

ALL_CAPS_MIN_WORD = 4  # shorter all-caps words are usually acronyms (USA, FAQ, VIP)
ALL_CAPS_RATIO = 0.5  # share of upper-case letters that reads as shouting
ALL_CAPS_MIN_LETTERS = 10
MAX_EMOJI = 1
REPEATED_PUNCTUATION_RE = re.compile(r"[!?]{2,}|\.{4,}")


class ContentRules(BaseModel):
    """An experiment's content rules (the guardrails the marketer sets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_length: Annotated[int, Field(ge=1, le=10_000)] = 150
    banned_phrases: list[str] = Field(default_factory=list)
    allowed_placeholders: list[str] = Field(default_factory=lambda: ["first_name"])

    @field_validator("banned_phrases")
    @classmethod
    def _clean_phrases(cls, phrases: list[str]) -> list[str]:
        cleaned = [" ".join(phrase.split()) for phrase in phrases]
        if any(not phrase for phrase in cleaned):
            raise ValueError("banned phrases must not be empty")
        return cleaned

    @field_validator("allowed_placeholders")
    @classmethod
    def _check_placeholders(cls, names: list[str]) -> list[str]:
        for name in names:
            if not PLACEHOLDER_NAME_RE.fullmatch(name):
                raise ValueError(f"placeholder name {name!r} must be an identifier")
        return names


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class ContentReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    blocks: list[Violation]
    warnings: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.blocks

    def reasons(self) -> str:
        return "; ".join(violation.message for violation in self.blocks)


def extract_placeholders(text: str) -> list[str]:
    return [match.group(1) for match in PLACEHOLDER_RE.finditer(text)]


def count_emoji(text: str) -> int:
    return len(EMOJI_RE.findall(text))


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Whole-word match where the phrase starts or ends with a word character, so a banned
    # "free" does not block "freedom"; whitespace inside the phrase matches any whitespace.
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    start = r"(?<!\w)" if phrase[0].isalnum() or phrase[0] == "_" else ""
    end = r"(?!\w)" if phrase[-1].isalnum() or phrase[-1] == "_" else ""
    return re.compile(start + body + end, re.IGNORECASE)


def _contains_phrase(text: str, phrase: str) -> bool:
    return _phrase_pattern(phrase.casefold()).search(text.casefold()) is not None


def check_content(text: str, rules: ContentRules) -> ContentReport:
    """Check one variant's text against the rules; nothing here changes the text."""
    blocks: list[Violation] = []
    warnings: list[Violation] = []
    if not text.strip():
        blocks.append(Violation(code="empty", message="the text is empty"))
        return ContentReport(blocks=blocks, warnings=warnings)

    # Length counts the text as written, placeholders included: the rendered length
    # depends on the recipient, the stored text does not.
    if len(text) > rules.max_length:
        blocks.append(
            Violation(
                code="too_long",
                message=f"the text is {len(text)} characters, over the maximum of "
                f"{rules.max_length}",
            )
        )
    for phrase in rules.banned_phrases:
        if _contains_phrase(text, phrase):
            blocks.append(
                Violation(code="banned_phrase", message=f"contains the banned phrase {phrase!r}")
            )
    allowed = set(rules.allowed_placeholders)
    for name in dict.fromkeys(extract_placeholders(text)):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            blocks.append(
                Violation(
                    code="unknown_placeholder",
                    message=f"unknown placeholder {{{{ {name} }}}} (allowed: {known})",
                )
            )
    leftover = PLACEHOLDER_RE.sub("", text)
    if "{{" in leftover or "}}" in leftover:
        blocks.append(
            Violation(
                code="malformed_placeholder",
                message="unbalanced '{{' or '}}': write placeholders as {{ name }}",
            )
        )

    warnings.extend(_warnings(PLACEHOLDER_RE.sub(" ", text)))
    return ContentReport(blocks=blocks, warnings=warnings)


def _warnings(text: str) -> list[Violation]:
    warnings: list[Violation] = []
    spam = [phrase for phrase in SPAM_TRIGGERS if _contains_phrase(text, phrase)]
    if spam:
        warnings.append(
            Violation(code="spam_words", message=f"spam trigger words: {', '.join(spam)}")
        )

    shouted = [
        word
        for word in re.findall(r"[^\W\d_]+", text)
        if len(word) >= ALL_CAPS_MIN_WORD and word.isupper()
    ]
    letters = [char for char in text if char.isalpha()]
    upper_share = sum(char.isupper() for char in letters) / len(letters) if letters else 0.0
    if shouted:
        warnings.append(Violation(code="all_caps", message=f"ALL CAPS words: {', '.join(shouted)}"))
    elif len(letters) >= ALL_CAPS_MIN_LETTERS and upper_share > ALL_CAPS_RATIO:
        warnings.append(
            Violation(code="all_caps", message=f"{upper_share:.0%} of the letters are upper case")
        )

    repeated = REPEATED_PUNCTUATION_RE.findall(text)
    if repeated:
        warnings.append(
            Violation(
                code="repeated_punctuation",
                message=f"repeated punctuation: {' '.join(dict.fromkeys(repeated))}",
            )
        )

    emoji = count_emoji(text)
    if emoji > MAX_EMOJI:
        warnings.append(
            Violation(code="too_many_emoji", message=f"{emoji} emoji (more than {MAX_EMOJI})")
        )
    return warnings


def structural_tags(text: str) -> set[str]:
    """Tags that can be read off the text itself, so the tag regression does not depend on
    the proposer labelling them consistently."""
    tags: set[str] = set()
    bare = PLACEHOLDER_RE.sub("", text)
    if "?" in bare:
        tags.add("question")
    if count_emoji(bare):
        tags.add("emoji")
    if extract_placeholders(text):
        tags.add("personalized")
    return tags

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from variants.rules import (
    ContentRules,
    check_content,
    count_emoji,
    extract_placeholders,
    structural_tags,
)

RULES = ContentRules(banned_phrases=["free shipping", "Guaranteed"], max_length=60)


def codes(text: str, rules: ContentRules = RULES) -> tuple[list[str], list[str]]:
    report = check_content(text, rules)
    return [v.code for v in report.blocks], [v.code for v in report.warnings]


def test_clean_text_passes_without_warnings() -> None:
    report = check_content("Ready for spring, {{ first_name }}?", RULES)
    assert report.ok
    assert report.blocks == []
    assert report.warnings == []


def test_defaults() -> None:
    rules = ContentRules()
    assert rules.max_length == 150
    assert rules.banned_phrases == []
    assert rules.allowed_placeholders == ["first_name"]


@pytest.mark.parametrize(
    "text",
    ["Free Shipping on all orders", "FREE   SHIPPING today", "free\nshipping", "guaranteed!"],
)
def test_banned_phrase_is_case_and_spacing_insensitive(text: str) -> None:
    blocks, _ = codes(text)
    assert blocks == ["banned_phrase"]


def test_banned_phrase_matches_whole_words_only() -> None:
    rules = ContentRules(banned_phrases=["free"])
    assert codes("Freedom to roam", rules)[0] == []
    assert codes("Get it free.", rules)[0] == ["banned_phrase"]


def test_length_limit_is_inclusive() -> None:
    assert codes("x" * 60)[0] == []
    blocks, _ = codes("x" * 61)
    assert blocks == ["too_long"]
    assert "61 characters" in check_content("x" * 61, RULES).reasons()


@pytest.mark.parametrize(
    "text", ["Hi {{first_name}}", "Hi {{ first_name }}", "Hi {{  first_name}}"]
)
def test_allowed_placeholder_in_either_spelling(text: str) -> None:
    assert codes(text)[0] == []
    assert extract_placeholders(text) == ["first_name"]


def test_unknown_placeholder_blocks_once_per_name() -> None:
    report = check_content("{{ city }} and {{city}} and {{ first_name }}", RULES)
    assert [v.code for v in report.blocks] == ["unknown_placeholder"]
    assert "city" in report.blocks[0].message
    assert "first_name" in report.blocks[0].message  # says what is allowed


@pytest.mark.parametrize("text", ["Hi {{ first_name", "Hi first_name }}", "Hi {{ {{x}} }}"])
def test_malformed_placeholder_blocks(text: str) -> None:
    assert "malformed_placeholder" in codes(text)[0]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_blocks(text: str) -> None:
    assert codes(text)[0] == ["empty"]


def test_several_blocks_are_all_reported() -> None:
    blocks, _ = codes("Free shipping for {{ city }} " + "x" * 60)
    assert sorted(blocks) == ["banned_phrase", "too_long", "unknown_placeholder"]


def test_spam_words_warn() -> None:
    report = check_content("Act now: a winner every day", RULES)
    assert report.ok
    assert [v.code for v in report.warnings] == ["spam_words"]
    assert "act now" in report.warnings[0].message
    assert "winner" in report.warnings[0].message


def test_all_caps_word_warns_but_acronyms_do_not() -> None:
    assert codes("The SALE starts now")[1] == ["all_caps"]
    assert codes("New in the USA and the UK")[1] == []


def test_mostly_capitals_warns() -> None:
    assert codes("NEW ARR IVE DAY")[1] == ["all_caps"]


@pytest.mark.parametrize("text", ["Wow!!", "Really?!?", "Ready??", "Wait...."])
def test_repeated_punctuation_warns(text: str) -> None:
    assert codes(text)[1] == ["repeated_punctuation"]


def test_ellipsis_and_single_marks_are_fine() -> None:
    assert codes("Wait... it's here! Ready?")[1] == []


def test_one_emoji_is_fine_two_warn() -> None:
    assert codes("Spring is here 🌸")[1] == []
    assert codes("Spring is here 🌸🎉")[1] == ["too_many_emoji"]


def test_joined_emoji_sequences_count_once() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    thumbs = "\U0001f44d\U0001f3fd"
    flag = "\U0001f1eb\U0001f1f7"
    assert count_emoji(family) == 1
    assert count_emoji(thumbs) == 1
    assert count_emoji(flag) == 1
    assert count_emoji(f"{family} {thumbs}") == 2
    assert count_emoji("❤️") == 1


def test_structural_tags() -> None:
    assert structural_tags("{{ first_name }}, ready? 🌸") == {"question", "emoji", "personalized"}
    assert structural_tags("Shop now") == set()


@given(st.text(max_size=300))
def test_check_content_never_raises(text: str) -> None:
    report = check_content(text, RULES)
    assert report.ok == (not report.blocks)


@given(st.text(alphabet="abcdefghij klmnop,.", min_size=1, max_size=60).filter(str.strip))
def test_plain_lowercase_text_within_limit_is_never_blocked(text: str) -> None:
    assert check_content(text, ContentRules(max_length=60)).ok

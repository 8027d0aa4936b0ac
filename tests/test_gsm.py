from hypothesis import given, settings
from hypothesis import strategies as st

from bot.scripts.gsm import GSM7_BASIC, GSM7_EXTENDED, describe_character, sms_size


def test_plain_text_is_one_gsm7_segment_up_to_160():
    assert sms_size("a" * 160).segments == 1
    assert sms_size("a" * 161).segments == 2  # 153 a segment once split
    assert sms_size("a" * 306).segments == 2
    assert sms_size("a" * 307).segments == 3


def test_extended_characters_cost_two():
    size = sms_size("€" * 80)
    assert (size.encoding, size.units, size.segments) == ("GSM-7", 160, 1)


def test_a_curly_quote_switches_to_ucs2():
    size = sms_size("It’s" + "a" * 70)
    assert size.encoding == "UCS-2"
    assert size.non_gsm == ((2, "’"),)
    assert size.segments == 2


def test_emoji_count_as_two_units():
    assert sms_size("🙂").units == 2


def test_description_suggests_a_replacement():
    assert 'use "\'" instead' in describe_character("’")


@given(
    st.text(
        alphabet=st.sampled_from(GSM7_BASIC + GSM7_EXTENDED + "’🙂éÿ\u00a0"),
        max_size=400,
    )
    | st.text(max_size=200)
)
@settings(max_examples=300, deadline=None)
def test_size_is_the_character_by_character_count(text):
    # `sms_size` takes a shortcut for texts of basic characters only: the same answer as
    # counting each character.
    outside = tuple(
        (i, ch) for i, ch in enumerate(text) if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED
    )
    if outside:
        units = len(text.encode("utf-16-le")) // 2
        expected = ("UCS-2", units, 1 if units <= 70 else -(-units // 67), outside)
    else:
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        expected = ("GSM-7", units, 1 if units <= 160 else -(-units // 153), ())
    size = sms_size(text)
    assert (size.encoding, size.units, size.segments, size.non_gsm) == expected

from bot.scripts.gsm import describe_character, sms_size


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

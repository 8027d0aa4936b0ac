import pytest

from bot.phone_numbers import InvalidPhoneNumber, normalise_phone


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("07700 900123", "+447700900123"),  # Ofcom's drama range: real to somebody
        ("+44 7700 900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        ("020 7946 0000", "+442079460000"),
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_numbers_as_people_write_them(written, stored):
    assert normalise_phone(written) == stored


@pytest.mark.parametrize("written", ["12345", "7946 0000"])
def test_local_only_numbers_are_refused_with_the_reason(written):
    # phonenumbers calls these "possible", but only when dialled inside their own area.
    with pytest.raises(InvalidPhoneNumber, match="area code"):
        normalise_phone(written)


@pytest.mark.parametrize("written", ["", "hello", "0770090012345678"])
def test_not_numbers_are_refused(written):
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone(written)


def test_letters_are_refused_not_read_as_keypad_digits():
    import pytest

    from bot.phone_numbers import InvalidPhoneNumber, normalise_phone

    for typed in ("07700 9OO0I4", "+44 7700 900l23"):
        with pytest.raises(InvalidPhoneNumber, match="has letters in it"):
            normalise_phone(typed)
    with pytest.raises(InvalidPhoneNumber, match="is not a phone number"):
        normalise_phone("0800 FLOWERS")

import pytest

from bot.phone import InvalidPhoneNumber, normalise_phone


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

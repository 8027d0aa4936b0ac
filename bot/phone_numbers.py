"""Phone numbers as people write them (`07700 900123`) into E.164 (`+447700900123`)."""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "GB"


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we could ever call or text."""


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("no phone number given")
    if any(ch.isalpha() for ch in text):
        # phonenumbers reads letters as a keypad does (O is 6, I is 4): "07700 9OO0I4" would
        # become a stranger's number, and a campaign would text them.
        if sum(ch.isdigit() for ch in text) >= 7:
            raise InvalidPhoneNumber(
                f"{raw!r} has letters in it: a phone number is digits only (an O for a 0?)"
            )
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number ({exc._msg})") from None
    # "Possible" (the right length for its country) rather than "valid": numbers in ranges the
    # metadata does not know yet, or Ofcom's drama range, are real to somebody; Twilio tells
    # us (permanently) if one cannot be reached. A number only dialable within its own area
    # ("12345" is "possible" as a local number) is not one we can ever reach.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise InvalidPhoneNumber(
            f"{raw!r} is too short: give the whole number with its area code, like 07700 900123"
        )
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number of the right length")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_landline(number: str, region: str = DEFAULT_REGION) -> bool:
    """Is this number a fixed line (a landline), which cannot take texts?

    UK numbers are read from Ofcom's numbering plan, not the metadata's list of ranges: every
    01 and 02 number is geographic, a fixed line, and 03 numbers are charged and routed as
    geographic ones (no mobile network holds them). The metadata calls Ofcom's drama range
    (01632 960xxx) and ranges it has not learnt yet "not valid", which would hide real
    landlines; and a prefix costs nothing for a panel of 100,000. Elsewhere phonenumbers
    decides: FIXED_LINE only, since FIXED_LINE_OR_MOBILE (all of North America) may well be
    a mobile, and anything it cannot read is not said to be a landline.
    """
    if number.startswith("+44"):
        return number[3:4] in ("1", "2", "3")
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False
    if parsed.country_code == 44:  # written nationally: "020 7946 0123"
        return str(parsed.national_number)[:1] in ("1", "2", "3")
    return phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.FIXED_LINE

"""Bringing in a panel: JSON or CSV rows, upserted by external id, else by an address.

A row's address fields are the channels' own (`Channel.contact_field`, from the registry:
the outside contract names them); each becomes a contact point on every channel that reads
it (a phone number: texts and calls), normalised by that channel. A person is matched by
external id, else by any of their addresses, in the registry's order.

Every bad row is reported with its row number and reason while good rows are kept; importing
the same file twice creates nobody twice. Rows are handled a thousand at a time with a few
queries per batch, so a 100,000-person panel imports in seconds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from bot import channels, conversations
from bot.config import Settings
from bot.conversations.suppression import suppressed
from bot.i18n import LANGUAGES, SWITCH_WORDS
from bot.storage import contacts
from bot.storage.models import ConsentEvent, ContactPoint, Participant, utcnow
from bot.storage.status import Consent
from bot.text import clean_name, clean_text, external_id_problem, normal_external_id

COLUMNS = (
    "name",
    *channels.CONTACT_FIELDS,
    "channel",
    "tags",
    "recontact",
    "external_id",
    "language",
)
# The fields that can say who a row is.
KEYS = (*channels.CONTACT_FIELDS, "external_id")
CHANNELS = channels.NAMES
BATCH = 1000
# Longest field we read from a CSV: names are cut to 200 and ids to 100; anything this long
# is a mistake (a pasted document, a broken quote), reported on its row.
MAX_CSV_FIELD = 10_000
# csv's own limit (128 KB) raises mid-file and loses every row after it; the body is capped
# at 20 MB before it gets here, so read anything and judge field lengths ourselves.
csv.field_size_limit(max(csv.field_size_limit(), 32 * 1024 * 1024))
# Marks a CSV row that could not be used; not a string, so JSON rows can never carry it.
_UNREADABLE = object()
_ROW = object()  # a CSV row's number as a spreadsheet shows it, blank rows counted
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}


class RowError(ValueError):
    pass


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0  # people a row changed
    unchanged: int = 0  # people a row matched and left as they were (an import run again)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Rows imported, except for a part kept as it was, and why: {"row", "note"}.
    notes: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class CleanRow:
    row: int
    name: str | None
    # (field, channel, address): each address field given, on each channel that reads it,
    # as that channel normalises it.
    addresses: tuple[tuple[str, str, str], ...]
    channel: str | None
    tags: tuple[str, ...]
    recontact: bool | None
    external_id: str | None
    given: frozenset[str]  # which fields the row actually set
    language: str | None = None  # en | cy


def read_csv(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CSV text -> (rows as dicts, header problems). Tags are `;`-separated, recontact yes/no.

    Any line ending is accepted (`\n`, `\r\n`, and old Macs' `\r`): newline="" hands line
    endings to the csv module, which knows all three.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        fieldnames = next(reader, None) or []
    except csv.Error as exc:
        return [], [{"row": 1, "error": f"the header cannot be read: {exc}"}]
    headers = [h.strip().lower() for h in fieldnames]
    unknown = [h for h in headers if h and h not in COLUMNS]
    if not headers or not (set(KEYS) & set(headers)):
        if len(headers) == 1 and ";" in headers[0]:
            # Excel saves "CSV" with semicolons where a comma is the decimal mark.
            return [], [
                {
                    "row": 1,
                    "error": "the columns are separated by semicolons (;): save the file as"
                    " 'CSV UTF-8 (comma delimited)', or replace the semicolons with commas",
                }
            ]
        return [], [{"row": 1, "error": f"the header must name some of: {', '.join(COLUMNS)}"}]
    problems = [
        {"row": 1, "error": f"unknown column {h!r} ignored (known: {', '.join(COLUMNS)})"}
        for h in unknown
    ]
    rows: list[dict[str, Any]] = []
    number = 1
    try:
        for number, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue  # a blank row (a spreadsheet's ",,,,"): nobody, but it is counted
            raw: dict[str | None, Any] = dict(zip(fieldnames, values, strict=False))
            if len(values) > len(fieldnames):
                raw[None] = values[len(fieldnames) :]
            rows.append({**_csv_row(raw), _ROW: number})
    except csv.Error as exc:
        problems.append(
            {"row": number + 1, "error": f"the CSV cannot be read from this row on: {exc}"}
        )
    return rows, problems


def _csv_row(raw: Mapping[str | None, Any]) -> dict[Any, Any]:
    values = [v for v in raw.values() if isinstance(v, str)]
    longest = max((len(v) for v in values), default=0)
    if longest > MAX_CSV_FIELD:
        return {
            _UNREADABLE: f"a field is too long ({longest:,} characters; at most {MAX_CSV_FIELD:,})"
        }
    row = {
        (k or "").strip().lower(): (v or "").strip()
        for k, v in raw.items()
        if k and isinstance(v, str)
    }
    if "tags" in row:
        row["tags"] = [t.strip() for t in row["tags"].split(";") if t.strip()]
    return {k: v for k, v in row.items() if k in COLUMNS and v not in ("", [])}


def clean(number: int, raw: Mapping[str, Any]) -> CleanRow:
    if not isinstance(raw, Mapping):
        raise RowError(f"each participant must be an object with {', '.join(COLUMNS)}")
    if _UNREADABLE in raw:
        raise RowError(raw[_UNREADABLE])
    raw = {k: clean_text(v) if isinstance(v, str) else v for k, v in raw.items()}
    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        raise RowError(f"unknown field {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    given = frozenset(k for k, v in raw.items() if v is not None and v != "")
    addresses = _addresses(raw)
    external = raw.get("external_id")
    external = (normal_external_id(str(external)).strip() or None) if external is not None else None
    if external is not None and len(external) > 100:
        raise RowError("external_id is longer than 100 characters")
    if external is not None and (problem := external_id_problem(external)):
        raise RowError(f"external_id {external!r} {problem}")
    if not addresses and external is None:
        raise RowError(f"needs a {', a '.join(channels.CONTACT_FIELDS)} or an external_id")
    channel = raw.get("channel")
    if channel not in (None, ""):
        channel = str(channel).strip().lower()
        if channel not in CHANNELS:
            raise RowError(
                f"channel must be one of {', '.join(CHANNELS)}, got {raw.get('channel')!r}"
            )
    else:
        channel = None
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(";")]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowError("tags must be a list of words")
    tags = [clean_name(t)[:100] for t in tags]
    recontact = raw.get("recontact")
    if isinstance(recontact, str):
        lowered = recontact.strip().lower()
        if lowered in YES:
            recontact = True
        elif lowered in NO:
            recontact = False
        elif lowered == "":
            recontact = None
        else:
            raise RowError(f"recontact must be yes or no, got {recontact!r}")
    elif recontact is not None and not isinstance(recontact, bool):
        raise RowError("recontact must be yes or no")
    name = raw.get("name")
    name = (clean_name(name)[:200] or None) if name is not None else None
    language = raw.get("language")
    if language not in (None, ""):
        said = str(language).strip().casefold()
        language = SWITCH_WORDS.get(said, said)
        if language not in LANGUAGES:
            raise RowError(
                f"language must be one of {', '.join(LANGUAGES)}, got {raw.get('language')!r}"
            )
    else:
        language = None
    return CleanRow(
        number,
        name,
        addresses,
        channel,
        tuple(t for t in (t.strip() for t in tags) if t),
        recontact,
        external,
        given,
        language,
    )


def _addresses(raw: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(field, channel, address) for each address field the row gives, normalised by each
    channel that reads it; a bad one is the row's error, in the channel's words."""
    found = []
    for name in channels.CONTACT_FIELDS:
        value = raw.get(name)
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f"{name} must be text or a whole number")
        for channel in channels.for_field(name):
            try:
                found.append((name, channel.name, channel.normalise(str(value))))
            except channels.InvalidAddress as exc:
                raise RowError(str(exc)) from None
    return tuple(found)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def import_rows(
    session: Session,
    settings: Settings,
    rows: Iterable[Mapping[str, Any]],
    replace_tags: bool = False,
    source: str = "import",
    first_row: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert rows (numbered from `first_row`, as a person would count them in their file)."""
    report = ImportReport()
    cleaned: list[CleanRow] = []
    first_seen: dict[tuple[str, Any], int] = {}
    for number, raw in enumerate(rows, start=first_row):
        if isinstance(raw, Mapping) and _ROW in raw:
            number = raw[_ROW]
            raw = {k: v for k, v in raw.items() if k is not _ROW}
        try:
            row = clean(number, raw)
        except RowError as exc:
            report.rejected.append({"row": number, "error": str(exc)})
            continue
        keys: list[tuple[str, Any]] = [(channel, address) for _, channel, address in row.addresses]
        if row.external_id:
            keys.append(("external_id", row.external_id))
        earlier = next((first_seen[k] for k in keys if k in first_seen), None)
        if earlier is not None:
            # Which of two rows for one person is right is for staff to say, not a guess.
            report.rejected.append(
                {"row": number, "error": f"the same person as row {earlier}: keep one row each"}
            )
            continue
        first_seen.update((k, number) for k in keys)
        cleaned.append(row)
    for chunk in _chunks(cleaned, BATCH):
        _upsert_chunk(session, settings, chunk, replace_tags, source, report)
        session.flush()
        if progress:
            progress(len(chunk))
    report.rejected.sort(key=lambda r: r["row"])
    return report


def _upsert_chunk(
    session: Session,
    settings: Settings,
    chunk: list[CleanRow],
    replace_tags: bool,
    source: str,
    report: ImportReport,
) -> None:
    externals = {r.external_id for r in chunk if r.external_id}
    wanted: dict[str, set[str]] = {}
    for r in chunk:
        for _, channel, address in r.addresses:
            wanted.setdefault(channel, set()).add(address)
    known: set[int] = set()
    if externals:
        known.update(
            session.scalars(select(Participant.id).where(Participant.external_id.in_(externals)))
        )
    for channel, addresses in wanted.items():
        known.update(
            session.scalars(
                select(ContactPoint.participant_id).where(
                    ContactPoint.channel == channel, ContactPoint.address.in_(addresses)
                )
            )
        )
    # The people this chunk names, locked in the one order before anything of theirs is read:
    # an answer in flight (their own recontact yes/no, a STOP) commits first, and the file
    # then sees it instead of writing over it.
    locked = conversations.lock_people(session, known)
    found: dict[int, Participant] = {}
    if locked:
        people = (
            select(Participant)
            .where(Participant.id.in_(locked))
            .options(selectinload(Participant.contact_points))
            .execution_options(populate_existing=True)
        )
        found = {p.id: p for p in session.scalars(people)}
    by_external = {p.external_id: p for p in found.values() if p.external_id}
    by_address = {
        (point.channel, point.address): p for p in found.values() for point in p.contact_points
    }
    everyone = {a for addrs in wanted.values() for a in addrs}
    opted_out_then_erased = suppressed(session, settings, everyone)
    answered_themselves = _own_recontact_answers(session, list(found))
    consent: list[dict[str, Any]] = []
    now = utcnow()
    for row in chunk:
        person = by_external.get(row.external_id) if row.external_id else None
        if person is None:
            person = next(
                (by_address[(c, a)] for _, c, a in row.addresses if (c, a) in by_address), None
            )
        clash = _clash(person, row, by_address, by_external)
        if clash:
            report.rejected.append({"row": row.row, "error": clash})
            continue
        is_suppressed = any(a in opted_out_then_erased for _, _, a in row.addresses)
        if is_suppressed and person is None:
            report.rejected.append(
                {
                    "row": row.row,
                    "error": "this person asked not to be contacted and their data was erased; "
                    "they can text START to rejoin",
                }
            )
            continue
        created = person is None
        if created:
            person = Participant(
                tags=[], joined_via=source, opted_out=False, created_at=now, updated_at=now
            )
            session.add(person)
        before_recontact = person.recontact
        changed = False
        for attr in ("name", "channel", "external_id", "language"):
            if attr in row.given and getattr(person, attr) != getattr(row, attr):
                setattr(person, attr, getattr(row, attr))
                changed = True
        # A new person's addresses in their order: their own channel first, then the
        # registry's; an address a known person is given takes the old one's place.
        order = [c.name for c in channels.all_channels()]
        for _, channel, address in sorted(
            row.addresses, key=lambda a: (a[1] != row.channel, order.index(a[1]))
        ):
            if contacts.replace(person, channel, address, now):
                changed = True
        if "tags" in row.given or replace_tags:
            tags = _merged_tags([] if replace_tags else person.tags or [], row.tags)
            if tags != person.tags:
                person.tags = tags
                changed = True
        own = answered_themselves.get(person.id) if not created else None
        if row.recontact is not None and row.recontact != before_recontact and own is not None:
            # What a person said themselves, by text, call or chat, is not undone by a file.
            said = "yes" if own.kind == Consent.RECONTACT_YES else "no"
            report.notes.append(
                {
                    "row": row.row,
                    "note": f"recontact kept as {said}: they answered that themselves"
                    f" by {own.how} on {own.at:%d %b %Y}",
                }
            )
        elif row.recontact is not None and row.recontact != before_recontact:
            person.recontact = row.recontact
            changed = True
            consent.append(
                {"kind": "recontact_yes" if row.recontact else "recontact_no", "person": person}
            )
        if row.external_id:
            by_external[row.external_id] = person
        for _, channel, address in row.addresses:
            by_address[(channel, address)] = person
        if created:
            report.created += 1
        elif changed:
            report.updated += 1
        else:
            report.unchanged += 1
    if consent:
        session.flush()  # ids for the new people
        session.execute(
            insert(ConsentEvent.__table__),
            [
                {
                    "participant_id": c["person"].id,
                    "kind": c["kind"],
                    "how": source,
                    "detail": None,
                    "at": now,
                }
                for c in consent
            ],
        )


def _merged_tags(kept: Iterable[str], added: Iterable[str]) -> list[str]:
    """Tags once each, whatever their case: a tag already held keeps its spelling."""
    merged: dict[str, str] = {}
    for tag in [*kept, *added]:
        merged.setdefault(tag.casefold(), tag)
    return list(merged.values())


def _own_recontact_answers(session: Session, person_ids: list[int]) -> dict[int, Any]:
    """Each person's latest answer about hearing back that they gave themselves (on a channel,
    not through an import or staff), if any."""
    if not person_ids:
        return {}
    found: dict[int, Any] = {}
    for event in session.scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.participant_id.in_(person_ids),
            ConsentEvent.kind.in_([Consent.RECONTACT_YES, Consent.RECONTACT_NO]),
            ConsentEvent.how.in_(channels.NAMES),
        )
        .order_by(ConsentEvent.at, ConsentEvent.id)
    ):
        found[event.participant_id] = event
    return found


def _clash(
    person: Participant | None,
    row: CleanRow,
    by_address: dict[tuple[str, str], Participant],
    by_external: dict[str, Participant],
) -> str | None:
    """A row that would take another person's address."""
    for name, channel, address in row.addresses:
        holder = by_address.get((channel, address))
        if holder is not None and holder is not person:
            return f"{name} {address} already belongs to another participant"
    if (
        person is not None
        and row.external_id
        and person.external_id
        and person.external_id != row.external_id
    ):
        fields = " or ".join(dict.fromkeys(name for name, _, _ in row.addresses))
        return (
            f"this {fields or 'address'} belongs to participant {person.external_id!r},"
            f" not {row.external_id!r}"
        )
    if person is None and row.external_id and row.external_id in by_external:
        return f"external_id {row.external_id!r} already belongs to another participant"
    return None

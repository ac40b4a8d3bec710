"""Convert the official data (units before 1 July 2025, old-to-new commune mapping) into a reorganisation file.

The data has traps; the converter reports each, by name and code, and never hides one
(docs/registry.md, "The 2025 converter"):

- ``reused_code``: every new commune takes the code of one of its predecessors, so a code names two
  units, before and after the date; units are matched by code, the name only a cross-check within
  the old district;
- ``code_of_differently_named_predecessor``: the new commune's code was held by a predecessor of
  another name (new Xã Vĩnh An 30604 was Thị trấn Vĩnh Bình): matching by name picks the wrong unit;
- ``tone_mark_spelling``: names that differ only in where the tone mark sits (Hoà / Hòa) match after
  tone-placement normalisation, never by stripping marks (Hòa An 30679 and Hoà An 30940 are
  different communes: ``tone_variants_in_old_data``);
- ``partial_split``: an old commune divided between several new ones (type ``partial``);
- ``single_predecessor``: a new commune with one predecessor is that unit renamed or re-kinded, not a merger;
- ``repeated_kind_name``: the same kind and name in several places (three Xã Vĩnh Phú);
- ``kind_capitalisation``: "Thị Trấn" for "Thị trấn"; ``whitespace_in_name``: a doubled space in a name;
- ``province_code``: 91 was Kiên Giang's code and is the new province's;
- ``missing_from_mapping``: an old commune in no row of the mapping (Xã Tân Phú 30622);
- ``not_in_any_file``: provincial bodies, departments and schools are in neither file.

Where it has to decide, it decides as ``DECISIONS`` says and writes why as a comment in the output.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

EFFECTIVE = date(2025, 7, 1)  # Resolution 1654 Điều 2: the new communes operate from 1 July 2025
PROVINCE_CODE = "91"
TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # huyền, sắc, ngã, hỏi, nặng
KIND_PREFIXES = ("Đặc khu", "Thị trấn", "Phường", "Xã")

# Decisions the data does not make, each followed in the output with its reason as a comment.
MISSING_INTO = {"30622": ("30604", "Resolution 1654 Điều 1 khoản 31 merges xã Tân Phú into xã Vĩnh An; the mapping file has no row for it")}


@dataclass(frozen=True)
class Trap:
    """One trap found in the data: its name, the code it concerns, and what it is."""

    name: str
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.name} {self.code}: {self.detail}"


@dataclass
class Conversion:
    """The reorganisation file's text and every trap found."""

    yaml: str
    traps: list[Trap] = field(default_factory=list)
    operations: int = 0

    def by_name(self, name: str) -> list[Trap]:
        """The traps of one name."""
        return [t for t in self.traps if t.name == name]


def tone_normal(text: str) -> str:
    """Put each syllable's tone mark where the traditional spelling puts it (Hoà -> Hòa), and fold case.

    Only the placement changes: the marks themselves are kept, so Hòa An and Hoà An compare equal
    while Hòa and Hoa stay different. In an open syllable ending in oa, oe or uy (not after q), the
    mark goes on the first vowel of the pair.
    """
    words = []
    for word in unicodedata.normalize("NFC", text).casefold().split():
        decomposed = unicodedata.normalize("NFD", word)
        tone = next((c for c in decomposed if c in TONES), None)
        bare = "".join(c for c in decomposed if c not in TONES)
        plain = unicodedata.normalize("NFC", bare)
        if tone and len(plain) >= 2 and plain[-2:] in ("oa", "oe", "uy") and not plain[:-2].endswith("q"):
            base = unicodedata.normalize("NFD", plain)
            # put the tone after the first vowel of the final pair (its decomposed position)
            index = len(base) - 1
            while index > 0 and unicodedata.combining(base[index]):
                index -= 1
            # base[index] is the last vowel's letter; the pair's first vowel is the letter before it
            first = index - 1
            while first > 0 and unicodedata.combining(base[first]):
                first -= 1
            word = unicodedata.normalize("NFC", base[: first + 1] + tone + base[first + 1 :])
        else:
            word = unicodedata.normalize("NFC", decomposed)
        words.append(word)
    return " ".join(words)


def _kind_of(full_name: str) -> tuple[str, str]:
    for prefix in KIND_PREFIXES:
        if full_name.casefold().startswith(prefix.casefold() + " "):
            return prefix, full_name[len(prefix) + 1 :]
    return "", full_name


def _normal_kind(kind: str) -> str:
    return kind[:1].upper() + kind[1:].lower()


def _pc_name(kind: str, name: str) -> str:
    return f"UBND {_normal_kind(kind).lower()} {name}"


def _district_pc_name(kind: str, name: str) -> str:
    return f"UBND {kind.lower()} {name}"


def old_units(units: dict[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The districts and communes before 1 July 2025, by code (each commune with its district and province)."""
    districts: dict[str, dict[str, str]] = {}
    communes: dict[str, dict[str, str]] = {}
    for province in units["provinces"]:
        for district in province["districts"]:
            districts[district["code"]] = {"name": district["name"], "kind": district["kind"], "province": province["code"]}
            for commune in district["communes"]:
                communes[commune["code"]] = {
                    "name": commune["name"], "kind": commune["kind"], "district": district["code"], "province": province["code"],
                }
    return districts, communes


def convert(units: dict[str, Any], merges: dict[str, Any]) -> Conversion:
    """Convert the two official files (parsed JSON) into a reorganisation file effective 1 July 2025."""
    districts, communes = old_units(units)
    traps: list[Trap] = []
    out = io.StringIO()
    ops = 0

    def w(line: str = "") -> None:
        out.write(line + "\n")

    # ---- traps of the old data alone
    for code, c in sorted(communes.items()):
        if c["kind"] != _normal_kind(c["kind"]):
            traps.append(Trap("kind_capitalisation", code, f"kind written {c['kind']!r} for {_normal_kind(c['kind'])!r} ({c['name']})"))
    pairs = Counter((_normal_kind(c["kind"]), tone_normal(c["name"])) for c in communes.values())
    for (kind, name), n in sorted(pairs.items()):
        if n > 1:
            codes = sorted(k for k, c in communes.items() if (_normal_kind(c["kind"]), tone_normal(c["name"])) == (kind, name))
            for code in codes:
                traps.append(Trap("repeated_kind_name", code, f"{kind} {communes[code]['name']} appears {n} times ({', '.join(codes)})"))
    district_pairs = Counter((d["kind"], d["name"]) for d in districts.values())
    for code, d in sorted(districts.items()):
        if district_pairs[(d["kind"], d["name"])] > 1:
            traps.append(Trap("repeated_kind_name", code, f"{d['kind']} {d['name']} appears {district_pairs[(d['kind'], d['name'])]} times"))
    spelled: dict[str, set[str]] = defaultdict(set)
    for c in communes.values():
        spelled[tone_normal(c["name"])].add(c["name"])
    for code, c in sorted(communes.items()):
        if len(spelled[tone_normal(c["name"])]) > 1:
            variants = " / ".join(sorted(spelled[tone_normal(c["name"])]))
            traps.append(Trap("tone_variants_in_old_data", code, f"{c['name']} is spelled {variants} in the old data; each code is its own commune"))

    # ---- the mapping
    new_rows = merges["communes"]
    seen: Counter[str] = Counter(m["old_id"] for row in new_rows for m in row["merges"])
    partial: dict[str, list[str]] = defaultdict(list)
    for row in new_rows:
        for m in row["merges"]:
            if m["type"] == "partial":
                partial[m["old_id"]].append(row["level2_id"])
    for code in sorted(set(communes) - set(seen)):
        traps.append(Trap("missing_from_mapping", code, f"{communes[code]['kind']} {communes[code]['name']} is in no row of the mapping"))
    old_province = [p["old_id"] for p in merges["province"]["merges"]]
    traps.append(Trap("province_code", PROVINCE_CODE, f"{PROVINCE_CODE} was Kiên Giang's code and is the new province's ({merges['province']['name']}); merged: {', '.join(old_province)}"))
    traps.append(Trap("not_in_any_file", "-", "the provincial bodies of Kiên Giang merging into An Giang's, every department (Sở), branch and school are in no file: add them by hand"))

    w("# The reorganisation of An Giang on 1 July 2025 (Resolution 1654/NQ-UBTVQH15), in qmsflow's mapping format")
    w("# (docs/registry.md). Generated by `qmsflow reorganize convert` from the official data in qmsflow/data/,")
    w("# then reviewed against the Resolution. Effective 1 July 2025: the day the new communes began to operate")
    w("# (Điều 2 khoản 2), not the adoption on 16 June 2025.")
    w("# Units are matched by code, never by name (every new commune reuses a predecessor's code); names are a")
    w("# cross-check after tone-placement normalisation (Hoà = Hòa), never with the marks stripped.")
    w("# NOT IN ANY FILE: Kiên Giang's provincial departments, branches and schools, and An Giang's; add their")
    w("# merges (op: merge, into_existing) and the moves of schools (THCS to their UBND xã, THPT to Sở GD&ĐT) and")
    w("# of user accounts (op: move_users) for the units your installation holds.")
    w("operations:")
    w("  # The provinces: Kiên Giang (91) merges into An Giang (89), which keeps its identity and takes code 91.")
    w(f"  - {{op: merge, id: province-91, effective: {EFFECTIVE}, from: [\"91\"], into_existing: \"89\"}}")
    w(f"  - {{op: change_code, id: province-code-91, effective: {EFFECTIVE}, unit: \"89\", code: \"{PROVINCE_CODE}\"}}")
    ops += 2
    splits: list[tuple[str, str, list[str]]] = []
    moves: list[str] = []
    for row in new_rows:
        code = row["level2_id"]
        kind, name = _kind_of(row["name"])
        preds = [m for m in row["merges"]]
        extra = [old for old, (into, _) in MISSING_INTO.items() if into == code]
        holder = next((m for m in preds if m["old_id"] == code), None)
        traps.append(Trap("reused_code", code, f"new {row['name']} takes the code of {holder['name'] if holder else '?'}"))
        if holder is not None and tone_normal(_kind_of(holder["name"])[1]) != tone_normal(name):
            traps.append(Trap("code_of_differently_named_predecessor", code, f"new {row['name']} has the code of {holder['name']}, not of a predecessor of its name"))
        for m in preds:
            if "  " in m["name"] or m["name"] != m["name"].strip():
                traps.append(Trap("whitespace_in_name", m["old_id"], f"the mapping writes {m['name']!r} with extra spaces"))
        held = " ".join(_kind_of(holder["name"])[1].split()) if holder is not None else ""
        if holder is not None and held != name and tone_normal(held) == tone_normal(name):
            traps.append(Trap("tone_mark_spelling", code, f"{holder['name']} becomes {row['name']}: the same name, the tone mark placed differently"))
        for m in preds:  # cross-check the mapping's old names against the units file, within the district
            old = communes.get(m["old_id"])
            if old is None:
                traps.append(Trap("unknown_old_code", m["old_id"], f"{m['name']} (mapping of {row['name']}) is not in the units file"))
                continue
            old_kind, old_name = _kind_of(m["name"])
            if tone_normal(old_name) != tone_normal(old["name"]) or _normal_kind(old_kind) != _normal_kind(old["kind"]):
                traps.append(Trap("name_mismatch", m["old_id"], f"the mapping says {m['name']}, the units file {old['kind']} {old['name']}"))
        w("")
        full = [m["old_id"] for m in preds if m["type"] == "full"] + extra
        names = ", ".join(f"{m['old_id']} {m['name']}" + (" (part)" if m["type"] == "partial" else "") for m in preds)
        w(f"  # {row['name']} {code}: {names}")
        for added in extra:
            w(f"  # DECIDED: {added} {communes[added]['kind']} {communes[added]['name']} added: {MISSING_INTO[added][1]}.")
        if len(preds) == 1 and not extra:
            only = preds[0]
            single = communes.get(only["old_id"], {"kind": "", "name": ""})
            traps.append(Trap("single_predecessor", code, f"{only['name']} is the only predecessor of {row['name']}: a rename or kind change, not a merger"))
            w("  # One predecessor: the same unit, renamed or re-kinded; its cases stay its own.")
            new_name = _pc_name(kind, name)
            if new_name != _pc_name(single["kind"], single["name"]):
                w(f"  - {{op: rename, id: rename-{code}, effective: {EFFECTIVE}, unit: \"{only['old_id']}\", name: \"{new_name}\"}}")
                ops += 1
            else:
                w("  # name unchanged")
        else:
            w(f"  - op: merge\n    id: merge-{code}\n    effective: {EFFECTIVE}")
            w(f"    from: [{', '.join(json.dumps(c) for c in full)}]")
            w(f"    into: {{code: \"{code}\", name: \"{_pc_name(kind, name)}\", kind: commune_pc}}")
            ops += 1
        moves.append(code)
    for old_code, intos in sorted(partial.items()):
        old = communes[old_code]
        traps.append(Trap("partial_split", old_code, f"{old['kind']} {old['name']} is divided between {', '.join(intos)}"))
        splits.append((old_code, intos[0], intos[1:]))
    w("")
    w("  # Partial splits: the old commune's cases go to the first new commune the mapping lists (DECIDED: the")
    w("  # Resolution names no primary); the others are named in its history.")
    for old_code, primary, others in splits:
        w(f"  - {{op: split, id: split-{old_code}, effective: {EFFECTIVE}, unit: \"{old_code}\", primary: \"{primary}\", others: [{', '.join(json.dumps(o) for o in others)}]}}")
        ops += 1
    w("")
    w("  # Every new commune answers to the UBND tỉnh (the district level is abolished).")
    for code in moves:
        w(f"  - {{op: move, id: move-{code}, effective: {EFFECTIVE}, unit: \"{code}\", parent: \"{PROVINCE_CODE}\"}}")
        ops += 1
    w("")
    w("  # The district People's Committees are dissolved with no successor: their cases end withdrawn; any unit")
    w("  # still under one (a school) moves to the UBND tỉnh until a later operation moves it on.")
    for code, d in sorted(districts.items()):
        w(f"  - {{op: dissolve, id: dissolve-{code}, effective: {EFFECTIVE}, unit: \"{code}\", children_to: \"{PROVINCE_CODE}\"}}  # {d['kind']} {d['name']}")
        ops += 1
    return Conversion(out.getvalue(), traps, ops)


def convert_files(units_path: Path, mapping_path: Path) -> Conversion:
    """Read the two official JSON files and convert them."""
    return convert(json.loads(units_path.read_text("utf-8")), json.loads(mapping_path.read_text("utf-8")))


__all__ = ["EFFECTIVE", "Conversion", "Trap", "convert", "convert_files", "old_units", "tone_normal"]

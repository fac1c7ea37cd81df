#!/usr/bin/env python3
"""Generate crates/proto/src/spec/generated.rs from the KMIP tag and enumeration tables.

Usage:
    scripts/gen-spec-tables.py [SPEC_TABLES_OR_VECTORS_DIR] [--check]

The input is the `spec-tables/` directory of the OASIS vector set (by default
`$KMIPD_VECTORS/spec-tables`, else `../shared/kmip-vectors/spec-tables` relative to the
repository root). The argument may name either the vectors directory or its `spec-tables/`.

Sources, in order of authority:
  1. spec-tables/kmip-<ver>-tags-enums.json, 1.0 .. 2.1, extracted from the OASIS spec HTML:
     numbers, spec names, the version that introduced and the first version that dropped each
     tag and enumeration entry.
  2. spec-tables/third-party/ThalesGroup-kmip-go_kmip14_kmip_1_4.json (MIT): the Mask Generator
     table (whose 2.1 spec text misspells MGF1 as "MFG1") and the tag -> table mapping.
  3. spec-tables/third-party/appmonster007-...-v2.1-os_enumerations.csv: Ticket Type (its 2.1
     spec table has a wrong caption, so the extraction missed it).
  4. spec-tables/third-party/appmonster007-...-v3.0-os_enumerations.csv: tags, tables and entries
     that only the KMIP 3.0 draft defines, marked Version::V3_0Draft.
  5. PKCS#11 Function / Return Code: KMIP 2.1 section 11.38/11.39 defines them by reference to
     PKCS#11 (1-based offset in CK_FUNCTION_LIST_3_0; CK_RV values); the few entries below are
     taken from the OASIS PKCS#11 v3.0 base specification.

`--check` exits 1 if the checked-in file differs from what would be generated.
Standard library only.
"""

import csv
import json
import os
import re
import subprocess
import sys

VERSIONS = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1"]
DRAFT = "3.0"
VARIANT = {
    "1.0": "V1_0", "1.1": "V1_1", "1.2": "V1_2", "1.3": "V1_3", "1.4": "V1_4",
    "2.0": "V2_0", "2.1": "V2_1", DRAFT: "V3_0Draft",
}
ALL_VERSIONS = VERSIONS + [DRAFT]

# Older table names that the spec later renamed: old -> canonical (latest) name.
TABLE_RENAMES = {
    "Key Wrap Encoding Option": "Encoding Option",  # 1.1 only; "Encoding Option" from 1.2
    "Profile Name Type": "Profile Name",  # 1.3/1.4; "Profile Name" from 2.0
}
# Other names by which a table is known (third-party tables are named after their tag).
TABLE_ALIASES = {
    "Batch Error Continuation Option": "Batch Error Continuation",
    "Destroy Action": "Destroy Action Type",
    "Object Group Member": "Object Group Member Option",
    "Key Wrap Encoding Option": "Encoding Option",
    "Profile Name Type": "Profile Name",
}
# Tags whose Enumeration (or mask) value uses a table of another name. Everything else maps a
# tag to the table of the same name. (Checked against the kmip-go "tags" lists and the files.)
TAG_TABLE = {
    "Batch Error Continuation Option": "Batch Error Continuation",
    "Destroy Action": "Destroy Action Type",
    "Object Group Member": "Object Group Member Option",
    "Mask Generator Hashing Algorithm": "Hashing Algorithm",
    "Extension Type": "Item Type",  # 2.x: "Enumeration (Item Type)"; Integer in 1.x
    "Linked Object Identifier": "Unique Identifier",  # 2.x: Text String, Enumeration or Integer
    "Private Key Unique Identifier": "Unique Identifier",
    "Public Key Unique Identifier": "Unique Identifier",
}
MASKS = {"Cryptographic Usage Mask", "Storage Status Mask", "Protection Storage Mask"}

# Hand-entered from the OASIS PKCS#11 v3.0 base specification (see the module docstring).
PKCS11_TABLES = {
    "PKCS#11 Function": {"C_Initialize": 1, "C_Finalize": 2, "C_GetInfo": 3, "C_GetFunctionList": 4},
    "PKCS#11 Return Code": {"OK": 0},
}
# XML spellings the test files use for entries the spec texts spell otherwise.
EXTRA_VALUE_ALIASES = {
    ("Mask Generator", 1): ["MFG1"],  # KMIP 2.1 spec typo; 1.4 and the files say MGF1
    ("Result Reason", 0x39): ["NotAuthorized"],  # spec: "Not Authorised"; 2.0 TC-DLOGIN-2-20
}
# Entry names the HTML extraction damaged (superscripts lost): (table, extracted) -> spec name.
NAME_FIXES = {
    ("Split Key Method", "Polynomial Sharing GF (216)"): "Polynomial Sharing GF (2^16)",
    ("Split Key Method", "Polynomial Sharing GF (28)"): "Polynomial Sharing GF (2^8)",
}


def xml_name(s):
    """CamelCase name of the KMIP XML/JSON encodings (KMIP Profiles 2.0 section 5.4.1.1).

    1. '(' and ')' become spaces; 2. a non-word character followed by a letter and a lower-case
    letter becomes a space; 3. other non-word characters (not white space) become '_';
    4. digits at the start of the first word move to its end; 5. each word is capitalised;
    6. the words are concatenated.
    """
    s = s.replace("(", " ").replace(")", " ")
    s = re.sub(r"[^\w\s]([a-zA-Z][a-z])", r" \1", s, flags=re.ASCII)
    s = re.sub(r"[^\w\s]", "_", s, flags=re.ASCII)
    words = [w for w in s.split() if w]
    out = []
    for i, w in enumerate(words):
        if i == 0:
            m = re.match(r"^([0-9]+)(.*)$", w)
            if m and m.group(2):
                w = m.group(2) + m.group(1)
        out.append(w[:1].upper() + w[1:])
    return "".join(out)


def rust_str(s):
    return json.dumps(s, ensure_ascii=False)


def ident(s):
    return re.sub(r"[^A-Za-z0-9]", "_", xml_name(s)).upper()


def snake(s):
    """SCREAMING_SNAKE_CASE constant name from a spec name ("PKCS#11 Function" -> PKCS_11_FUNCTION)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").upper()
    # As in the XML names, digits that start the first word move to its end ("3DES" -> DES3).
    m = re.match(r"^([0-9]+)_?([A-Z][A-Z0-9]*)(.*)$", s)
    if m:
        s = m.group(2) + m.group(1) + m.group(3)
    return "V" + s if s[:1].isdigit() else s


def locate_input(argv):
    args = [a for a in argv if not a.startswith("--")]
    if args:
        base = args[0]
    elif os.environ.get("KMIPD_VECTORS"):
        base = os.environ["KMIPD_VECTORS"]
    else:
        base = os.path.join(repo_root(), "..", "shared", "kmip-vectors")
    if os.path.isdir(os.path.join(base, "spec-tables")):
        base = os.path.join(base, "spec-tables")
    if not os.path.isfile(os.path.join(base, "kmip-2.1-tags-enums.json")):
        sys.exit(f"gen-spec-tables: no spec tables in {base} (pass the path or set KMIPD_VECTORS)")
    return base


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_hex(h):
    if isinstance(h, dict):
        h = h["value"]
    return int(h, 16)


def is_reserved(name):
    return name.strip("()").lower() == "reserved" or name.startswith("(Unused")


class Table:
    def __init__(self, name):
        self.name = name
        self.entries = {}  # value -> {name, since, removed, seen:[versions], aliases:set}
        self.since = None
        self.provenance = None

    def add(self, version, value, name):
        e = self.entries.get(value)
        if e is None:
            e = {"name": name, "seen": [], "aliases": set()}
            self.entries[value] = e
        if e["name"] != name:
            e["aliases"].add(e["name"])
            e["name"] = name  # the latest spelling wins; older ones stay readable
        if version not in e["seen"]:
            e["seen"].append(version)


def since_removed(seen):
    """First version present, first later version absent (within 1.0..2.1)."""
    order = [v for v in ALL_VERSIONS if v in seen]
    since = order[0]
    removed = None
    if since != DRAFT:
        idx = VERSIONS.index(since)
        for v in VERSIONS[idx + 1:]:
            if v not in seen:
                removed = v
                break
    return since, removed


def load(base):
    spec = {v: json.load(open(os.path.join(base, f"kmip-{v}-tags-enums.json"), encoding="utf-8"))
            for v in VERSIONS}
    tags = {}  # number -> {name, seen}
    for v in VERSIONS:
        for name, h in spec[v]["tags"].items():
            if is_reserved(name):
                continue
            num = parse_hex(h)
            t = tags.setdefault(num, {"name": name, "seen": [], "draft": False})
            t["name"] = name
            t["seen"].append(v)

    tables = {}

    def table(name):
        name = TABLE_RENAMES.get(name, name)
        if name not in tables:
            tables[name] = Table(name)
        return tables[name]

    for v in VERSIONS:
        for tname, entries in spec[v]["enumerations"].items():
            t = table(tname)
            for ename, h in entries.items():
                if h.upper().startswith("0X8X") or "X" in h[2:].upper():
                    continue
                t.add(v, parse_hex(h), NAME_FIXES.get((t.name, ename), ename))

    tp = os.path.join(base, "third-party")
    # Tables only the third-party files have: each is valid from the version of its tag.
    thales = json.load(open(os.path.join(tp, "ThalesGroup-kmip-go_kmip14_kmip_1_4.json"), encoding="utf-8"))
    tag_since = {t["name"]: since_removed(t["seen"])[0] for t in tags.values()}
    for e in thales["enums"]:
        name = TABLE_ALIASES.get(e["name"], e["name"])
        if name in tables or not e["values"]:
            continue
        t = table(name)
        t.provenance = "ThalesGroup/kmip-go kmip14/kmip_1_4.json (MIT)"
        sv = tag_since.get(e["name"], "1.4")
        for vi in VERSIONS[VERSIONS.index(sv):]:
            for ename, val in e["values"].items():
                t.add(vi, val, ename)
    # Other spellings of existing entries in kmip-go (e.g. "Content Commitment", which the test
    # files use, for the spec's "Content Commitment (Non Repudiation)"): readable aliases.
    thales20 = json.load(open(os.path.join(tp, "ThalesGroup-kmip-go_kmip20_kmip_2_0_additions.json"), encoding="utf-8"))
    for e in thales["enums"] + thales["masks"] + thales20["enums"] + thales20["masks"]:
        t = tables.get(TABLE_ALIASES.get(e["name"], e["name"]))
        for ename, val in (e.get("values") or {}).items():
            ent = t.entries.get(val) if t else None
            if ent and ent["name"] != ename:
                ent["aliases"].add(ename)
    csv21 = os.path.join(tp, "appmonster007-kmip-adapter_kmip-spec-enumerations-v2.1-os_enumerations.csv")
    rows21 = list(csv.DictReader(open(csv21, encoding="utf-8")))
    for tname in ["Ticket Type"]:
        t = table(tname)
        t.provenance = "appmonster007/kmip-adapter kmip-spec-enumerations-v2.1-os_enumerations.csv"
        sv = tag_since.get(tname, "2.0")
        for r in rows21:
            if r["enumeration_category"] == tname and "X" not in r["value"]:
                for vi in VERSIONS[VERSIONS.index(sv):]:
                    t.add(vi, int(r["value"], 16), r["enumeration_name"])
    for tname, entries in PKCS11_TABLES.items():
        t = table(tname)
        t.provenance = "OASIS PKCS#11 v3.0 (CK_FUNCTION_LIST_3_0 order, CK_RV), per KMIP 2.1 11.38/11.39"
        sv = tag_since.get(tname, "2.0")
        for vi in VERSIONS[VERSIONS.index(sv):]:
            for ename, val in entries.items():
                t.add(vi, val, ename)

    # The 3.0 draft: only additions (new tag numbers, tables and entry values).
    csv30 = os.path.join(tp, "appmonster007-kmip-adapter_kmip-spec-enumerations-v3.0-os_enumerations.csv")
    canon_by_norm = {}
    for n in list(tables) + list(TABLE_ALIASES):
        canon_by_norm[xml_name(n).lower()] = TABLE_ALIASES.get(n, n)
    for r in csv.DictReader(open(csv30, encoding="utf-8")):
        cat, ename, val = r["enumeration_category"], r["enumeration_name"], r["value"]
        if not re.fullmatch(r"[0-9A-Fa-f]+", val) or is_reserved(ename):
            continue
        if cat == "Tag":
            num = int(val, 16)
            if num not in tags:
                tags[num] = {"name": ename, "seen": [DRAFT], "draft": True}
            continue
        canon = canon_by_norm.get(xml_name(cat).lower(), cat)
        t = tables.get(canon)
        if t is None:
            t = table(canon)
            t.provenance = "appmonster007/kmip-adapter kmip-spec-enumerations-v3.0-os_enumerations.csv (KMIP 3.0 draft)"
        value = int(val, 16)
        if value not in t.entries:
            t.add(DRAFT, value, ename)
    return tags, tables


def build(base):
    tags, tables = load(base)
    tag_names = {t["name"] for t in tags.values()}
    # Table since = earliest entry.
    for t in tables.values():
        t.since = min((since_removed(e["seen"])[0] for e in t.entries.values()), key=ALL_VERSIONS.index)

    def table_for_tag(name):
        tn = TAG_TABLE.get(name, name)
        return tn if tn in tables else None

    # Sanity: XML names unique.
    seen = {}
    for num, t in tags.items():
        xn = xml_name(t["name"])
        if xn in seen:
            sys.exit(f"duplicate tag XML name {xn}: {hex(seen[xn])} {hex(num)}")
        seen[xn] = num
    for t in tables.values():
        names = {}
        for val, e in t.entries.items():
            for n in [e["name"], *e["aliases"]]:
                xn = xml_name(n)
                if names.get(xn, val) != val:
                    sys.exit(f"table {t.name}: XML name {xn} for {names[xn]:#x} and {val:#x}")
                names[xn] = val

    out = []
    w = out.append
    w("// @generated by scripts/gen-spec-tables.py from the KMIP spec tables in")
    w("// ../shared/kmip-vectors/spec-tables (see docs/encodings.md). Do not edit by hand:")
    w("// regenerate with `python3 scripts/gen-spec-tables.py [path/to/kmip-vectors]`;")
    w("// `python3 scripts/gen-spec-tables.py --check` verifies that this file is up to date.")
    w("")
    w("use super::{EnumDef, EnumValueDef, TagDef, Version};")
    w("")
    table_ids = {}
    for name in sorted(tables):
        t = tables[name]
        tid = "E_" + ident(name)
        table_ids[name] = tid
        if t.provenance:
            w(f"// Source: {t.provenance}.")
        w(f"static {tid}: EnumDef = EnumDef {{")
        w(f"    name: {rust_str(name)},")
        w(f"    xml_name: {rust_str(xml_name(name))},")
        w(f"    is_mask: {'true' if name in MASKS else 'false'},")
        w(f"    since: Version::{VARIANT[t.since]},")
        w("    values: &[")
        by_xml = []
        for val in sorted(t.entries):
            e = t.entries[val]
            since, removed = since_removed(e["seen"])
            rem = f"Some(Version::{VARIANT[removed]})" if removed else "None"
            w(f"        EnumValueDef {{ value: {val:#010x}, name: {rust_str(e['name'])}, "
              f"xml_name: {rust_str(xml_name(e['name']))}, since: Version::{VARIANT[since]}, removed: {rem} }},")
            spellings = {xml_name(e["name"])} | {xml_name(a) for a in e["aliases"]}
            spellings |= set(EXTRA_VALUE_ALIASES.get((name, val), []))
            by_xml.extend((s, val) for s in spellings)
        w("    ],")
        w("    by_xml_name: &[")
        for s, val in sorted(by_xml):
            w(f"        ({rust_str(s)}, {val:#010x}),")
        w("    ],")
        w("};")
        w("")

    w("/// Every tag, sorted by number.")
    w("pub(super) static TAGS: &[TagDef] = &[")
    for num in sorted(tags):
        t = tags[num]
        since, removed = since_removed(t["seen"])
        rem = f"Some(Version::{VARIANT[removed]})" if removed else "None"
        tn = table_for_tag(t["name"])
        en = f"Some(&{table_ids[tn]})" if tn else "None"
        w(f"    TagDef {{ tag: {num:#08x}, name: {rust_str(t['name'])}, xml_name: {rust_str(xml_name(t['name']))}, "
          f"since: Version::{VARIANT[since]}, removed: {rem}, enumeration: {en} }},")
    w("];")
    w("")
    w("/// (XML name, tag number), sorted by name.")
    w("pub(super) static TAGS_BY_XML_NAME: &[(&str, u32)] = &[")
    for xn, num in sorted((xml_name(t["name"]), n) for n, t in tags.items()):
        w(f"    ({rust_str(xn)}, {num:#08x}),")
    w("];")
    w("")
    names = {}
    for name in tables:
        for n in (name, xml_name(name)):
            names[n] = name
    for alias, canon in TABLE_ALIASES.items():
        for n in (alias, xml_name(alias)):
            names.setdefault(n, canon)
    w("/// Every KMIP 1.0-2.1 tag as a constant named after its spec name.")
    w("pub mod tag {")
    w("    use kmipd_ttlv::Tag;")
    idents = {}
    for num in sorted(tags):
        t = tags[num]
        since, _ = since_removed(t["seen"])
        if since == DRAFT:
            continue
        i = snake(t["name"])
        if i in idents:
            sys.exit(f"duplicate tag constant {i}: {idents[i]:#x} {num:#x}")
        idents[i] = num
        b = num.to_bytes(3, "big")
        w(f"    /// {t['name']} ({num:#08x}).")
        w(f"    pub const {i}: Tag = Tag::from_bytes([{b[0]:#04x}, {b[1]:#04x}, {b[2]:#04x}]);")
    w("}")
    w("")
    w("/// The values of every KMIP 1.0-2.1 enumeration, one module per table, as constants named")
    w("/// after their spec names.")
    w("pub mod enums {")
    for name in sorted(tables):
        t = tables[name]
        if t.since == DRAFT:
            continue
        mod = snake(name).lower()
        w(f"    /// {name}.")
        w(f"    pub mod {mod} {{")
        seen_i = {}
        for val in sorted(t.entries):
            e = t.entries[val]
            since, _ = since_removed(e["seen"])
            if since == DRAFT:
                continue
            i = snake(e["name"])
            if i in seen_i:
                i = f"{i}_{val:X}"
            seen_i[i] = val
            w(f"        /// {e['name']}.")
            w(f"        pub const {i}: u32 = {val:#010x};")
        w("    }")
    w("}")
    w("")
    w("/// (spec, XML or alias name, table), sorted by name.")
    w("pub(super) static ENUMS_BY_NAME: &[(&str, &EnumDef)] = &[")
    for n in sorted(names):
        w(f"    ({rust_str(n)}, &{table_ids[names[n]]}),")
    w("];")
    w("")
    return "\n".join(out)


def main():
    base = locate_input(sys.argv[1:])
    text = build(base)
    target = os.path.join(repo_root(), "crates", "proto", "src", "spec", "generated.rs")
    # Run rustfmt so that the checked-in file is what `cargo fmt` leaves alone.
    try:
        text = subprocess.run(["rustfmt", "--edition", "2024", "--emit", "stdout"], input=text,
                              capture_output=True, text=True, check=True, cwd=repo_root()).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"gen-spec-tables: rustfmt failed: {err}")
    if "--check" in sys.argv[1:]:
        try:
            current = open(target, encoding="utf-8").read()
        except OSError:
            current = None
        if current != text:
            print(f"{target} is out of date: run scripts/gen-spec-tables.py", file=sys.stderr)
            sys.exit(1)
        print("generated.rs is up to date")
        return
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

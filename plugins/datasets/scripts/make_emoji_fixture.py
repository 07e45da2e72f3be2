"""Regenerate tests/fixtures/emoji from the npm tarballs (run by hand; not part of the package).

Usage: python scripts/make_emoji_fixture.py OPENMOJI_JSON NOTO_64_DIR

OPENMOJI_JSON is ``package/data/openmoji.json`` of npm openmoji 17.0.0 and NOTO_64_DIR is
``package/img/google/64`` of npm emoji-datasource-google 16.0.0.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# ~40 concepts: faces, animals, food, travel, objects, symbols, flags (regional indicators and a ZWJ
# flag), a keycap (FE0F matching), a ZWJ person; OpenMoji-only extras (one repeats "brain" and must be
# de-duplicated); two skin-tone variants and a component that must be excluded.
HEXCODES = """
1F600 1F609 1F622 1F621 1F60D 1F436 1F431 1F98A 1F438 1F422 1F41D 1F34E 1F34C 1F355 1F382 2615 1F697
2708 1F680 1F3E0 26BD 1F3B8 1F4F7 1F4A1 1F511 2764 2B50 1F308 2600 1F1E9-1F1EA 1F1EF-1F1F5 0023-FE0F-20E3
1F469-200D-1F4BB 1F3F3-FE0F-200D-1F308 1F9E0 1F44D
E319 E000 E006 E009 E004
1F44D-1F3FB 1F44D-1F3FF 1F3FB
""".split()
KEYS = ("hexcode", "group", "subgroups", "annotation", "tags", "openmoji_tags", "skintone")


def key(hexcode: str) -> str:
    return "-".join(p.lower() for p in hexcode.split("-") if p.upper() != "FE0F")


def main(openmoji_json: str, noto_dir: str) -> None:
    out = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "emoji"
    records = {r["hexcode"]: r for r in json.loads(Path(openmoji_json).read_text(encoding="utf-8"))}
    missing = [h for h in HEXCODES if h not in records]
    if missing:
        sys.exit(f"not in openmoji.json: {missing}")
    subset = [{k: records[h][k] for k in KEYS} for h in HEXCODES]
    (out / "noto").mkdir(parents=True, exist_ok=True)
    (out / "openmoji.json").write_text(json.dumps(subset, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    pngs = {key(p.stem): p for p in Path(noto_dir).glob("*.png")}
    copied = 0
    for rec in subset:
        if rec["skintone"] == "" and rec["group"] != "component" and key(rec["hexcode"]) in pngs:
            src = pngs[key(rec["hexcode"])]
            shutil.copyfile(src, out / "noto" / src.name)
            copied += 1
    print(f"{len(subset)} records, {copied} Noto PNGs -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Read a captions table (JSON Lines or CSV/TSV) into located rows, collecting every bad row.

Columns: ``image`` (path relative to the images folder), ``caption`` (non-empty text), optional ``label``
(string or integer). If any row has a label, every row must have one. Rows are located as ``file:line``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from attrs import frozen

from cl_core.api import DataError

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}


@frozen
class Row:
    """One caption row: ``where`` is ``"<file>:<line>"``."""

    image: str
    caption: str
    label: str | None
    where: str
    line: int


def read_rows(path: str | Path) -> tuple[list[Row], list[str]]:
    """Parse ``path``; returns (good rows, ``"file:line: problem"`` for each bad row).

    Raises:
        DataError: the file cannot be read, has an unsupported suffix, or a CSV header lacks a column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in JSON_SUFFIXES:
            rows, bad = _read_jsonl(path)
        elif suffix in CSV_SUFFIXES:
            rows, bad = _read_csv(path, CSV_SUFFIXES[suffix])
        else:
            raise DataError(f"{path}: unsupported captions file type {suffix!r}; use .jsonl (JSON Lines) or .csv/.tsv")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read captions file {path}: {exc}") from exc
    # Labels are all-or-nothing, so a forgotten label never silently becomes its own class.
    if any(r.label is not None for r in rows):
        bad += [(r.line, f"{r.where}: missing 'label' (other rows have one)") for r in rows if r.label is None]
        rows = [r for r in rows if r.label is not None]
    return rows, [text for _, text in sorted(bad, key=lambda b: b[0])]


def _check(fields: dict, where: str, line: int) -> tuple[Row | None, str | None]:
    missing = [k for k in ("image", "caption") if k not in fields or fields[k] is None]
    if missing:
        return None, f"{where}: missing {', '.join(repr(m) for m in missing)}"
    image, caption, label = fields["image"], fields["caption"], fields.get("label")
    if not isinstance(image, str) or not image.strip():
        return None, f"{where}: 'image' must be a non-empty path string, got {image!r}"
    if not isinstance(caption, str):
        return None, f"{where}: 'caption' must be a string, got {caption!r}"
    if not caption.strip():
        return None, f"{where}: empty caption"
    if isinstance(label, bool) or not (label is None or isinstance(label, (str, int))):
        return None, f"{where}: 'label' must be a string or an integer, got {label!r}"
    if isinstance(label, str):
        label = label.strip() or None
    return Row(image=image.strip(), caption=" ".join(caption.split()),
               label=None if label is None else str(label), where=where, line=line), None


def jsonl_records(lines, path: Path, bad: list[tuple[int, str]]):
    """``(line number, object)`` of each JSON object line of ``lines`` (an open text file of ``path``); blank
    lines are skipped, and a line that is not a JSON object is appended to ``bad`` as ``(line, "path:line: why")``."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((lineno, f"{path}:{lineno}: invalid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            bad.append((lineno, f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"))
            continue
        yield lineno, obj


def _read_jsonl(path: Path) -> tuple[list[Row], list[tuple[int, str]]]:
    rows: list[Row] = []
    bad: list[tuple[int, str]] = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, obj in jsonl_records(f, path, bad):
            row, problem = _check(obj, f"{path}:{lineno}", lineno)
            if problem:
                bad.append((lineno, problem))
            else:
                rows.append(row)
    return rows, bad


def csv_records(lines, path: Path, delimiter: str, required: tuple[str, ...], optional: tuple[str, ...],
                bad: list[tuple[int, str]]):
    """``(first line number, {column: cell})`` of each record of a CSV/TSV file (``lines``: the open file of
    ``path``), with the ``required`` columns and those of ``optional`` the header has; a record with more cells than
    header columns is appended to ``bad`` as ``(line, "path:line: why")``.

    Raises:
        DataError: the header lacks a required column.
    """
    reader = csv.DictReader(lines, delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks column(s) {', '.join(map(repr, missing))} "
                        f"(found: {', '.join(map(repr, header)) or 'nothing'})")
    reader.fieldnames = header
    columns = [c for c in (*required, *optional) if c in header]
    prev_end = reader.line_num
    for record in reader:
        line = prev_end + 1  # first line of the record (quoted fields may span lines)
        prev_end = reader.line_num
        if None in record:  # more cells than header columns
            bad.append((line, f"{path}:{line}: {len(record[None])} more cell(s) than header columns"))
            continue
        yield line, {c: record.get(c) for c in columns}


def _read_csv(path: Path, delimiter: str) -> tuple[list[Row], list[tuple[int, str]]]:
    rows: list[Row] = []
    bad: list[tuple[int, str]] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line, fields in csv_records(f, path, delimiter, ("image", "caption"), ("label",), bad):
            row, problem = _check(fields, f"{path}:{line}", line)
            if problem:
                bad.append((line, problem))
            else:
                rows.append(row)
    return rows, bad

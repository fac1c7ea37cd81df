#!/usr/bin/env python3
"""Renders docs/interoperability.md from every results file under target/interop/.

    python3 conformance/python/interop_doc.py            # write docs/interoperability.md
    python3 conformance/python/interop_doc.py --check    # exit 1 if the doc would change

Any suite may add rows: it writes `target/interop/<source>.json` (standard library only here,
so Rust tests or shell scripts can produce the same shape):

    {
      "source": "conformance/python",          # who wrote the file (one per suite)
      "command": "scripts/python-env.sh && .venv-interop/bin/pytest conformance/python",
      "clients": {                               # one entry per client the file has rows for
        "PyKMIP 0.11.0": {"order": 10, "connect": "markdown: settings and certificates"}
      },
      "rows": [
        {"client": "PyKMIP 0.11.0", "version": "1.2", "flow": "Create AES-256, Get",
         "order": 3, "result": "pass" | "fail" | "n/a", "note": "why, for fail and n/a"}
      ]
    }

Output is deterministic: clients by (order, name), flows by (order, name), versions
numerically; no timestamps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "target" / "interop"
DOC = REPO / "docs" / "interoperability.md"

HEADER = """\
# Interoperability

Real KMIP clients, written by others, against a real kmipd over mutual TLS on a loopback port.
This file is generated from the test runs: do not edit it by hand. Each suite writes its
results to `target/interop/<source>.json`; the renderer merges every file there:

```sh
scripts/python-env.sh && .venv-interop/bin/pytest conformance/python   # runs, then renders
python3 conformance/python/interop_doc.py                              # render only
```

The format of a results file (so other suites can add rows) is described at the top of
`conformance/python/interop_doc.py`. Each suite starts its own fresh instance (`kmipd init` in a
temporary directory, then `kmipd serve` on a free port); the certificates named below are the
ones `kmipd init` writes to `DIR/certs/`.

Results: **pass**; **FAIL** (a kmipd or client defect, explained in the notes); **n/a** (the
client or the protocol version cannot express the flow, with the reason).
"""


def version_key(v: str):
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (999, v)


def load(results_dir: Path):
    clients: dict[str, dict] = {}
    rows: list[dict] = []
    sources = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        sources.append((data.get("source", path.stem), data.get("command", "")))
        for name, info in data.get("clients", {}).items():
            clients.setdefault(name, {}).update(info)
        for row in data.get("rows", []):
            clients.setdefault(row["client"], {})
            rows.append(row)
    return sources, clients, rows


def cell(row, notes: list[str]) -> str:
    result = row.get("result", "fail")
    label = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}.get(result, result)
    note = (row.get("note") or "").strip()
    if note and result != "pass":
        if note not in notes:
            notes.append(note)
        label += f" [{notes.index(note) + 1}]"
    return label


def render(results_dir: Path = RESULTS) -> str:
    sources, clients, rows = load(results_dir)
    out = [HEADER]
    if not rows:
        out.append("\nNo results yet: run the command above.\n")
        return "".join(out)

    out.append("\n## Summary\n\n| client | passed | failed | n/a |\n|---|---:|---:|---:|\n")
    order = sorted(clients, key=lambda c: (clients[c].get("order", 1000), c))
    for c in order:
        mine = [r for r in rows if r["client"] == c]
        count = {k: sum(1 for r in mine if r.get("result") == k) for k in ("pass", "fail", "n/a")}
        out.append(f"| {c} | {count['pass']} | {count['fail']} | {count['n/a']} |\n")
    out.append("\nSources: " + ", ".join(f"`{s}`" for s, _ in sorted(set(sources))) + ".\n")

    for c in order:
        mine = [r for r in rows if r["client"] == c]
        if not mine:
            continue
        versions = sorted({r["version"] for r in mine}, key=version_key)
        flows: dict[str, int] = {}
        for r in mine:
            o = r.get("order", 1000)
            flows[r["flow"]] = min(o, flows.get(r["flow"], o))
        flow_order = sorted(flows, key=lambda f: (flows[f], f))
        by_key = {(r["flow"], r["version"]): r for r in mine}
        notes: list[str] = []
        out.append(f"\n## {c}\n\n")
        connect = clients[c].get("connect", "").strip()
        if connect:
            out.append("### How to connect\n\n" + connect + "\n\n### Results\n\n")
        out.append("| flow | " + " | ".join(f"KMIP {v}" for v in versions) + " |\n")
        out.append("|---|" + "---|" * len(versions) + "\n")
        for f in flow_order:
            cells = []
            for v in versions:
                r = by_key.get((f, v))
                cells.append(cell(r, notes) if r else "")
            out.append(f"| {f} | " + " | ".join(cells) + " |\n")
        if notes:
            out.append("\n")
            for i, n in enumerate(notes, 1):
                out.append(f"{i}. {n}\n")
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--output", type=Path, default=DOC)
    ap.add_argument("--check", action="store_true", help="exit 1 if the output would change")
    args = ap.parse_args(argv)
    text = render(args.results)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is not current; re-run without --check", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

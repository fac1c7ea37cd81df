"""Fixtures and the results recorder of the Python interoperability suites.

- `kmipd`: one fresh kmipd per test session (`kmipd init` in a temporary directory, `kmipd serve`
  on 127.0.0.1 with a free port, SoftHSM2-held master key as in production), always stopped at
  the end. `$KMIPD_BIN` selects a prebuilt binary; otherwise `cargo build -p kmipd` runs first.
- The recorder: every test marked `interop(client=...)` is one row client x KMIP version x flow
  (the flow is the first line of the test's docstring, the version its `version` parameter or
  the marker's). Passed is "pass"; skipped is "n/a" (the skip reason says why the client or
  version cannot express the flow); failed or xfailed is "fail" with the reason. At the end the
  rows go to target/interop/python.json and docs/interoperability.md is re-rendered from every
  results file there (interop_doc.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import interop_doc  # noqa: E402
from kmipd_instance import REPO, KmipdInstance, kmipd_binary  # noqa: E402

RESULTS_FILE = REPO / "target" / "interop" / "python.json"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "interop(client, version=None): one row of docs/interoperability.md"
    )
    config._interop = {"rows": {}, "clients": {}, "order": {}, "partial": False}


def pytest_deselected(items):
    if items:
        items[0].config._interop["partial"] = True


@pytest.fixture(scope="session")
def kmipd(tmp_path_factory):
    inst = KmipdInstance(kmipd_binary(), tmp_path_factory.mktemp("kmipd") / "instance")
    try:
        inst.start()
        yield inst
    finally:
        inst.stop()
    if sys.exc_info()[0] is not None:
        print(inst.log_tail(), file=sys.stderr)


def _row_key(item):
    marker = item.get_closest_marker("interop")
    # A module may rerun another's tests in another setting without being a row of its own.
    if marker is None or getattr(item.module, "INTEROP_RECORD", True) is False:
        return None
    client = marker.kwargs["client"]
    params = getattr(item, "callspec", None)
    version = (params.params.get("version") if params else None) or marker.kwargs.get("version")
    doc = (item.function.__doc__ or item.name).strip().splitlines()[0].strip()
    return client, str(version), doc


def pytest_collection_modifyitems(session, config, items):
    state = config._interop
    for i, item in enumerate(items):
        key = _row_key(item)
        if key is None:
            continue
        state["order"].setdefault(key[2], i)
        module = item.module
        for name, info in getattr(module, "INTEROP_CLIENTS", {}).items():
            state["clients"][name] = info


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    key = _row_key(item)
    if key is None:
        return
    rows = item.config._interop["rows"]
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail"):
            result, note = "fail", report.wasxfail
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            result, note = "n/a", reason.removeprefix("Skipped: ")
        elif report.failed:
            result = "fail"
            crash = getattr(report.longrepr, "reprcrash", None)
            note = crash.message.splitlines()[0] if crash else str(report.longrepr)[:200]
            note = f"unexpected failure: {note}"
        else:
            result, note = "pass", ""
        # The first non-pass outcome of a test (setup, call, teardown) wins.
        if key not in rows or rows[key]["result"] == "pass":
            rows[key] = {"result": result, "note": note, "test": item.nodeid}


def pytest_sessionfinish(session, exitstatus):
    state = session.config._interop
    if not state["rows"]:
        return
    rows = [
        {
            "client": c,
            "version": v,
            "flow": f,
            "order": state["order"].get(f, 1000),
            **r,
        }
        for (c, v, f), r in state["rows"].items()
    ]
    rows.sort(key=lambda r: (r["client"], r["order"], interop_doc.version_key(r["version"])))
    data = {
        "source": "conformance/python",
        "command": "scripts/python-env.sh && .venv-interop/bin/pytest conformance/python",
        "clients": state["clients"],
        "rows": rows,
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    # A partial run (-k, -m, node ids) must not replace the full table with a few rows.
    if state["partial"] or any("::" in a or a.endswith(".py") for a in session.config.args):
        print("\ninterop: partial run, target/interop/python.json and the doc left as they were")
        return
    RESULTS_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    interop_doc.DOC.write_text(interop_doc.render())

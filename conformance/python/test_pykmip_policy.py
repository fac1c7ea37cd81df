"""Server policy seen by a real client: PyKMIP 0.11.0 at KMIP 1.4 against the session's kmipd
(docs/policy.md: crypto periods, default usage masks, automatic rotation by policy).

Each test adds its `[policy]` settings to the instance's kmipd.toml, applies them with `kmipd
admin reload` (no second server start) and restores the file and reloads it at the end, so the
tests that run after it see the instance's own policy. The instance runs the rotation scheduler
every second (`[rotation] check_every`, set by kmipd_instance.py; it is read at start only).

- Crypto periods: a key created without a Deactivation Date gets Initial Date plus the period; a
  later one the client asks for is brought back to it; an earlier one is kept; with an
  Activation Date the period runs from it, and a later Protect Stop Date is pulled in.
- Default usage masks: a Create without a Cryptographic Usage Mask (PyKMIP's ProxyKmipClient
  always sends Encrypt|Decrypt, so the request goes through its KMIPProxy) gets the policy's mask
  for Symmetric Keys, and a Register of Secret Data without one gets the Secret Data mask.
- Automatic rotation: with `rotate_interval` for Symmetric Keys, a named key PyKMIP creates and
  activates is re-keyed by kmipd's scheduler; Locate by the Name then finds the new generation
  (PyKMIP cannot express the KMIP 2.1 Rotate attributes, nor decode a Link): the Name moved
  to a replacement with new key material, and the audit log has the scheduler's Re-Key.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time

import pytest
from kmip.core import enums
from kmip.core import objects as cobjects
from kmip.pie import objects
from kmip.pie.client import ProxyKmipClient
from kmip.pie.factory import ObjectFactory
from test_pykmip import AF, CLIENT, attrs_by_name, name_attribute, pykmip_conf, unique  # noqa: F401
from test_pykmip_roles import admin

pytestmark = pytest.mark.interop(client=CLIENT, version="1.4")

DAY = 86_400
ROTATION_WAIT = 60  # s: the scheduler runs every second; the bound only turns a hang into a failure


@contextlib.contextmanager
def policy(kmipd, extra):
    """The instance's kmipd.toml with `extra` appended (sub-tables of `[policy]`), reloaded;
    restored and reloaded on exit."""
    conf = kmipd.dir / "kmipd.toml"
    original = conf.read_text()
    deadline = time.monotonic() + 30
    while not (kmipd.dir / "admin.sock").exists():
        assert time.monotonic() < deadline, "no admin socket"
        time.sleep(0.05)
    conf.write_text(original + extra)
    try:
        yield admin(kmipd, "reload")
    finally:
        conf.write_text(original)
        admin(kmipd, "reload")


@pytest.fixture
def client(pykmip_conf):  # noqa: F811
    c = ProxyKmipClient(
        config="client", config_file=pykmip_conf, kmip_version=enums.KMIPVersion.KMIP_1_4
    )
    c.open()
    try:
        yield c
    finally:
        c.close()


def attributes(c, uid, names):
    _, attrs = c.get_attributes(uid, names)
    return attrs_by_name(attrs)


def template(*attrs):
    return cobjects.TemplateAttribute(attributes=list(attrs))


def aes_256():
    return [
        AF.create_attribute(
            enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES
        ),
        AF.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
    ]


def proxy_create(c, *attrs):
    """Create AES-256 through PyKMIP's KMIPProxy with exactly these extra attributes."""
    result = c.proxy.create(enums.ObjectType.SYMMETRIC_KEY, template(*aes_256(), *attrs))
    assert result.result_status.value == enums.ResultStatus.SUCCESS, result.result_message
    return result.uuid


def test_crypto_period_sets_deactivation_date(kmipd, client):
    """Server policy: crypto period sets Deactivation Date (none asked, later one capped)"""
    with policy(kmipd, '\n[policy.crypto_period]\nSymmetricKey = "30d"\n') as line:
        assert "1 crypto periods" in line, line
        # None asked: Initial Date plus 30 days.
        uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("period"))
        got = attributes(client, uid, ["Initial Date", "Deactivation Date"])
        initial = got["Initial Date"][0].value
        assert got["Deactivation Date"][0].value == initial + 30 * DAY, got
        # A later one (a year) asked: brought back to 30 days.
        asked = int(time.time()) + 365 * DAY
        uid = proxy_create(
            client, AF.create_attribute(enums.AttributeType.DEACTIVATION_DATE, asked)
        )
        got = attributes(client, uid, ["Initial Date", "Deactivation Date"])
        assert got["Deactivation Date"][0].value == got["Initial Date"][0].value + 30 * DAY, got
        # An Activation Date asked (in a week): the period runs from it; a Protect Stop Date
        # after its end (a year) is pulled in to it.
        now = int(time.time())
        uid = proxy_create(
            client,
            AF.create_attribute(enums.AttributeType.ACTIVATION_DATE, now + 7 * DAY),
            AF.create_attribute(enums.AttributeType.PROTECT_STOP_DATE, now + 365 * DAY),
        )
        got = attributes(client, uid, ["Deactivation Date", "Protect Stop Date"])
        assert got["Deactivation Date"][0].value == now + 37 * DAY, got
        assert got["Protect Stop Date"][0].value == now + 37 * DAY, got
        # An earlier one (a day) asked: kept.
        asked = int(time.time()) + DAY
        uid = proxy_create(
            client, AF.create_attribute(enums.AttributeType.DEACTIVATION_DATE, asked)
        )
        got = attributes(client, uid, ["Deactivation Date"])
        assert got["Deactivation Date"][0].value == asked, got
    # Restored: no period, no Deactivation Date.
    uid = client.create(enums.CryptographicAlgorithm.AES, 256)
    assert "Deactivation Date" not in attributes(client, uid, ["Deactivation Date"])


def mask_of(c, uid):
    got = attributes(c, uid, ["Cryptographic Usage Mask"])
    return got["Cryptographic Usage Mask"][0].value


def test_default_usage_mask_per_object_type(kmipd, client):
    """Server policy: default Cryptographic Usage Mask per object type when none given"""
    masks = enums.CryptographicUsageMask
    wrap = masks.WRAP_KEY.value | masks.UNWRAP_KEY.value
    derive = masks.DERIVE_KEY.value
    extra = (
        '\n[policy.usage_mask]\nSymmetricKey = ["WrapKey", "UnwrapKey"]\n'
        'SecretData = ["DeriveKey"]\n'
    )
    with policy(kmipd, extra) as line:
        assert "2 default usage masks" in line, line
        assert mask_of(client, proxy_create(client)) == wrap
        # A mask the client gives is kept (ProxyKmipClient.create sends Encrypt|Decrypt).
        uid = client.create(enums.CryptographicAlgorithm.AES, 256)
        assert mask_of(client, uid) == masks.ENCRYPT.value | masks.DECRYPT.value
        secret = objects.SecretData(b"\x01" * 32, enums.SecretDataType.SEED)
        result = client.proxy.register(
            enums.ObjectType.SECRET_DATA, template(), ObjectFactory().convert(secret)
        )
        assert result.result_status.value == enums.ResultStatus.SUCCESS, result.result_message
        assert mask_of(client, result.uuid) == derive
    # Restored: the policy's mask is no longer given.
    got = attributes(client, proxy_create(client), ["Cryptographic Usage Mask"])
    assert [m.value for m in got.get("Cryptographic Usage Mask", [])] != [wrap], got


def test_policy_rotates_named_key(kmipd, client):
    """Server policy: automatic rotation by the scheduler; Locate by Name finds the new key"""
    name = unique("rotated")
    extra = '\n[policy.rotate_interval]\nSymmetricKey = "2s"\n'
    with policy(kmipd, extra):
        old = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    # Restored at once: only this key (and its replacements) rotate.
    client.activate(old)
    try:
        deadline = time.monotonic() + ROTATION_WAIT
        found = [old]
        while found == [old]:
            assert time.monotonic() < deadline, (
                f"kmipd's scheduler did not rotate {old} within {ROTATION_WAIT}s "
                f"(rotate_interval 2s, check_every 1s); log:\n{kmipd.log_tail()}"
            )
            time.sleep(0.5)
            found = client.locate(attributes=[name_attribute(name)])
        assert len(found) == 1 and found[0] != old, found
        new = found[0]
        # PyKMIP cannot decode a Link attribute (NotImplementedError in its attribute factory):
        # the Name moved from the existing key to its replacement, which has new key material.
        got = attributes(client, new, ["Name", "Cryptographic Length"])
        assert [n.name_value.value for n in got["Name"]] == [name]
        assert got["Cryptographic Length"][0].value == 256
        assert "Name" not in attributes(client, old, ["Name"])
        assert client.get(new).value != client.get(old).value
        # The scheduler did it: its Re-Key records (identity kmipd:rotation) lead from the old
        # key to the one the Name finds.
        # (The record is appended just after the commit: a bounded wait for it.)
        deadline = time.monotonic() + ROTATION_WAIT
        while True:
            uid, rotations = old, scheduler_rekeys(kmipd)
            while uid in rotations and uid != new:
                uid = rotations[uid]
            if uid == new:
                break
            assert time.monotonic() < deadline, (
                f"no kmipd:rotation ReKey chain from {old} to {new} in the audit log: {rotations}"
            )
            time.sleep(0.5)
    finally:
        stop_rotating(client, name)


def scheduler_rekeys(kmipd):
    """The audit log's successful automatic rotations: {existing: replacement}."""
    done = subprocess.run(
        [str(kmipd.binary), "audit", "search", "--identity", "kmipd:rotation", "--operation",
         "ReKey", "--result", "Success", "--json", str(kmipd.dir / "audit.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {r["uids"][0]: r["uids"][1] for r in records}


def stop_rotating(client, name):
    """Revokes the newest generation until no Active one holds the name: the scheduler rotates
    only Active objects, and a rotation racing the Revoke either commits first (its replacement
    then holds the name and is revoked next) or finds the object changed and does nothing."""
    for _ in range(50):
        found = client.locate(attributes=[name_attribute(name)])
        if not found:
            return
        (uid,) = found
        _, got = client.get_attributes(uid, ["State"])
        if attrs_by_name(got)["State"][0].value != enums.State.ACTIVE:
            return
        client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, "test over")
    raise AssertionError(f"{name}: still rotating after 50 revocations")

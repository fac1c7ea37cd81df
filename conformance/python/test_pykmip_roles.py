"""Roles and dual control seen by a real client: PyKMIP 0.11.0 at KMIP 1.4 against the session's
kmipd (docs/access-control.md, docs/policy.md "Dual control").

The module issues three more client certificates from the instance's development CA (CN
`audit-1`, `ops-1`, `admin2`), appends `[roles]` to the instance's kmipd.toml and applies it with
`kmipd admin reload` (no second server start). Then:

- the auditor locates another identity's key and reads its attributes, and its Get of the key
  material (and any Create) is refused with Permission Denied;
- the operator revokes another identity's key and is refused its key material;
- a Destroy of a key marked for dual control (`kmipd admin dual-control UID`) is refused with a
  request id, stays pending (the requester's retry is refused again, the key is still there),
  is approved by a second administrator's identical Destroy (which destroys nothing), and the
  requester's retry then destroys it.
"""

from __future__ import annotations

import datetime
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kmip.core import enums
from kmip.pie import exceptions
from kmip.pie.client import ProxyKmipClient
from test_pykmip import CLIENT, CONF, name_attribute, state_of, unique

pytestmark = pytest.mark.interop(client=CLIENT, version="1.4")

ROLES = """
[roles]
auditor = ["cn:audit-*"]
operator = ["cn:ops-*"]
administrator = ["admin2"]
"""
IDENTITIES = ("client", "admin", "audit-1", "ops-1", "admin2")


def issue(kmipd, name):
    """A client certificate (clientAuth) for CN `name` from the instance's development CA."""
    certs = kmipd.dir / "certs"
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (certs / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def admin(kmipd, *args):
    """`kmipd admin --config ... ARGS` on the instance's admin socket; its output line."""
    done = subprocess.run(
        [str(kmipd.binary), "admin", "--config", str(kmipd.dir / "kmipd.toml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def roles_conf(kmipd):
    for name in ("audit-1", "ops-1", "admin2"):
        issue(kmipd, name)
    with open(kmipd.dir / "kmipd.toml", "a") as conf:
        conf.write(ROLES)
    # The TLS port may accept before the admin socket is bound.
    deadline = time.monotonic() + 30
    while not (kmipd.dir / "admin.sock").exists():
        assert time.monotonic() < deadline, "no admin socket"
        time.sleep(0.05)
    line = admin(kmipd, "reload")
    assert "1 operator, 1 auditor patterns" in line, line
    path = kmipd.dir / "pykmip-roles.conf"
    path.write_text(
        "\n".join(
            CONF.format(
                section=ident,
                host=kmipd.host,
                port=kmipd.port,
                cert=kmipd.cert(ident),
                key=kmipd.key(ident),
                ca=kmipd.ca,
            )
            for ident in IDENTITIES
        )
    )
    return str(path)


@pytest.fixture
def connect(roles_conf):
    opened = []

    def open_as(identity):
        c = ProxyKmipClient(
            config=identity, config_file=roles_conf, kmip_version=enums.KMIPVersion.KMIP_1_4
        )
        c.open()
        opened.append(c)
        return c

    yield open_as
    for c in opened:
        c.close()


def refused(call, *args):
    with pytest.raises(exceptions.KmipOperationFailure) as err:
        call(*args)
    assert err.value.reason == enums.ResultReason.PERMISSION_DENIED, str(err.value)
    return str(err.value)


def test_auditor_reads_attributes_never_key_material(connect):
    """Roles: an auditor locates and reads attributes of another's key; Get refused"""
    owner, auditor = connect("client"), connect("audit-1")
    name = unique("audited")
    uid = owner.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    assert auditor.locate(attributes=[name_attribute(name)]) == [uid]
    _, attrs = auditor.get_attributes(uid, ["Cryptographic Length", "State"])
    values = {a.attribute_name.value: a.attribute_value.value for a in attrs}
    assert values["Cryptographic Length"] == 256
    assert values["State"] == enums.State.PRE_ACTIVE
    refused(auditor.get, uid)
    refused(auditor.create, enums.CryptographicAlgorithm.AES, 128)
    assert owner.get(uid).value, "the owner still gets it"


def test_operator_revokes_but_never_gets(connect):
    """Roles: an operator revokes another's key; Get of its key material refused"""
    owner, operator = connect("client"), connect("ops-1")
    uid = owner.create(enums.CryptographicAlgorithm.AES, 256, name=unique("operated"))
    owner.activate(uid)
    refused(operator.get, uid)
    operator.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, "retired")
    assert state_of(owner, uid) == enums.State.DEACTIVATED


def test_dual_control_destroy_pending_until_a_second_admin_approves(kmipd, connect):
    """Dual control: Destroy pending until a second administrator approves"""
    first, second = connect("admin"), connect("admin2")
    uid = first.create(enums.CryptographicAlgorithm.AES, 256, name=unique("dual"))
    assert admin(kmipd, "dual-control", uid).endswith(f"{uid} now needs dual control")
    message = refused(first.destroy, uid)
    assert "needs the approval of a second administrator" in message, message
    request = message.split("request ", 1)[1].split()[0]
    assert request.startswith(f"{uid}."), message
    # Pending: the requester's retry is refused again and the key is still there.
    assert "awaits approval" in refused(first.destroy, uid)
    assert state_of(first, uid) == enums.State.PRE_ACTIVE
    # The second administrator's identical request approves it and destroys nothing.
    message = refused(second.destroy, uid)
    assert f"approved request {request} of admin" in message, message
    assert state_of(first, uid) == enums.State.PRE_ACTIVE
    first.destroy(uid)
    with pytest.raises(exceptions.KmipOperationFailure) as err:
        first.get(uid)
    assert err.value.reason == enums.ResultReason.ITEM_NOT_FOUND

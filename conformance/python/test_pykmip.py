"""PyKMIP 0.11.0's ProxyKmipClient against kmipd over mutual TLS, at KMIP 1.2, 1.4 and 2.0.

Every operation the ProxyKmipClient offers, each checked by value: registered bytes come back
identical, what kmipd encrypts decrypts (on kmipd and locally with `cryptography`), kmipd's
signatures verify locally, MACs and derived keys equal local computations. A second identity
(client2) sees none of the first one's objects.

AES-GCM: the ProxyKmipClient's encrypt/decrypt carry neither Additional Data nor the tag, so
the GCM flow sends PyKMIP's own Encrypt/Decrypt payload classes through the same client
(`client.proxy.send_request_payload`); the tag field exists only from KMIP 1.4.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import NameOID
from kmip.core import enums
from kmip.core import objects as cobjects
from kmip.core import primitives
from kmip.core.attributes import CryptographicParameters
from kmip.core.factories import attributes as attribute_factories
from kmip.core.messages import payloads
from kmip.pie import exceptions, objects
from kmip.pie.client import ProxyKmipClient

CLIENT = "PyKMIP 0.11.0"
VERSIONS = {
    "1.2": enums.KMIPVersion.KMIP_1_2,
    "1.4": enums.KMIPVersion.KMIP_1_4,
    "2.0": enums.KMIPVersion.KMIP_2_0,
}

INTEROP_CLIENTS = {
    CLIENT: {
        "order": 10,
        "connect": """\
`pip install pykmip==0.11.0` (Python 3.11/3.12; the tested set of pins is
`conformance/python/requirements.lock`: cryptography 50.0.2, SQLAlchemy 2.1.9). A `pykmip.conf`:

```ini
[client]
host=127.0.0.1
port=5696
certfile=DIR/certs/client.pem
keyfile=DIR/certs/client.key
ca_certs=DIR/certs/ca.pem
cert_reqs=CERT_REQUIRED
ssl_version=PROTOCOL_SSLv23
do_handshake_on_connect=True
suppress_ragged_eofs=True
```

```python
from kmip.core import enums
from kmip.pie.client import ProxyKmipClient
c = ProxyKmipClient(config="client", config_file="pykmip.conf",
                    kmip_version=enums.KMIPVersion.KMIP_1_4)  # default 1.2; 2.0 also works
with c:
    uid = c.create(enums.CryptographicAlgorithm.AES, 256)
```

Certificates: the CA (`ca.pem`) and one client certificate with its key (`client.pem`/`.key`;
the identity is the certificate's CN). `ssl_version` must stay `PROTOCOL_SSLv23`
(`PROTOCOL_TLS_CLIENT` fails inside PyKMIP); PyKMIP does not check the server's host name and
sends no SNI, which kmipd does not need. It negotiates TLS 1.3 (or TLS 1.2 ECDHE-GCM).
AES-GCM needs KMIP 1.4 or later and PyKMIP's payload classes (see the suite).""",
    }
}

pytestmark = pytest.mark.interop(client=CLIENT)

CONF = """\
[{section}]
host={host}
port={port}
certfile={cert}
keyfile={key}
ca_certs={ca}
cert_reqs=CERT_REQUIRED
ssl_version=PROTOCOL_SSLv23
do_handshake_on_connect=True
suppress_ragged_eofs=True
timeout=30
"""

ENC_DEC = [enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]
AF = attribute_factories.AttributeFactory()

# Identifiers the first identity created, for the isolation check (any test order).
CREATED: set[str] = set()


@pytest.fixture(scope="session")
def pykmip_conf(kmipd):
    path = kmipd.dir / "pykmip.conf"
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
            for ident in ("client", "client2")
        )
    )
    return str(path)


def open_client(conf, identity, version):
    c = ProxyKmipClient(config=identity, config_file=conf, kmip_version=VERSIONS[version])
    c.open()
    return c


@pytest.fixture(params=list(VERSIONS))
def version(request):
    return request.param


@pytest.fixture
def client(pykmip_conf, version):
    c = open_client(pykmip_conf, "client", version)
    try:
        yield Tracked(c)
    finally:
        c.close()


@pytest.fixture
def client2(pykmip_conf, version):
    c = open_client(pykmip_conf, "client2", version)
    try:
        yield c
    finally:
        c.close()


class Tracked:
    """The client, remembering every identifier it creates (for the isolation test)."""

    def __init__(self, c):
        self.c = c

    def __getattr__(self, name):
        return getattr(self.c, name)

    def create(self, *a, **kw):
        uid = self.c.create(*a, **kw)
        CREATED.add(uid)
        return uid

    def create_key_pair(self, *a, **kw):
        pub, priv = self.c.create_key_pair(*a, **kw)
        CREATED.update((pub, priv))
        return pub, priv

    def register(self, obj):
        uid = self.c.register(obj)
        CREATED.add(uid)
        return uid

    def derive_key(self, *a, **kw):
        uid = self.c.derive_key(*a, **kw)
        CREATED.add(uid)
        return uid

    def rekey(self, *a, **kw):
        uid = self.c.rekey(*a, **kw)
        CREATED.add(uid)
        return uid


def unique(prefix):
    return f"{prefix}-{os.urandom(6).hex()}"


def attrs_by_name(attributes):
    out = {}
    for a in attributes:
        out.setdefault(a.attribute_name.value, []).append(a.attribute_value)
    return out


def state_of(c, uid):
    _, attributes = c.get_attributes(uid, ["State"])
    return attrs_by_name(attributes)["State"][0].value


def rsa_pems(bits=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key


# --- create, get, register -----------------------------------------------------------------


def test_create_get(client):
    """Create AES-256 (with a Name), Get"""
    name = unique("aes")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name, cryptographic_usage_mask=ENC_DEC)
    key = client.get(uid)
    assert isinstance(key, objects.SymmetricKey)
    assert key.cryptographic_algorithm == enums.CryptographicAlgorithm.AES
    assert key.cryptographic_length == 256
    assert len(key.value) == 32


def test_create_key_pair_get(client):
    """CreateKeyPair RSA-2048, Get both halves (they match)"""
    pub_uid, priv_uid = client.create_key_pair(
        enums.CryptographicAlgorithm.RSA,
        2048,
        public_name=unique("pub"),
        private_name=unique("priv"),
    )
    pub = client.get(pub_uid)
    priv = client.get(priv_uid)
    assert isinstance(pub, objects.PublicKey) and isinstance(priv, objects.PrivateKey)
    public = load_public(pub)
    private = load_private(priv)
    assert private.key_size == 2048
    assert private.public_key().public_numbers() == public.public_numbers()


def test_policy_refuses_rsa_1024(client):
    """Server policy: CreateKeyPair RSA-1024 refused (Permission Denied, the rule named)"""
    with pytest.raises(exceptions.KmipOperationFailure) as err:
        client.create_key_pair(enums.CryptographicAlgorithm.RSA, 1024)
    assert err.value.reason == enums.ResultReason.PERMISSION_DENIED
    assert "RSA keys need at least 2048 bits" in str(err.value)


def load_public(pub):
    if pub.key_format_type == enums.KeyFormatType.PKCS_1:
        return serialization.load_der_public_key(
            _pkcs1_public_to_spki(pub.value)
        )
    return serialization.load_der_public_key(pub.value)


def _pkcs1_public_to_spki(der):
    # A PKCS#1 RSAPublicKey: wrap it as SubjectPublicKeyInfo for `cryptography`.
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    n, e = _parse_rsa_public(der)
    return RSAPublicNumbers(e, n).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _parse_rsa_public(der):
    def read(buf, i):
        tag = buf[i]
        length = buf[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(buf[i : i + n], "big")
            i += n
        return tag, buf[i : i + length], i + length

    tag, seq, _ = read(der, 0)
    assert tag == 0x30
    _, n, i = read(seq, 0)
    _, e, _ = read(seq, i)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


def load_private(priv):
    if priv.key_format_type == enums.KeyFormatType.PKCS_1:
        return serialization.load_der_private_key(priv.value, None)
    return serialization.load_der_private_key(priv.value, None)


def test_register_symmetric_key(client):
    """Register SymmetricKey, Get: identical bytes"""
    value = os.urandom(32)
    uid = client.register(
        objects.SymmetricKey(enums.CryptographicAlgorithm.AES, 256, value, ENC_DEC, unique("sym"))
    )
    got = client.get(uid)
    assert isinstance(got, objects.SymmetricKey)
    assert got.value == value


def test_register_public_private(client):
    """Register PublicKey and PrivateKey (RSA), Get: identical bytes"""
    key = rsa_pems()
    pub_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    priv_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub_uid = client.register(
        objects.PublicKey(
            enums.CryptographicAlgorithm.RSA,
            2048,
            pub_der,
            enums.KeyFormatType.PKCS_1,
            [enums.CryptographicUsageMask.VERIFY],
            unique("pub"),
        )
    )
    priv_uid = client.register(
        objects.PrivateKey(
            enums.CryptographicAlgorithm.RSA,
            2048,
            priv_der,
            enums.KeyFormatType.PKCS_8,
            [enums.CryptographicUsageMask.SIGN],
            unique("priv"),
        )
    )
    pub = client.get(pub_uid)
    priv = client.get(priv_uid)
    assert isinstance(pub, objects.PublicKey) and pub.value == pub_der
    assert pub.key_format_type == enums.KeyFormatType.PKCS_1
    assert isinstance(priv, objects.PrivateKey) and priv.value == priv_der
    assert priv.key_format_type == enums.KeyFormatType.PKCS_8


def self_signed_certificate():
    key = rsa_pems()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pykmip interop")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_register_certificate(client):
    """Register X.509 Certificate, Get: identical bytes"""
    der = self_signed_certificate()
    uid = client.register(
        objects.X509Certificate(der, [enums.CryptographicUsageMask.VERIFY], unique("cert"))
    )
    got = client.get(uid)
    assert isinstance(got, objects.X509Certificate)
    assert got.value == der


def test_register_secret_data(client):
    """Register SecretData (Password), Get: identical bytes"""
    value = b"correct horse battery staple"
    uid = client.register(
        objects.SecretData(
            value,
            enums.SecretDataType.PASSWORD,
            [enums.CryptographicUsageMask.DERIVE_KEY],
            unique("secret"),
        )
    )
    got = client.get(uid)
    assert isinstance(got, objects.SecretData)
    assert got.value == value
    assert got.data_type == enums.SecretDataType.PASSWORD


def test_register_opaque(client):
    """Register OpaqueObject, Get: identical bytes"""
    value = os.urandom(100)
    uid = client.register(objects.OpaqueObject(value, enums.OpaqueDataType.NONE, unique("opaque")))
    got = client.get(uid)
    assert isinstance(got, objects.OpaqueObject)
    assert got.value == value


def test_register_split_key(client):
    """Register SplitKey (2 of 3, XOR), Get: identical bytes"""
    value = os.urandom(32)
    split = objects.SplitKey(
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        cryptographic_length=256,
        key_value=value,
        name=unique("split"),
        cryptographic_usage_masks=ENC_DEC,
        split_key_parts=3,
        key_part_identifier=1,
        split_key_threshold=2,
        split_key_method=enums.SplitKeyMethod.XOR,
    )
    try:
        uid = client.register(split)
    except exceptions.KmipOperationFailure as e:
        if e.reason == enums.ResultReason.FEATURE_NOT_SUPPORTED:
            pytest.skip("kmipd does not implement the Split Key object (Register answers "
                        "Feature Not Supported); not among the object types issue 6 requires")
        raise
    got = client.get(uid)
    assert isinstance(got, objects.SplitKey)
    assert got.value == value
    assert (got.split_key_parts, got.key_part_identifier, got.split_key_threshold) == (3, 1, 2)


# --- attributes ----------------------------------------------------------------------------


def test_get_attributes_named(client):
    """GetAttributes with names"""
    name = unique("named")
    uid = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
    got_uid, attributes = client.get_attributes(
        uid, ["Cryptographic Algorithm", "Cryptographic Length", "Name", "State", "Object Type"]
    )
    assert got_uid == uid
    a = attrs_by_name(attributes)
    assert a["Cryptographic Algorithm"][0].value == enums.CryptographicAlgorithm.AES
    assert a["Cryptographic Length"][0].value == 128
    assert a["Name"][0].name_value.value == name
    assert a["State"][0].value == enums.State.PRE_ACTIVE
    assert a["Object Type"][0].value == enums.ObjectType.SYMMETRIC_KEY
    assert set(a) == {"Cryptographic Algorithm", "Cryptographic Length", "Name", "State", "Object Type"}


# PyKMIP 0.11.0's attribute decoders lack value types for attributes newer than KMIP 1.2 that
# kmipd sets on every created key (as the spec says it should): Random Number Generator (1.3)
# in its 1.x decoder, Extractable/Sensitive/Never Extractable (1.4/2.0) in its 2.0 decoder.
PYKMIP_DECODER_GAPS = {
    "1.4": (Exception, "No value type for RANDOM_NUMBER_GENERATOR"),
    "2.0": (ValueError, "Unrecognized attribute type: Tags."),
}


def test_get_attributes_all(client, version):
    """GetAttributes without names (every attribute)"""
    name = unique("all")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    try:
        got_uid, attributes = client.get_attributes(uid)
    except Exception as e:  # noqa: BLE001 (only the known client gaps are turned into xfail)
        gap = PYKMIP_DECODER_GAPS.get(version)
        if gap and isinstance(e, gap[0]) and gap[1] in str(e):
            pytest.xfail(
                f"client defect: PyKMIP 0.11.0 cannot decode a {version} GetAttributes response "
                f"holding every attribute ({e}); kmipd sends attributes the version defines "
                "(Random Number Generator from 1.3; Sensitive, Extractable from 1.4). "
                "Asking for attributes by name works."
            )
        raise
    assert got_uid == uid
    a = attrs_by_name(attributes)
    for required in ("Unique Identifier", "Object Type", "Cryptographic Algorithm",
                     "Cryptographic Length", "State", "Initial Date", "Name"):
        assert required in a, f"{required} missing from {sorted(a)}"
    assert a["Unique Identifier"][0].value == uid
    assert a["Name"][0].name_value.value == name


def test_get_attribute_list(client):
    """GetAttributeList"""
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("list"))
    names = client.get_attribute_list(uid)
    for required in ("Unique Identifier", "Object Type", "Cryptographic Algorithm",
                     "Cryptographic Length", "State", "Name", "Initial Date"):
        assert required in names, f"{required} missing from {names}"
    assert len(names) == len(set(names))
    # Every listed attribute that PyKMIP can decode can be read back by name.
    readable = [n for n in names if n in ("Object Type", "Cryptographic Algorithm",
                                          "Cryptographic Length", "State", "Name")]
    _, attributes = client.get_attributes(uid, readable)
    assert set(attrs_by_name(attributes)) == set(readable)


def name_attribute(name):
    return AF.create_attribute(enums.AttributeType.NAME, name)


def test_modify_attribute(client, version):
    """ModifyAttribute (Name)"""
    old, new = unique("old"), unique("new")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=old)
    if version == "2.0":
        got_uid, _ = client.modify_attribute(
            uid,
            current_attribute=cobjects.CurrentAttribute(attribute=_name_value(old)),
            new_attribute=cobjects.NewAttribute(attribute=_name_value(new)),
        )
    else:
        attr = AF.create_attribute(enums.AttributeType.NAME, new, index=0)
        got_uid, echoed = client.modify_attribute(uid, attribute=attr)
        assert echoed is not None and echoed.attribute_value.name_value.value == new
    assert got_uid == uid
    _, attributes = client.get_attributes(uid, ["Name"])
    assert [n.name_value.value for n in attrs_by_name(attributes)["Name"]] == [new]
    assert client.locate(attributes=[name_attribute(new)]) == [uid]
    assert client.locate(attributes=[name_attribute(old)]) == []


def _name_value(text):
    from kmip.core.attributes import Name

    return Name.create(text, enums.NameType.UNINTERPRETED_TEXT_STRING)


def test_delete_attribute(client, version):
    """DeleteAttribute (Name)"""
    name = unique("del")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    if version == "2.0":
        got_uid, _ = client.delete_attribute(
            uid, current_attribute=cobjects.CurrentAttribute(attribute=_name_value(name))
        )
    else:
        got_uid, deleted = client.delete_attribute(uid, attribute_name="Name", attribute_index=0)
        assert deleted is not None
    assert got_uid == uid
    assert "Name" not in client.get_attribute_list(uid)
    assert client.locate(attributes=[name_attribute(name)]) == []


def test_set_attribute(client, version):
    """SetAttribute (Sensitive)"""
    if version != "2.0":
        pytest.skip("SetAttribute is a KMIP 2.0 operation")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("set"))
    assert client.set_attribute(uid, attribute_name="Sensitive", attribute_value=True) == uid
    _, attributes = client.get_attributes(uid, ["Sensitive"])
    assert attrs_by_name(attributes)["Sensitive"][0].value is True


# --- locate --------------------------------------------------------------------------------


def test_locate_by_name(client):
    """Locate by Name (exactly the one object)"""
    name = unique("loc")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("other"))
    assert client.locate(attributes=[name_attribute(name)]) == [uid]
    assert client.locate(attributes=[name_attribute(unique("absent"))]) == []


def test_locate_by_type_max_items(client):
    """Locate by Object Type with Maximum Items"""
    for _ in range(3):
        client.register(objects.OpaqueObject(os.urandom(8), enums.OpaqueDataType.NONE, unique("o")))
    attr = AF.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.OPAQUE_DATA)
    everything = client.locate(attributes=[attr])
    assert len(everything) >= 3
    two = client.locate(maximum_items=2, attributes=[attr])
    assert len(two) == 2 and set(two) <= set(everything)
    for uid in two:
        assert isinstance(client.get(uid), objects.OpaqueObject)


def test_locate_by_algorithm_max_items(client):
    """Locate by Cryptographic Algorithm with Maximum Items"""
    for _ in range(3):
        client.create(enums.CryptographicAlgorithm.TRIPLE_DES, 192, name=unique("3des"))
    attr = AF.create_attribute(
        enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.TRIPLE_DES
    )
    everything = client.locate(attributes=[attr])
    assert len(everything) >= 3
    two = client.locate(maximum_items=2, attributes=[attr])
    assert len(two) == 2 and set(two) <= set(everything)
    for uid in two:
        _, a = client.get_attributes(uid, ["Cryptographic Algorithm"])
        assert attrs_by_name(a)["Cryptographic Algorithm"][0].value == enums.CryptographicAlgorithm.TRIPLE_DES


# --- lifecycle -----------------------------------------------------------------------------


def test_lifecycle(client, version):
    """Activate, Revoke, Destroy (states checked; Get after Destroy fails)"""
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("life"))
    assert state_of(client, uid) == enums.State.PRE_ACTIVE
    client.activate(uid)
    assert state_of(client, uid) == enums.State.ACTIVE
    with pytest.raises(exceptions.KmipOperationFailure):
        client.destroy(uid)  # an Active object cannot be destroyed
    client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, "retired")
    assert state_of(client, uid) == enums.State.DEACTIVATED
    client.destroy(uid)
    with pytest.raises(exceptions.KmipOperationFailure) as err:
        client.get(uid)
    # Object Destroyed is a KMIP 2.0 Result Reason; before 2.0 the object is simply not found.
    expected = (enums.ResultReason.OBJECT_DESTROYED if version == "2.0"
                else enums.ResultReason.ITEM_NOT_FOUND)
    assert err.value.reason == expected


def test_revoke_compromised(client):
    """Revoke (Key Compromise), Destroy"""
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("comp"))
    client.activate(uid)
    client.revoke(
        enums.RevocationReasonCode.KEY_COMPROMISE,
        uid,
        "leaked",
        compromise_occurrence_date=int(datetime.datetime.now().timestamp()) - 60,
    )
    assert state_of(client, uid) == enums.State.COMPROMISED
    client.destroy(uid)
    assert state_of(client, uid) == enums.State.DESTROYED_COMPROMISED


def test_rekey(client):
    """ReKey (new key, same algorithm and length, different bytes)"""
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("rekey"))
    client.activate(uid)
    new_uid = client.rekey(uid)
    assert new_uid != uid
    old, new = client.get(uid), client.get(new_uid)
    assert new.cryptographic_length == 256 and len(new.value) == 32
    assert new.value != old.value


def test_check(client):
    """Check (usage mask allowed, then refused)"""
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=unique("check"),
                        cryptographic_usage_mask=ENC_DEC)
    client.activate(uid)
    assert client.check(uid, cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT]) == uid
    # A failed Check: kmipd answers Operation Failed without a payload (as the OASIS cases
    # expect); PyKMIP 0.11.0 reads the payload before the status and raises AttributeError
    # instead of KmipOperationFailure (a client defect). Either way the check is refused.
    with pytest.raises((exceptions.KmipOperationFailure, AttributeError)):
        client.check(uid, cryptographic_usage_mask=[enums.CryptographicUsageMask.SIGN])
    with pytest.raises(exceptions.KmipOperationFailure):  # the connection is still usable
        client.get("no-such-object")


# --- cryptography --------------------------------------------------------------------------


def active_aes(client, length=256):
    uid = client.create(enums.CryptographicAlgorithm.AES, length, name=unique("crypt"),
                        cryptographic_usage_mask=ENC_DEC)
    client.activate(uid)
    return uid, client.get(uid).value


CBC = {
    "cryptographic_algorithm": enums.CryptographicAlgorithm.AES,
    "block_cipher_mode": enums.BlockCipherMode.CBC,
    "padding_method": enums.PaddingMethod.PKCS5,
}


def test_encrypt_decrypt_cbc(client):
    """Encrypt/Decrypt AES-256-CBC-PKCS5 (client IV and server IV; checked locally)"""
    uid, key = active_aes(client)
    plaintext = b"interoperability is a property of two implementations" * 3
    iv = os.urandom(16)
    ct, iv_back = client.encrypt(plaintext, uid, CBC, iv)
    assert iv_back in (None, iv)
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpad = padding.PKCS7(128).unpadder()
    assert unpad.update(dec.update(ct) + dec.finalize()) + unpad.finalize() == plaintext
    assert client.decrypt(ct, uid, CBC, iv) == plaintext

    params = dict(CBC, random_iv=True)
    ct2, server_iv = client.encrypt(plaintext, uid, params)
    assert server_iv is not None and len(server_iv) == 16
    assert client.decrypt(ct2, uid, CBC, server_iv) == plaintext


def test_encrypt_decrypt_gcm(client, version):
    """Encrypt/Decrypt AES-256-GCM with Additional Data (tag checked locally)"""
    if version == "1.2":
        pytest.skip("the Authenticated Encryption Tag field exists only from KMIP 1.4")
    uid, key = active_aes(client)
    params = CryptographicParameters(
        block_cipher_mode=enums.BlockCipherMode.GCM,
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        tag_length=16,
    )
    nonce, aad, plaintext = os.urandom(12), b"header", b"authenticated secret"
    resp = client.proxy.send_request_payload(
        enums.Operation.ENCRYPT,
        payloads.EncryptRequestPayload(
            unique_identifier=uid,
            cryptographic_parameters=params,
            data=plaintext,
            iv_counter_nonce=nonce,
            auth_additional_data=aad,
        ),
    )
    assert resp.auth_tag is not None and len(resp.auth_tag) == 16
    assert AESGCM(key).decrypt(nonce, resp.data + resp.auth_tag, aad) == plaintext
    resp = client.proxy.send_request_payload(
        enums.Operation.DECRYPT,
        payloads.DecryptRequestPayload(
            unique_identifier=uid,
            cryptographic_parameters=params,
            data=resp.data,
            iv_counter_nonce=nonce,
            auth_additional_data=aad,
            auth_tag=resp.auth_tag,
        ),
    )
    assert resp.data == plaintext


def signing_pair(client):
    pub_uid, priv_uid = client.create_key_pair(
        enums.CryptographicAlgorithm.RSA,
        2048,
        public_name=unique("vpub"),
        public_usage_mask=[enums.CryptographicUsageMask.VERIFY],
        private_name=unique("spriv"),
        private_usage_mask=[enums.CryptographicUsageMask.SIGN],
    )
    client.activate(pub_uid)
    client.activate(priv_uid)
    return pub_uid, priv_uid, load_public(client.get(pub_uid))


@pytest.mark.parametrize(
    "scheme",
    ["PSS", "PKCS1v15"],
)
def test_sign_verify(client, scheme):
    """Sign/SignatureVerify RSA-2048 SHA-256 (verified locally too)"""
    pub_uid, priv_uid, public = signing_pair(client)
    method = enums.PaddingMethod.PSS if scheme == "PSS" else enums.PaddingMethod.PKCS1v15
    params = {
        "cryptographic_algorithm": enums.CryptographicAlgorithm.RSA,
        "hashing_algorithm": enums.HashingAlgorithm.SHA_256,
        "padding_method": method,
    }
    message = b"signed by kmipd"
    signature = client.sign(message, priv_uid, params)
    local = (
        asym_padding.PSS(asym_padding.MGF1(hashes.SHA256()), asym_padding.PSS.AUTO)
        if scheme == "PSS"
        else asym_padding.PKCS1v15()
    )
    public.verify(signature, message, local, hashes.SHA256())  # raises if invalid
    assert client.signature_verify(message, signature, pub_uid, params) == enums.ValidityIndicator.VALID
    assert client.signature_verify(message + b"!", signature, pub_uid, params) == enums.ValidityIndicator.INVALID


def test_mac(client):
    """MAC HMAC-SHA256 (equals a local HMAC)"""
    uid = client.create(
        enums.CryptographicAlgorithm.HMAC_SHA256,
        256,
        name=unique("mac"),
        cryptographic_usage_mask=[enums.CryptographicUsageMask.MAC_GENERATE,
                                  enums.CryptographicUsageMask.MAC_VERIFY],
    )
    client.activate(uid)
    key = client.get(uid).value
    data = b"message to authenticate"
    got_uid, mac = client.mac(data, uid, enums.CryptographicAlgorithm.HMAC_SHA256)
    assert got_uid == uid
    assert mac == hmac.new(key, data, hashlib.sha256).digest()


def test_derive_key_pbkdf2(client):
    """DeriveKey PBKDF2-HMAC-SHA256 from SecretData (equals a local PBKDF2)"""
    password = b"pbkdf2 password"
    base = client.register(
        objects.SecretData(password, enums.SecretDataType.PASSWORD,
                           [enums.CryptographicUsageMask.DERIVE_KEY], unique("pw"))
    )
    client.activate(base)
    salt = os.urandom(16)
    uid = client.derive_key(
        enums.ObjectType.SYMMETRIC_KEY,
        [base],
        enums.DerivationMethod.PBKDF2,
        {
            "cryptographic_parameters": {"hashing_algorithm": enums.HashingAlgorithm.SHA_256},
            "salt": salt,
            "iteration_count": 1000,
        },
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        cryptographic_length=256,
    )
    derived = client.get(uid)
    expected = PBKDF2HMAC(hashes.SHA256(), 32, salt, 1000).derive(password)
    assert derived.value == expected


def test_derive_key_encrypt(client):
    """DeriveKey by Encrypt (AES-CBC of the derivation data, equals local)"""
    base = client.create(
        enums.CryptographicAlgorithm.AES, 256, name=unique("kek"),
        cryptographic_usage_mask=[enums.CryptographicUsageMask.DERIVE_KEY,
                                  enums.CryptographicUsageMask.ENCRYPT],
    )
    client.activate(base)
    base_key = client.get(base).value
    data, iv = os.urandom(32), os.urandom(16)
    uid = client.derive_key(
        enums.ObjectType.SYMMETRIC_KEY,
        [base],
        enums.DerivationMethod.ENCRYPT,
        {
            "cryptographic_parameters": {
                "cryptographic_algorithm": enums.CryptographicAlgorithm.AES,
                "block_cipher_mode": enums.BlockCipherMode.CBC,
                "padding_method": enums.PaddingMethod.NONE,
            },
            "initialization_vector": iv,
            "derivation_data": data,
        },
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        cryptographic_length=256,
    )
    enc = Cipher(algorithms.AES(base_key), modes.CBC(iv)).encryptor()
    assert client.get(uid).value == enc.update(data) + enc.finalize()


# --- two identities ------------------------------------------------------------------------


def test_second_identity_isolated(client, client2):
    """A second identity (client2) sees none of client's objects"""
    name = unique("mine")
    uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)
    assert client.locate(attributes=[name_attribute(name)]) == [uid]
    for probe in [uid] + sorted(CREATED)[:20]:
        with pytest.raises(exceptions.KmipOperationFailure):
            client2.get(probe)
        with pytest.raises(exceptions.KmipOperationFailure):
            client2.get_attributes(probe)
    assert client2.locate(attributes=[name_attribute(name)]) == []
    seen = set(client2.locate())
    assert not (seen & CREATED), "client2 located objects of client"
    with pytest.raises(exceptions.KmipOperationFailure):
        client2.destroy(uid)
    assert len(client.get(uid).value) == 32  # still there for its owner

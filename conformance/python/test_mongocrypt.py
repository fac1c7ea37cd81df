"""libmongocrypt (MongoDB's client-side field level encryption) with kmipd as its KMIP KMS.

libmongocrypt comes from the PyPI package pymongocrypt, whose manylinux wheel bundles the
library (pymongocrypt 1.21.2 carries libmongocrypt 1.21.0). No MongoDB server runs: the suite
drives libmongocrypt's explicit-encryption and data-key APIs through pymongocrypt's
callback-based state machine, and implements the callbacks itself: the key vault is a dict, and
the KMS callback sends libmongocrypt's KMIP request bytes over mutual TLS (Python's ssl module,
the `client` certificate) and feeds the response back.

The two flows libmongocrypt has (clients.md):
- KMIP 1.0: Register a 96-byte Secret Data (the key-encryption key), Activate, Get; every later
  use of the data key Gets the secret again and unwraps the data key locally.
- KMIP 1.2, `delegated: true`: Create AES-256, Activate, Encrypt the data key on kmipd
  (AES-CBC-PKCS5, random IV); every later use Decrypts it on kmipd. (Its Activate carries a
  1.0 header even here.)

Each flow is checked by value: the KMIP operations and protocol version of every request are
decoded from the bytes libmongocrypt sent, the key-encryption key is read back on kmipd with
PyKMIP, and a value encrypted with the data key decrypts in a fresh libmongocrypt (an empty key
cache, so it asks kmipd again).
"""

from __future__ import annotations

import socket
import ssl
import struct
import uuid

import bson
import pytest
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions
from kmip.core import enums
from kmip.pie import objects
from kmip.pie.client import ProxyKmipClient
from pymongocrypt.binding import libmongocrypt_version
from pymongocrypt.explicit_encrypter import ExplicitEncrypter
from pymongocrypt.options import MongoCryptOptions
from pymongocrypt.state_machine import MongoCryptCallback
from pymongocrypt.version import __version__ as pymongocrypt_version

CLIENT = f"libmongocrypt {libmongocrypt_version()} (pymongocrypt {pymongocrypt_version})"
KMS_TIMEOUT = 15  # s, per KMS request (connect, send, every read)
ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic"
OPTS = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)

INTEROP_CLIENTS = {
    CLIENT: {
        "order": 20,
        "connect": """\
MongoDB drivers (and `mongosh`) configure the KMIP KMS provider; libmongocrypt builds the KMIP
requests and the driver carries them over TLS. With PyMongo:

```python
kms_providers = {"kmip": {"endpoint": "localhost:5696"}}
kms_tls_options = {"kmip": {"tlsCAFile": "DIR/certs/ca.pem",
                            "tlsCertificateKeyFile": "client-with-key.pem"}}
client_encryption = ClientEncryption(kms_providers, "keyvault.datakeys", mongo_client,
                                     codec_options, kms_tls_options=kms_tls_options)
client_encryption.create_data_key("kmip")                                  # KMIP 1.0 flow
client_encryption.create_data_key("kmip", master_key={"delegated": True})  # KMIP 1.2 flow
```

`tlsCertificateKeyFile` is one PEM file holding the client certificate and its private key
(`cat DIR/certs/client.pem DIR/certs/client.key > client-with-key.pem`); `tlsCAFile` is the
CA that issued kmipd's server certificate. Name the endpoint by a host name in the server
certificate (`localhost`; `kmipd init` also puts 127.0.0.1 in it): the driver verifies it.
Without `keyId` in the master key, libmongocrypt registers (or, delegated, creates) a new
key-encryption key on kmipd for each data key; with `master_key={"keyId": UID}` it uses an
existing, active 96-byte Secret Data (or, delegated, an AES-256 key). The objects belong to the
client certificate's identity.

The suite drives libmongocrypt without a MongoDB server through pymongocrypt (its wheel
bundles libmongocrypt): `ExplicitEncrypter` with a `MongoCryptCallback` whose `kms_request`
opens a mutual-TLS connection per request (Python's `ssl`, `client.pem`/`client.key`,
`ca.pem`), sends `kms_context.message` and feeds the reply until `bytes_needed` is 0.""",
    }
}


def interop(version):
    return pytest.mark.interop(client=CLIENT, version=version)


# --- a minimal TTLV reader: which operation and protocol version libmongocrypt sent ----------

TAG_OPERATION = 0x42005C
TAG_MAJOR = 0x42006A
TAG_MINOR = 0x42006B


def ttlv_items(buf, out):
    i = 0
    while i + 8 <= len(buf):
        tag = int.from_bytes(buf[i : i + 3], "big")
        typ = buf[i + 3]
        length = struct.unpack(">I", buf[i + 4 : i + 8])[0]
        value = buf[i + 8 : i + 8 + length]
        padded = (length + 7) // 8 * 8  # every item is padded to a multiple of eight bytes
        if typ == 0x01:
            ttlv_items(value, out)
        elif typ in (0x02, 0x05):
            out.append((tag, int.from_bytes(value, "big")))
        i += 8 + padded


def describe_request(message):
    items = []
    ttlv_items(message, items)
    version = [v for t, v in items if t in (TAG_MAJOR, TAG_MINOR)][:2]
    ops = [enums.Operation(v).name for t, v in items if t == TAG_OPERATION]
    return f"{version[0]}.{version[1]}", ops


# --- pymongocrypt callbacks -----------------------------------------------------------------


class Callback(MongoCryptCallback):
    """The driver's part: a dict for the key vault, Python's ssl for the KMIP connection."""

    def __init__(self, kmipd, vault):
        self.kmipd = kmipd
        self.vault = vault  # _id (uuid bytes) -> BSON bytes of the data key document
        self.requests = []  # (version, [operations]) of every KMIP request sent
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=kmipd.ca)
        self.ctx.load_cert_chain(kmipd.cert("client"), kmipd.key("client"))

    def kms_request(self, kms_context):
        assert kms_context.kms_provider == "kmip"
        host, _, port = kms_context.endpoint.rpartition(":")
        message = kms_context.message
        self.requests.append(describe_request(message))
        with socket.create_connection((host, int(port)), timeout=KMS_TIMEOUT) as raw:
            with self.ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(KMS_TIMEOUT)
                tls.sendall(message)
                while kms_context.bytes_needed > 0:
                    data = tls.recv(kms_context.bytes_needed)
                    if not data:
                        raise ConnectionError("kmipd closed the connection mid-response")
                    kms_context.feed(data)

    def collection_info(self, database, filter):
        raise AssertionError("explicit encryption never asks for collection info")

    def mark_command(self, database, cmd):
        raise AssertionError("explicit encryption never asks mongocryptd")

    def fetch_keys(self, filter):
        f = bson.decode(filter, OPTS)
        wanted = set()
        for clause in f.get("$or", [f]):
            for k in clause.get("_id", {}).get("$in", []):
                wanted.add(k.bytes if isinstance(k, uuid.UUID) else bytes(k))
        return [doc for kid, doc in sorted(self.vault.items()) if kid in wanted]

    def insert_data_key(self, data_key):
        doc = bson.decode(data_key, OPTS)
        kid = doc["_id"]
        kid = kid.bytes if isinstance(kid, uuid.UUID) else bytes(kid)
        self.vault[kid] = data_key
        return kid

    def bson_encode(self, doc):
        return bson.encode(doc, codec_options=OPTS)

    def close(self):
        pass


def encrypter(kmipd, vault):
    endpoint = f"localhost:{kmipd.port}"
    cb = Callback(kmipd, vault)
    opts = MongoCryptOptions({"kmip": {"endpoint": endpoint}}, key_expiration_ms=0)
    return ExplicitEncrypter(cb, opts), cb


@pytest.fixture
def pykmip(kmipd):
    """PyKMIP as the same identity (`client`), to inspect the objects libmongocrypt made."""
    c = ProxyKmipClient(
        hostname=kmipd.host,
        port=kmipd.port,
        cert=kmipd.cert("client"),
        key=kmipd.key("client"),
        ca=kmipd.ca,
        ssl_version="PROTOCOL_SSLv23",
        kmip_version=enums.KMIPVersion.KMIP_1_2,
    )
    c.open()
    try:
        yield c
    finally:
        c.close()


def make_data_key(kmipd, vault, master_key):
    enc, cb = encrypter(kmipd, vault)
    try:
        kid = enc.create_data_key("kmip", master_key=master_key)
    finally:
        enc.close()
    doc = bson.decode(vault[kid], OPTS)
    return kid, doc, cb.requests


def roundtrip(kmipd, vault, kid, value, algorithm=ALGORITHM):
    """Encrypt in one fresh libmongocrypt, decrypt in another: each asks kmipd for the KEK."""
    enc, cb_enc = encrypter(kmipd, vault)
    try:
        ciphertext = enc.encrypt(bson.encode({"v": value}), algorithm, key_id=kid)
    finally:
        enc.close()
    wrapped = bson.decode(ciphertext, OPTS)["v"]
    assert isinstance(wrapped, Binary) and wrapped.subtype == 6
    dec, cb_dec = encrypter(kmipd, vault)
    try:
        plain = bson.decode(dec.decrypt(ciphertext), OPTS)["v"]
    finally:
        dec.close()
    return plain, cb_enc.requests, cb_dec.requests


# --- the flows ------------------------------------------------------------------------------


@interop("1.0")
def test_seed_data_key(kmipd, pykmip):
    """Data key with a new KEK: Register SecretData (96 bytes), Activate, Get"""
    vault = {}
    kid, doc, requests = make_data_key(kmipd, vault, None)
    assert requests == [("1.0", ["REGISTER"]), ("1.0", ["ACTIVATE"]), ("1.0", ["GET"])]
    master = doc["masterKey"]
    assert master["provider"] == "kmip" and not master.get("delegated", False)
    secret = pykmip.get(master["keyId"])
    assert isinstance(secret, objects.SecretData) and len(secret.value) == 96
    _, attrs = pykmip.get_attributes(master["keyId"], ["State"])
    assert attrs[0].attribute_value.value == enums.State.ACTIVE


@interop("1.0")
def test_seed_roundtrip(kmipd):
    """Encrypt and decrypt with that data key (each use: Get)"""
    vault = {}
    kid, _, _ = make_data_key(kmipd, vault, None)
    plain, enc_req, dec_req = roundtrip(kmipd, vault, kid, "a field value")
    assert plain == "a field value"
    assert enc_req == [("1.0", ["GET"])] and dec_req == [("1.0", ["GET"])]


@interop("1.0")
def test_seed_existing_key_id(kmipd, pykmip):
    """Data key under an existing KEK (keyId given): Get only"""
    seed = pykmip.register(
        objects.SecretData(bytes(range(96)), enums.SecretDataType.SEED, None, "mongo-kek")
    )
    pykmip.activate(seed)
    vault = {}
    kid, doc, requests = make_data_key(kmipd, vault, {"keyId": seed})
    assert requests == [("1.0", ["GET"])]
    assert doc["masterKey"]["keyId"] == seed
    plain, _, _ = roundtrip(kmipd, vault, kid, 42)
    assert plain == 42


@interop("1.2")
def test_delegated_data_key(kmipd, pykmip):
    """Delegated data key: Create AES-256, Activate, Encrypt (AES-CBC on kmipd)"""
    vault = {}
    kid, doc, requests = make_data_key(kmipd, vault, {"delegated": True})
    # libmongocrypt sends its Activate with a 1.0 header in the delegated flow too.
    assert requests == [("1.2", ["CREATE"]), ("1.0", ["ACTIVATE"]), ("1.2", ["ENCRYPT"])]
    master = doc["masterKey"]
    assert master["provider"] == "kmip" and master["delegated"] is True
    key = pykmip.get(master["keyId"])
    assert isinstance(key, objects.SymmetricKey)
    assert key.cryptographic_algorithm == enums.CryptographicAlgorithm.AES
    assert len(key.value) == 32


@interop("1.2")
def test_delegated_roundtrip(kmipd):
    """Encrypt and decrypt with that data key (each use: Decrypt on kmipd)"""
    vault = {}
    kid, _, _ = make_data_key(kmipd, vault, {"delegated": True})
    plain, enc_req, dec_req = roundtrip(kmipd, vault, kid, "delegated value")
    assert plain == "delegated value"
    assert enc_req == [("1.2", ["DECRYPT"])] and dec_req == [("1.2", ["DECRYPT"])]


@interop("1.2")
def test_delegated_existing_key_id(kmipd, pykmip):
    """Delegated data key under an existing AES-256 key (keyId given): Encrypt only"""
    uid = pykmip.create(
        enums.CryptographicAlgorithm.AES,
        256,
        name="mongo-delegated-kek",
        cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT,
                                  enums.CryptographicUsageMask.DECRYPT],
    )
    pykmip.activate(uid)
    vault = {}
    kid, doc, requests = make_data_key(kmipd, vault, {"keyId": uid, "delegated": True})
    assert requests == [("1.2", ["ENCRYPT"])]
    # A document value needs the Random algorithm (Deterministic takes scalars only).
    plain, _, _ = roundtrip(kmipd, vault, kid, {"nested": [1, 2, 3]},
                            "AEAD_AES_256_CBC_HMAC_SHA_512-Random")
    assert plain == {"nested": [1, 2, 3]}

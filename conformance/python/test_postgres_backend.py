"""A subset of the interoperability suites against a kmipd on the PostgreSQL store.

The whole suites run against a sled-backed kmipd (the `kmipd` fixture of conftest.py); here
the `kmipd` fixture is overridden for this module with a kmipd whose `[store]` is a private
PostgreSQL (kmipd_instance.PgServer), and a subset of the same test functions (imported, so
they are the very same checks) runs against it: PyKMIP's create/get, register and read back,
attributes, locate, lifecycle and AES encryption at KMIP 1.4, and libmongocrypt's two flows.
The subset keeps the suite's time from doubling; these rows are not recorded in
docs/interoperability.md (INTEROP_RECORD), which describes the clients, not the backends.
"""

from __future__ import annotations

import pytest

from kmipd_instance import KmipdInstance, PgServer, kmipd_binary, use_postgres

# The same checks, collected again in this module (where `kmipd` is the postgres one).
from test_pykmip import (  # noqa: F401
    client,
    pykmip_conf,
    test_create_get,
    test_get_attributes_named,
    test_lifecycle,
    test_locate_by_name,
    test_modify_attribute,
    test_register_secret_data,
    test_register_symmetric_key,
    test_revoke_compromised,
)
from test_mongocrypt import (  # noqa: F401
    pykmip,
    test_delegated_data_key,
    test_delegated_roundtrip,
    test_seed_data_key,
    test_seed_roundtrip,
)

INTEROP_RECORD = False


@pytest.fixture(scope="session")
def kmipd(tmp_path_factory):
    pg = PgServer()
    try:
        pg.start()
        inst = KmipdInstance(kmipd_binary(), tmp_path_factory.mktemp("kmipd-pg") / "instance")
        inst.init()
        use_postgres(inst, pg.url)
        try:
            inst.start()
            yield inst
        finally:
            inst.stop()
    finally:
        pg.stop()


@pytest.fixture(params=["1.4"])
def version(request):
    return request.param

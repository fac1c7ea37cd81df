"""The `kmip` command-line client (crates/cli) against PyKMIP 0.11.0's server: create, locate,
show, get and destroy over mutual TLS, to show that `kmip` is a KMIP client and not a kmipd-only
tool. The server's certificates are the ones `kmipd init` made for the session's kmipd (PyKMIP
only needs a server certificate, its key and the CA); `kmip` runs as the dev identity `client`.

`$KMIP_BIN` selects a prebuilt `kmip`; otherwise `cargo build -p kmipd-cli` runs first.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmipd_instance import BUILD_TIMEOUT, REPO, free_port

START_TIMEOUT = 60  # s: until PyKMIP's server accepts connections
KMIP_TIMEOUT = 60  # s: one kmip command


def kmip_binary() -> Path:
    env = os.environ.get("KMIP_BIN")
    if env:
        return Path(env).resolve()
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", "kmipd-cli"],
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    target = os.environ.get("CARGO_TARGET_DIR")
    base = (REPO / target) if target else REPO / "target"
    return base.resolve() / "debug" / "kmip"


@pytest.fixture(scope="module")
def pykmip_server(kmipd, tmp_path_factory):
    work = tmp_path_factory.mktemp("pykmip")
    (work / "policies").mkdir()
    port = free_port()
    conf = work / "server.conf"
    conf.write_text(
        "[server]\n"
        "hostname=127.0.0.1\n"
        f"port={port}\n"
        f"certificate_path={kmipd.cert('server-ec')}\n"
        f"key_path={kmipd.key('server-ec')}\n"
        f"ca_path={kmipd.ca}\n"
        "auth_suite=TLS1.2\n"
        f"policy_path={work / 'policies'}\n"
        "enable_tls_client_auth=True\n"
        "logging_level=WARNING\n"
        f"database_path={work / 'pykmip.db'}\n"
    )
    server = Path(sys.executable).parent / "pykmip-server"
    log = open(work / "server.out", "wb")
    proc = subprocess.Popen(
        [str(server), "-f", str(conf), "-l", str(work / "server.log")],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pykmip-server exited: {(work / 'server.out').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pykmip-server did not listen within the bound")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def kmip(kmipd, pykmip_server, tmp_path_factory):
    binary = kmip_binary()
    home = tmp_path_factory.mktemp("kmip-home")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [
            str(binary),
            "--server", f"127.0.0.1:{pykmip_server}",
            "--ca", kmipd.ca,
            "--cert", kmipd.cert("client"),
            "--key", kmipd.key("client"),
            "--kmip-version", "1.2",
            *args,
        ]
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=KMIP_TIMEOUT,
            env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")},
        )
        if check:
            assert done.returncode == 0, f"kmip {args}: {done.stderr}"
        return done

    return run


def test_create_locate_show_get_destroy_on_pykmip(kmip):
    """kmip create, locate, show, get and destroy against PyKMIP's server"""
    name = f"kmip-cli-{os.getpid()}"
    uid = kmip("create", "--algorithm", "AES", "--length", "256", "--name", name, "--quiet").stdout
    uid = uid.strip()
    assert uid and "\n" not in uid

    assert kmip("locate", "--name", name, "--quiet").stdout.split() == [uid]

    shown = json.loads(kmip("show", uid, "--json").stdout)
    assert shown["unique_identifier"] == uid
    assert shown["cryptographic_algorithm"] == "AES"
    assert shown["cryptographic_length"] == 256
    assert shown["names"] == [name]

    material = kmip("get", uid, "--reveal", "--quiet").stdout.strip()
    assert len(bytes.fromhex(material)) == 32
    summary = kmip("get", uid).stdout
    assert material not in summary

    kmip("destroy", uid)
    gone = kmip("get", uid, check=False)
    assert gone.returncode == 1, gone.stderr
    assert gone.stderr.startswith("kmip: KMIP failure: Operation Failed"), gone.stderr

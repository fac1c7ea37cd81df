"""A fresh kmipd instance for the Python interoperability suites.

`KmipdInstance.start()` runs `kmipd init --dir D` (its own CA, client certificates and SoftHSM2
token) and then `kmipd serve --config D/kmipd.toml --listen 127.0.0.1:PORT` on a free port, and
waits for the port with a bounded timeout. `stop()` always ends the server: SIGTERM to its
process group, then SIGKILL after a grace period. Every wait here is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

POLICY = """
[policy]
[[policy.allow]]
algorithm = "AES"
lengths = [128, 192, 256]
[[policy.allow]]
algorithm = "DES3"
[[policy.allow]]
algorithm = "HMAC_SHA256"
[[policy.allow]]
algorithm = "RSA"
min_length = 2048
"""
# The rotation scheduler's period is read at start only: a short one lets test_pykmip_policy.py
# see a rotation set by a reloaded policy without waiting a minute (it only acts on objects with
# Rotate Automatic True, which no other test creates).
ROTATION = """
[rotation]
check_every = "1s"
"""
INIT_TIMEOUT = 120  # s: init provisions a SoftHSM2 token and issues certificates
START_TIMEOUT = 60  # s: until the port accepts connections
STOP_GRACE = 15  # s: after SIGTERM, before SIGKILL
BUILD_TIMEOUT = 1800  # s: a cold debug build of the workspace on two cores


def kmipd_binary() -> Path:
    """$KMIPD_BIN, or kmipd freshly built with `cargo build -p kmipd` (in $CARGO_TARGET_DIR when
    set, else target/)."""
    env = os.environ.get("KMIPD_BIN")
    if env:
        path = Path(env).resolve()
        if not path.is_file():
            raise RuntimeError(f"KMIPD_BIN={env} does not exist")
        return path
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", "kmipd"],
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    target = os.environ.get("CARGO_TARGET_DIR")
    base = (REPO / target) if target else REPO / "target"
    return base.resolve() / "debug" / "kmipd"


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, however it dies (Linux prctl)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KmipdInstance:
    def __init__(self, binary: Path, directory: Path):
        self.binary = Path(binary)
        self.dir = Path(directory)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir.parent / (self.dir.name + ".log")
        self._log = None

    # Certificates written by `kmipd init`.
    def cert(self, name: str) -> str:
        return str(self.dir / "certs" / f"{name}.pem")

    def key(self, name: str) -> str:
        return str(self.dir / "certs" / f"{name}.key")

    @property
    def ca(self) -> str:
        return self.cert("ca")

    def init(self) -> None:
        subprocess.run(
            [str(self.binary), "init", "--dir", str(self.dir)],
            check=True,
            timeout=INIT_TIMEOUT,
            stdout=subprocess.DEVNULL,
        )
        # The suites create 3DES keys, which kmipd's default policy refuses for new keys
        # (docs/policy.md): this instance allows exactly what they use, so RSA below 2048 bits
        # is still refused (test_policy_refuses_rsa_1024).
        with open(self.dir / "kmipd.toml", "a") as conf:
            conf.write(POLICY)
            conf.write(ROTATION)

    def start(self, attempts: int = 3) -> "KmipdInstance":
        if not (self.dir / "kmipd.toml").exists():
            self.init()
        last = None
        for _ in range(attempts):
            # The port is free now; another process could take it before kmipd binds it, so a
            # server that exits at once is retried on a new port.
            self.port = free_port()
            try:
                self._spawn()
                return self
            except RuntimeError as e:
                last = e
                self.stop()
        raise RuntimeError(f"kmipd did not start: {last}\n{self.log_tail()}")

    def _spawn(self) -> None:
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--config",
                str(self.dir / "kmipd.toml"),
                "--listen",
                f"{self.host}:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stop() ends it and its children
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kmipd serve exited with status {self.proc.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"port {self.port} not open after {START_TIMEOUT} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=STOP_GRACE)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PgServer:
    """A private PostgreSQL for a postgres-backed kmipd: `initdb` in a fresh directory under
    /tmp, a server on 127.0.0.1 and a free port (fsync on), one database `kmipd`; stopped
    (`pg_ctl stop -m fast`, then `-m immediate`) and removed by `stop()`. As root every
    PostgreSQL command runs as the `postgres` user (PostgreSQL refuses root). The binaries are
    found with `pg_config --bindir`, else under /usr/lib/postgresql/*/bin (scripts/setup.sh
    installs Debian's `postgresql`)."""

    def __init__(self):
        self.bindir = self._bindir()
        self.as_postgres = os.geteuid() == 0
        self.dir: Path | None = None
        self.port: int | None = None

    @staticmethod
    def _bindir() -> Path:
        candidates = []
        try:
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, timeout=30
            )
            if out.returncode == 0:
                candidates.append(Path(out.stdout.strip()))
        except OSError:
            pass
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        for c in candidates:
            if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
                return c
        raise RuntimeError("PostgreSQL's initdb/pg_ctl not found: run scripts/setup.sh")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(
            cmd, check=True, timeout=INIT_TIMEOUT, cwd="/", stdout=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/kmipd"

    def start(self) -> "PgServer":
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="kmipd-interop-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o700)
        if self.as_postgres:
            import shutil

            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self.port = free_port()
        with open(data / "postgresql.auto.conf", "a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = on\n"
            )
        self._run("pg_ctl", "-D", str(data), "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "start")
        self._run("psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", "-c", "CREATE DATABASE kmipd")
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        data = str(self.dir / "data")
        if (self.dir / "data" / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    self._run("pg_ctl", "-D", data, "-w", "-t", "30", "-m", mode, "stop")
                    break
                except (subprocess.SubprocessError, OSError):
                    continue
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def use_postgres(instance: KmipdInstance, url: str) -> None:
    """Points an initialised instance's kmipd.toml at PostgreSQL (`[store] backend =
    "postgres"`) instead of its sled directory."""
    conf = instance.dir / "kmipd.toml"
    text = conf.read_text()
    sled = 'backend = "sled"\ndata_dir = "data"\n'
    if sled not in text:
        raise RuntimeError(f"kmipd init's [store] section changed:\n{text}")
    conf.write_text(text.replace(sled, f'backend = "postgres"\nurl = "{url}"\n'))

//! A private PostgreSQL cluster for tests: `initdb` in a fresh directory under the system's
//! temporary directory, a server on 127.0.0.1 and a free port with its Unix socket inside that
//! directory (fsync on, as in production), stopped (`pg_ctl stop -m fast`, then `-m
//! immediate`) and removed when the last handle is dropped. Nothing depends on a PostgreSQL
//! service the machine happens to run.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, every PostgreSQL command
//! runs as the `postgres` user (`runuser -u postgres --`), and the cluster's directory (mode
//! 0700, directly under `/tmp`, which everyone can traverse) belongs to that user.
//!
//! The binaries are found with `pg_config --bindir`, else under `/usr/lib/postgresql/*/bin`
//! (Debian keeps them off PATH). Without them the test fails, naming `scripts/setup.sh`,
//! which installs Debian's `postgresql` package.
//!
//! The server is stopped by `Drop`; a test binary killed with SIGKILL cannot run it, so each
//! cluster also has a watchdog (a `sh` loop started with it) that stops the server with `-m
//! immediate` and removes its directory within about a second of the test process's end,
//! however it ended; and the directory name carries the test process's pid, so a new cluster
//! also stops servers left by dead test processes (a watchdog killed too) before it starts.
//!
//! **Replication.** [`PgCluster::start_standby`] makes a streaming standby of a running
//! cluster (`pg_basebackup -R -X stream -c fast`, its own directory and port, the same
//! watchdog); [`PgCluster::require_synchronous_standby`] makes the primary wait for it at
//! every commit (`synchronous_standby_names = '*'`, then waits until the standby reports
//! `sync`); [`PgCluster::stop_immediate`] and [`PgCluster::promote`] are a failover, and
//! [`PgCluster::start_again`] brings a stopped server back. The standby's copy of the
//! configuration predates `synchronous_standby_names`, so a promoted standby does not wait
//! for a standby of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A running private cluster. [`PgCluster::shared`] hands out one per test binary while any
/// handle is alive.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
    databases: AtomicU32,
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

const PREFIX: &str = "kmipd-pg-";
/// Suffix of a stopped cluster's directory that its watchdog removes.
const GONE: &str = ".gone";

impl PgCluster {
    /// The cluster shared by the tests of this binary that run at the same time (started if
    /// none is running; stopped when the last of them drops its handle).
    pub fn shared() -> Arc<PgCluster> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.upgrade() {
            return c;
        }
        let c = Arc::new(PgCluster::start());
        *slot = Arc::downgrade(&c);
        c
    }

    /// Starts a new cluster of its own. Panics (never skips) when PostgreSQL is missing or
    /// does not start.
    pub fn start() -> PgCluster {
        let mut cluster = PgCluster::empty(0);
        let data = cluster.data_dir();
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.first_start();
        cluster
    }

    /// Starts a streaming standby of this (running) cluster in a directory and on a port of
    /// its own: `pg_basebackup -R -X stream -c fast`, then `pg_ctl start`. Its database
    /// names continue after this cluster's, so databases made after a promotion never clash.
    pub fn start_standby(&self) -> PgCluster {
        let first_db = self.databases.load(Ordering::Relaxed) + 1000;
        let mut standby = PgCluster::empty(first_db);
        let data = standby.data_dir();
        let port = self.port.to_string();
        standby.run_ok(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                path_str(&data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        standby.first_start();
        standby
    }

    /// Makes every commit on this primary wait for a synchronous standby
    /// (`synchronous_standby_names = '*'`), and waits (bounded) until a standby streams
    /// from it in `sync` state.
    pub fn require_synchronous_standby(&self) {
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let state = self.psql(
                "postgres",
                "SELECT string_agg(sync_state, ',') FROM pg_stat_replication",
            );
            if state.split(',').any(|s| s.trim() == "sync") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no synchronous standby after 60 s (pg_stat_replication: {state:?})"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Promotes this standby to a primary (`pg_ctl promote -w`: returns once it accepts
    /// writes).
    pub fn promote(&self) {
        self.pg_ctl_ok(&["promote"]);
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint, every session
    /// cut, as a crash), keeping its files.
    pub fn stop_immediate(&self) {
        self.pg_ctl_ok(&["-m", "immediate", "stop"]);
    }

    /// Whether the server is in recovery (a standby).
    pub fn in_recovery(&self) -> bool {
        self.psql("postgres", "SELECT pg_is_in_recovery()").trim() == "t"
    }

    /// A new directory (mode 0700, owned by `postgres` when running as root) with no server
    /// yet.
    fn empty(first_db: u32) -> PgCluster {
        let bindir = bindir();
        let as_postgres = is_root();
        reap_orphans(&bindir, as_postgres);
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = PathBuf::from("/tmp").join(format!("{PREFIX}{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        set_mode(&dir, 0o700);
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
        }
        PgCluster {
            dir,
            bindir,
            port: 0,
            as_postgres,
            databases: AtomicU32::new(first_db),
        }
    }

    /// Writes the local settings (appended to `postgresql.auto.conf`, where later lines win,
    /// so a standby's copy of its primary's settings is overridden) and starts the server on
    /// a free port, with its watchdog.
    fn first_start(&mut self) {
        let data = self.data_dir();
        let auto_conf = data.join("postgresql.auto.conf");
        let inherited = std::fs::read_to_string(&auto_conf).unwrap_or_default();
        // A free port can be taken by someone else between our probe and the server's bind:
        // try a few.
        for attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "{inherited}\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
                 unix_socket_directories = '{}'\nfsync = on\nmax_connections = 300\n\
                 shared_buffers = 32MB\n",
                path_str(&self.dir)
            );
            std::fs::write(&auto_conf, conf)
                .unwrap_or_else(|e| panic!("write postgresql.auto.conf: {e}"));
            if self.as_postgres {
                let (uid, gid) = postgres_ids();
                std::os::unix::fs::chown(&auto_conf, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", auto_conf.display()));
            }
            let log = self.dir.join("server.log");
            let out = self.pg_ctl(&["-l", path_str(&log), "start"]);
            if out.status.success() {
                self.port = port;
                self.spawn_watchdog();
                return;
            }
            if attempt == 4 {
                let server_log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "PostgreSQL did not start: {}{}\n{server_log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// A detached `sh` loop that stops the server (`-m immediate`) and removes its directory
    /// once this test process is gone (or, after `Drop` stopped the server and renamed the
    /// directory, removes it then), so no PostgreSQL outlives a test binary killed before
    /// its `Drop` ran. It checks `/proc/PID` (not `kill -0`, which a `postgres` user may not
    /// send to root's process) once a second, and ends by itself once the directory is gone.
    fn spawn_watchdog(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ] && [ -d '{dir}' ]; do sleep 1; done; \
             if [ -f '{data}/postmaster.pid' ]; then \
             '{pg_ctl}' -D '{data}' -m immediate -w -t 30 stop >/dev/null 2>&1; fi; \
             rm -rf '{dir}' '{dir}{GONE}'",
            pid = std::process::id(),
            dir = path_str(&self.dir),
            data = path_str(&self.data_dir()),
            pg_ctl = path_str(&self.bindir.join("pg_ctl")),
        );
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .current_dir("/");
        // Its own process group: a Ctrl-C to the test run does not kill it before it has
        // stopped the server.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Reaped by nobody while the test runs (a zombie at most, gone with the process).
        if let Err(e) = cmd.spawn() {
            panic!("cannot start the PostgreSQL watchdog: {e}");
        }
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style URL of database `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database (its name is returned).
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs SQL with `psql` in database `db` (stops at the first error, which panics) and
    /// returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (`pg_ctl stop -m fast`) and keeps its files (see [`start_again`]).
    ///
    /// [`start_again`]: Self::start_again
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) {
        let log = self.dir.join("server.log");
        self.pg_ctl_ok(&["-l", path_str(&log), "start"]);
    }

    /// Turns TLS on with this server certificate chain and key (PEM), for new connections;
    /// plain connections stay allowed.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let data = self.data_dir();
        for (name, body) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            set_mode(&path, 0o600);
            if self.as_postgres {
                let (uid, gid) = postgres_ids();
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            }
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        run_tool(&self.bindir, self.as_postgres, tool, args)
    }

    /// `pg_ctl -D DATA -w -t 60 ARGS`: the action on this server, waited for (60 s at most).
    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data_dir();
        let mut all = vec!["-D", path_str(&data), "-w", "-t", "60"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// [`pg_ctl`](Self::pg_ctl), which must succeed.
    fn pg_ctl_ok(&self, args: &[&str]) {
        let out = self.pg_ctl(args);
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run_ok(&self, tool: &str, args: &[&str]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            stop_dir(&self.bindir, self.as_postgres, &self.data_dir());
        }
        // Removing tens of thousands of relation files can take a minute on a busy disk:
        // the directory is renamed, and the watchdog (which sees the name vanish) removes it
        // in the background. Without a watchdog, or if the rename fails, it is removed here.
        let gone = PathBuf::from(format!("{}{GONE}", self.dir.display()));
        if self.port == 0 || std::fs::rename(&self.dir, &gone).is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `pg_ctl stop -m fast`, then `-m immediate` if that did not work.
fn stop_dir(bindir: &Path, as_postgres: bool, data: &Path) {
    let fast = run_tool(
        bindir,
        as_postgres,
        "pg_ctl",
        &["-D", path_str(data), "-w", "-t", "30", "-m", "fast", "stop"],
    );
    if !fast.status.success() {
        let _ = run_tool(
            bindir,
            as_postgres,
            "pg_ctl",
            &[
                "-D",
                path_str(data),
                "-w",
                "-t",
                "30",
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

/// Stops and removes the clusters of test processes that are gone (killed before `Drop`).
fn reap_orphans(bindir: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let data = e.path().join("data");
        if data.join("postmaster.pid").exists() {
            stop_dir(bindir, as_postgres, &data);
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

fn run_tool(bindir: &Path, as_postgres: bool, tool: &str, args: &[&str]) -> Output {
    let exe = bindir.join(tool);
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

/// Where PostgreSQL's server binaries are.
pub fn bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_pg_config.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions);
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server binaries (initdb, pg_ctl) were not found (neither in \
                 `pg_config --bindir` nor under /usr/lib/postgresql/*/bin). The PostgreSQL \
                 store tests need them: run scripts/setup.sh, which installs Debian's \
                 `postgresql` package."
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} postgres: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "no `postgres` user to run PostgreSQL as (tests run as root, which \
                     PostgreSQL refuses): run scripts/setup.sh, whose `postgresql` package \
                     creates it"
                )
            })
    };
    (id("-u"), id("-g"))
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

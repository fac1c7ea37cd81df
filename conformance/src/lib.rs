//! The OASIS KMIP conformance runner: replays the XML test cases of the KMIP Profiles and Test
//! Cases documents against a KMIP server and compares each response with the expected one.
//!
//! A test case is a sequence of request/response pairs whose values partly depend on the server
//! (identifiers, times, generated keys, random IVs). The runner therefore reads each file with
//! placeholders kept as markers, fills them in just before each request is sent, and compares
//! the actual response under the "Permitted Test Case Variations" that every Profiles document
//! states (see `conformance/README.md` for the rules as implemented).
//!
//! The server is reached through a [`Target`]: in-process (the engine, called directly) or over
//! the wire ([`wire`]: mutual TLS to a kmipd process, a fresh one per file), with the same
//! comparison. Every file runs against a fresh target, since every case assumes a clean server.

use std::path::{Path, PathBuf};

use kmipd_proto::xml::{self, XmlOptions};
use kmipd_ttlv::{Ttlv, Value};

pub mod https;
mod placeholders;
mod push_endpoint;
pub mod report;
mod session;
mod show;
mod tags;
pub mod wire;

use placeholders::Markers;
use session::{Quirks, Session};

/// A KMIP server as the runner sees it: a request message in, a response message out.
pub trait Target {
    /// Sends one RequestMessage and returns the ResponseMessage (`Err` for transport failures,
    /// which fail the test case).
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String>;

    /// Moves the server's clock forward by `seconds`, when the target can (a case's own
    /// timeline: TC_92 waits two minutes for a key to deactivate). `false` when it cannot.
    fn advance_clock(&mut self, _seconds: i64) -> bool {
        false
    }

    /// Subscribes the runner's identity to the server's server-to-client messages (KMIP 1.4
    /// §5: Put for new objects, Notify for attribute changes), as the server's configuration
    /// would. Called before the first request of a case whose file shows such messages.
    /// `Err` when the target cannot (no client endpoint the server could reach).
    fn subscribe(&mut self, _put: bool, _notify: bool) -> Result<(), String> {
        Err(String::from(
            "this target cannot receive server-to-client messages",
        ))
    }

    /// Makes the runner's identity an administrator of the server, for a case that changes
    /// server-wide settings (Set Constraints, which kmipd lets administrators only do:
    /// `docs/access-control.md`). Called before the first request of such a case. `false`
    /// when the target cannot.
    fn administrator(&mut self) -> bool {
        false
    }

    /// The next server-to-client message the server sent (a Request Message), in the order
    /// sent; with `wait`, waiting for one up to a bound (over the wire it travels on its own
    /// connection). `Ok(None)`: none (yet).
    fn pushed(&mut self, _wait: bool) -> Result<Option<Ttlv>, String> {
        Ok(None)
    }

    /// Answers the message [`Target::pushed`] gave last with `response`, as the client
    /// endpoint does.
    fn answer_pushed(&mut self, _response: &Ttlv) -> Result<(), String> {
        Ok(())
    }
}

/// The engine called directly (no sockets): the in-process mode, a fresh engine per test case,
/// over an empty in-memory store ([`InProcess::new`]) or an empty store of the caller's
/// ([`InProcess::with_store`], e.g. a `PgStore` on a schema of its own). The wire mode is
/// [`wire::WireTarget`].
pub struct InProcess {
    engine: kmipd_ops::Engine,
    principal: kmipd_ops::Principal,
    /// Seconds added to the system clock (see [`Target::advance_clock`]).
    offset: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// The store, to make the engine again with a subscription before the first request.
    store: std::sync::Arc<dyn kmipd_store::ObjectStore>,
    /// Whether a request was sent (a subscription comes before any).
    used: bool,
    /// The server-to-client messages the engine gave with its answers, not yet taken.
    pushed: std::collections::VecDeque<Ttlv>,
}

/// The header credentials the server of the OASIS cases accepts, as the cases assume: TC_111
/// ("both Credentials used in this example are for valid users of the server": Fred and
/// Barney) and TC_112 (the first device, devID2233, valid; the second, devID4444, "either
/// invalid or does not have access to the newly created key": configured valid here, so the
/// owner-only rule refuses it, as the case expects Permission Denied rather than
/// Authentication Not Successful); TC-CREG-2 (client registration: the "one-time-user" it
/// sends is assumed valid, and reads the objects TC-CREG-1 made without a credential). Cases
/// without credentials are unaffected. The hashes are
/// Argon2id at a low cost, made once per process (this is a test fixture).
fn case_credentials() -> &'static kmipd_ops::credentials::Credentials {
    use kmipd_ops::credentials::{Credentials, Device, User, hash_password};
    static CREDENTIALS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let hash = |p: &str| hash_password(p, 64, 1).unwrap_or_default();
        let device = |name: &str, serial: &str, id: &str, password: &str| Device {
            name: name.to_owned(),
            serial_number: Some(serial.to_owned()),
            device_identifier: Some(id.to_owned()),
            password_hash: Some(hash(password)),
            ..Device::default()
        };
        Credentials {
            users: vec![
                User {
                    username: "Fred".to_owned(),
                    password_hash: hash("password1"),
                },
                User {
                    username: "Barney".to_owned(),
                    password_hash: hash("secret2"),
                },
                User {
                    username: "one-time-user".to_owned(),
                    password_hash: hash("one-time-password"),
                },
            ],
            devices: vec![
                device("device-2233", "serNum123456", "devID2233", "secret"),
                device("device-4444", "serNum101010", "devID4444", "passwd"),
            ],
        }
    })
}

/// [`case_credentials`] as the `[credentials]` of a spawned server's `kmipd.toml`, so the wire
/// runs see the same server as the in-process ones.
pub(crate) fn case_credentials_toml() -> String {
    let q = |v: &str| format!("{v:?}");
    let c = case_credentials();
    let mut out = String::new();
    for u in &c.users {
        out.push_str(&format!(
            "\n[[credentials.users]]\nusername = {}\npassword_hash = {}\n",
            q(&u.username),
            q(&u.password_hash)
        ));
    }
    for d in &c.devices {
        out.push_str(&format!(
            "\n[[credentials.devices]]\nname = {}\n",
            q(&d.name)
        ));
        let fields = [
            ("serial_number", &d.serial_number),
            ("device_identifier", &d.device_identifier),
            ("network_identifier", &d.network_identifier),
            ("machine_identifier", &d.machine_identifier),
            ("media_identifier", &d.media_identifier),
            ("password_hash", &d.password_hash),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {}\n", q(v)));
            }
        }
    }
    out
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("engine", &self.engine)
            .field("principal", &self.principal)
            .field("pushed", &self.pushed.len())
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// A fresh engine over an empty in-memory store, default configuration, with a clock the
    /// runner can move forward.
    pub fn new() -> Self {
        Self::with_store(std::sync::Arc::new(kmipd_store::MemoryStore::new()))
    }

    /// A fresh engine over `store` (which must be empty), default configuration, with a clock
    /// the runner can move forward.
    pub fn with_store(store: std::sync::Arc<dyn kmipd_store::ObjectStore>) -> Self {
        let offset = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let principal = kmipd_ops::Principal::new("kmip-conformance");
        Self {
            engine: Self::engine(&store, &offset, Vec::new()),
            principal,
            offset,
            store,
            used: false,
            pushed: std::collections::VecDeque::new(),
        }
    }

    fn engine(
        store: &std::sync::Arc<dyn kmipd_store::ObjectStore>,
        offset: &std::sync::Arc<std::sync::atomic::AtomicI64>,
        push: Vec<kmipd_ops::push::Subscription>,
    ) -> kmipd_ops::Engine {
        let clock_offset = std::sync::Arc::clone(offset);
        let config = kmipd_ops::EngineConfig {
            clock: kmipd_ops::Clock::from_fn(move || {
                now().saturating_add(clock_offset.load(std::sync::atomic::Ordering::Relaxed))
            }),
            credentials: case_credentials().clone(),
            issuing_ca: issuing_ca(),
            push,
            ..kmipd_ops::EngineConfig::default()
        };
        kmipd_ops::Engine::new(std::sync::Arc::clone(store), config)
    }

    /// A factory for [`run_file`].
    pub fn factory() -> impl FnMut() -> Box<dyn Target> {
        || -> Box<dyn Target> { Box::new(InProcess::new()) }
    }
}

/// The issuing CA of the in-process engine's Certify and Re-certify (as `kmipd init` gives a
/// server one): an RSA-2048 CA made once per process, signing with SHA-256 as the recording
/// servers of the TC_134 cases did.
fn issuing_ca() -> Option<std::sync::Arc<kmipd_ops::issuing::IssuingCa>> {
    static CA: std::sync::OnceLock<Option<std::sync::Arc<kmipd_ops::issuing::IssuingCa>>> =
        std::sync::OnceLock::new();
    CA.get_or_init(|| kmipd_ops::issuing::generate_rsa("kmip-conformance issuing CA").ok())
        .clone()
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for InProcess {
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        self.used = true;
        let answer = self.engine.handle(&self.principal, request);
        self.pushed
            .extend(answer.pushes.into_iter().map(|p| p.message));
        Ok(answer.response)
    }

    fn advance_clock(&mut self, seconds: i64) -> bool {
        self.offset
            .fetch_add(seconds, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// The engine made again (nothing was sent yet) with a subscription of the runner's
    /// identity: its messages come with the engine's answers ([`kmipd_ops::Answer::pushes`]).
    fn subscribe(&mut self, put: bool, notify: bool) -> Result<(), String> {
        if self.used {
            return Err(String::from(
                "a subscription comes before the first request",
            ));
        }
        let subscription = kmipd_ops::push::Subscription {
            destination: String::from("kmip-conformance"),
            principal: self.principal.clone(),
            put,
            notify,
            version: None,
        };
        self.engine = Self::engine(&self.store, &self.offset, vec![subscription]);
        Ok(())
    }

    fn pushed(&mut self, _wait: bool) -> Result<Option<Ttlv>, String> {
        Ok(self.pushed.pop_front())
    }

    /// The same identity with the role `administrator`, as `[roles]` would give it.
    fn administrator(&mut self) -> bool {
        if self.used {
            return false;
        }
        self.principal = kmipd_ops::Principal::with_role(
            self.principal.name().to_owned(),
            kmipd_ops::access::Role::Administrator,
        );
        true
    }
}

/// The result of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// Whether every response matched.
    pub passed: bool,
    /// When it failed: the first difference, one line (request number, path inside the message,
    /// expected vs actual).
    pub first_difference: Option<String>,
    /// The first difference without values that change from run to run (server identifiers,
    /// dates, random bytes, result message texts): what the generated report shows.
    pub stable_difference: Option<String>,
}

impl FileOutcome {
    fn pass() -> Self {
        Self {
            passed: true,
            first_difference: None,
            stable_difference: None,
        }
    }

    fn fail(reason: String) -> Self {
        Self {
            passed: false,
            stable_difference: Some(reason.clone()),
            first_difference: Some(reason),
        }
    }
}

/// Runs the test case in `path` against a fresh target from `make_target`.
pub fn run_file(path: &Path, make_target: &mut dyn FnMut() -> Box<dyn Target>) -> FileOutcome {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return FileOutcome::fail(format!("cannot read the file: {e}")),
    };
    let mut target = make_target();
    let mut carried = Carried::default();
    if let Some(setup) = prerequisite(path) {
        let outcome = match std::fs::read_to_string(&setup) {
            Ok(t) => run_document_carrying(
                &adapt_setup(&t, &setup, path),
                &setup.to_string_lossy(),
                target.as_mut(),
                now(),
                &mut carried,
            ),
            Err(e) => FileOutcome::fail(format!("cannot read the file: {e}")),
        };
        if !outcome.passed {
            let name = setup
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let prefix =
                |r: Option<String>| Some(format!("setup {name}: {}", r.unwrap_or_default()));
            return FileOutcome {
                passed: false,
                first_difference: prefix(outcome.first_difference),
                stable_difference: prefix(outcome.stable_difference),
            };
        }
    }
    run_document_carrying(
        &text,
        &path.to_string_lossy(),
        target.as_mut(),
        now(),
        &mut carried,
    )
}

/// Runs `files` on `jobs` threads (at least one), each file against a fresh target from
/// `make_target`, and returns the outcomes in the order of `files`. `on_done` sees each outcome
/// in that order as soon as it and every earlier one are known (the command prints with it).
///
/// Parallel runs pay off in the wire mode, where a file mostly waits for a server to start
/// (`kmipd init`, SoftHSM2, fsync); every file still gets its own target, and a file that needs
/// a setup file (SASED-M-3) runs it on that same target ([`run_file`]).
pub fn run_files(
    files: &[PathBuf],
    jobs: usize,
    make_target: &(dyn Fn() -> Box<dyn Target> + Sync),
    on_done: &mut dyn FnMut(&Path, &FileOutcome),
) -> Vec<(PathBuf, FileOutcome)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<Option<FileOutcome>> = vec![None; files.len()];
    let mut reported = 0;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, FileOutcome)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, files.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                let mut factory = || make_target();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    if tx.send((i, run_file(path, &mut factory))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            if let Some(slot) = done.get_mut(i) {
                *slot = Some(outcome);
            }
            while let (Some(Some(outcome)), Some(path)) = (done.get(reported), files.get(reported))
            {
                on_done(path, outcome);
                reported += 1;
            }
        }
    });
    files
        .iter()
        .cloned()
        .zip(done)
        .map(|(p, o)| {
            let o = o.unwrap_or_else(|| FileOutcome::fail(String::from("not run")));
            (p, o)
        })
        .collect()
}

/// What a dependent test case inherits from its setup file: the identifiers of the objects the
/// server generated there (their key material may vary in the dependent file too).
#[derive(Debug, Default)]
struct Carried {
    generated: std::collections::HashSet<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A setup file borrowed from another minor version of the same major version (TL-M-2-20 for
/// TL-M-3-21, TC-OTP-SETUP-1-13 for TC-OTP-1-14) is replayed as the dependent's version would
/// have written it: that protocol version, and its names with that version's suffix (TL-M-3-21
/// expects the x-ID "TL-M-2-21"). The file itself is not changed.
fn adapt_setup(text: &str, setup: &Path, for_path: &Path) -> String {
    let (Some(from), Some(to)) = (version_of(setup), version_of(for_path)) else {
        return text.to_owned();
    };
    if from == to || from.0 != to.0 {
        return text.to_owned();
    }
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let old_stem = stem(setup);
    let new_stem = old_stem.replace(
        &format!("-{}{}", from.0, from.1),
        &format!("-{}{}", to.0, to.1),
    );
    text.replace(&old_stem, &new_stem).replace(
        &format!(
            r#"<ProtocolVersionMinor type="Integer" value="{}"/>"#,
            from.1
        ),
        &format!(r#"<ProtocolVersionMinor type="Integer" value="{}"/>"#, to.1),
    )
}

/// The (major, minor) of the version folder (`1.3`, `2.0`, ...) a test case file is in.
fn version_of(path: &Path) -> Option<(u8, u8)> {
    path.ancestors().skip(1).find_map(|dir| {
        let name = dir.file_name()?.to_str()?;
        let (major, minor) = name.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// The One Time Pad cases' setup: TC-OTP-1..5 and TC-OTP-CLEANUP-1 locate the pad
/// "one-time-pad-1". Their Encrypt and Decrypt answers are the data XOR the pad that
/// TC-OTP-SETUP-1 registers (fc932e1428bd); TC-OTP-3 alone gets, and expects a Key Block
/// without Key Value, which is the pad TC-OTP-SETUP-2 registers (without key material). The
/// 1.4 set has no setup files: the 1.3 ones, replayed as 1.4 ([`adapt_setup`]).
fn otp_setup(path: &Path, rest: &str) -> Option<PathBuf> {
    if rest.starts_with("SETUP-") {
        return None;
    }
    let (_, suffix) = rest.rsplit_once('-')?;
    let n = if rest.starts_with("3-") { 2 } else { 1 };
    let setup = path.with_file_name(format!("TC-OTP-SETUP-{n}-{suffix}"));
    if setup.is_file() {
        return Some(setup);
    }
    // <vectors>/1.4/testcases/TC-OTP-1-14.xml -> <vectors>/1.3/testcases/TC-OTP-SETUP-1-13.xml
    let folder = path.parent()?;
    let version_dir = folder.parent()?;
    let older = version_dir
        .with_file_name("1.3")
        .join(folder.file_name()?)
        .join(format!("TC-OTP-SETUP-{n}-13.xml"));
    (older != *path && older.is_file()).then_some(older)
}

/// The test case whose objects a test case continues with, run first on the same server:
/// SASED-M-3 and TL-M-3 locate (and destroy) what SASED-M-2 and TL-M-2 registered or created,
/// TC-CREG-2 and -3 what TC-CREG-1 registered, the One Time Pad cases what a TC-OTP-SETUP
/// file registered ([`otp_setup`]).
/// Looked up in the same folder. The 2.1 set has no TL-M-2: TL-M-3-21 then takes 2.0's
/// TL-M-2-20 (same major version, so a 2.1 server answers it), from the sibling `2.0` folder.
pub fn prerequisite(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    // TC-CREG-2 gets and TC-CREG-3 destroys the key pair and certificate that TC-CREG-1
    // registers (and does not destroy): TC-CREG-2's Get answers carry TC-CREG-1's key bytes.
    if let Some(rest) = ["TC-CREG-2-", "TC-CREG-3-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
    {
        let setup = path.with_file_name(format!("TC-CREG-1-{rest}"));
        return setup.is_file().then_some(setup);
    }
    if let Some(rest) = name.strip_prefix("TC-OTP-") {
        return otp_setup(path, rest);
    }
    let rest = ["SASED-M-3-", "TL-M-3-"]
        .iter()
        .find_map(|p| name.strip_prefix(p).map(|r| (p, r)))?;
    let setup_name = format!("{}{}", rest.0.replace("-3-", "-2-"), rest.1);
    let setup = path.with_file_name(&setup_name);
    if setup.is_file() {
        return Some(setup);
    }
    // <vectors>/2.1/profiles/mandatory/TL-M-3-21.xml -> <vectors>/2.0/profiles/mandatory/TL-M-2-20.xml
    let folder = path.parent()?;
    let kind = folder.file_name()?;
    let profiles = folder.parent()?;
    let version_dir = profiles.parent()?;
    if version_dir.file_name()?.to_str()? != "2.1" {
        return None;
    }
    let older = version_dir
        .with_file_name("2.0")
        .join(profiles.file_name()?)
        .join(kind)
        .join(setup_name.replace("-21.xml", "-20.xml"));
    older.is_file().then_some(older)
}

/// Runs a test case given as XML text. `name` is the file name or path: a few known defects of
/// the OASIS files are recognized by it.
pub fn run_document(xml_text: &str, name: &str, target: &mut dyn Target) -> FileOutcome {
    run_document_at(xml_text, name, target, now())
}

/// [`run_document`] with `$NOW` at a given time (POSIX seconds).
pub fn run_document_at(
    xml_text: &str,
    name: &str,
    target: &mut dyn Target,
    now: i64,
) -> FileOutcome {
    run_document_carrying(xml_text, name, target, now, &mut Carried::default())
}

fn run_document_carrying(
    xml_text: &str,
    name: &str,
    target: &mut dyn Target,
    now: i64,
    carried: &mut Carried,
) -> FileOutcome {
    let mut markers = Markers::default();
    let document = {
        let mut resolve = |tag, ty, text: &str| markers.resolve(tag, ty, text);
        match xml::read_document(xml_text, &XmlOptions::default(), &mut resolve) {
            Ok(d) => d,
            Err(e) => return FileOutcome::fail(format!("cannot read the test case: {e}")),
        }
    };
    let pairs = match pair_up(&document.items) {
        Ok(p) => p,
        Err(e) => return FileOutcome::fail(format!("malformed test case: {e}")),
    };
    let mut session = Session::new(markers, Quirks::for_file(name), now);
    session.inherit_generated(std::mem::take(&mut carried.generated));
    // Server-to-client messages (Put, Notify): the file's configuration subscribes the
    // runner's identity to the kinds it shows.
    let shows = |op: &str| {
        pairs
            .iter()
            .any(|(r, _)| is_pushed(r) && operations(r).contains(op))
    };
    let (put, notify) = (shows("Put"), shows("Notify"));
    if (put || notify)
        && let Err(e) = target.subscribe(put, notify)
    {
        return FileOutcome::fail(format!(
            "the case has server-to-client messages (Put, Notify): {e}"
        ));
    }
    // Server-wide settings: the case's client is the server's administrator.
    let sets = pairs
        .iter()
        .any(|(r, _)| !is_pushed(r) && operations(r).contains("SetConstraints"));
    if sets && !target.administrator() {
        return FileOutcome::fail(String::from(
            "the case changes server-wide settings (Set Constraints) and the target cannot act as an administrator",
        ));
    }
    let mut last_time: Option<i64> = None;
    for (n, (template, expected)) in pairs.into_iter().enumerate() {
        let label = format!("request {n} ({})", operations(template));
        if is_pushed(template) {
            if let Err(reason) = replay_pushed(&mut session, target, template, expected) {
                return FileOutcome {
                    passed: false,
                    first_difference: Some(format!("{label}: {}", reason.0)),
                    stable_difference: Some(format!("{label}: {}", reason.1)),
                };
            }
            continue;
        }
        if (put || notify)
            && let Ok(Some(extra)) = target.pushed(false)
        {
            return FileOutcome::fail(format!(
                "{label}: the server sent an unexpected {} before it",
                operations(&extra)
            ));
        }
        // Replay the case's own timeline: when the recorded responses carry literal time
        // stamps, move the server's clock forward by the time that passed between them.
        let time = session.recorded_time(expected);
        if let (Some(before), Some(at)) = (last_time, time)
            && at > before
            && target.advance_clock(at - before)
        {
            session.clock_advanced(at - before);
        }
        last_time = time.or(last_time);
        let request = match session.prepare(template) {
            Ok(r) => r,
            Err(e) => return FileOutcome::fail(format!("{label}: {e}")),
        };
        // A panicking target fails the file, not the whole run.
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.send(&request)));
        let actual = match sent {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return FileOutcome::fail(format!("{label}: no response: {e}")),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return FileOutcome::fail(format!("{label}: the server panicked: {what}"));
            }
        };
        if let Err(d) = session.compare(expected, &actual, &request) {
            let at = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            return FileOutcome {
                passed: false,
                first_difference: Some(format!("{label}: {at}{}", d.detail)),
                stable_difference: Some(format!("{label}: {at}{}", d.stable)),
            };
        }
    }
    if (put || notify)
        && let Ok(Some(extra)) = target.pushed(false)
    {
        return FileOutcome::fail(format!(
            "after the last request: the server sent an unexpected {}",
            operations(&extra)
        ));
    }
    carried.generated = session.generated();
    FileOutcome::pass()
}

/// Whether a Request Message of a document is one the server sends to the client: every batch
/// item a server-to-client operation (KMIP 1.4 §5: Notify, Put; the 1.4 files do not mark
/// the direction, the 1.0-1.2 ones say `[Server-to-Client]` in a comment).
fn is_pushed(request: &Ttlv) -> bool {
    let ops = operations(request);
    !ops.is_empty() && ops.split(',').all(|o| o == "Put" || o == "Notify")
}

/// One server-to-client exchange of a document: the next message the server sent is compared
/// with the expected one, and answered with the document's Response Message (placeholders
/// filled). `Err((reason, stable reason))`.
fn replay_pushed(
    session: &mut Session,
    target: &mut dyn Target,
    expected: &Ttlv,
    answer: &Ttlv,
) -> Result<(), (String, String)> {
    let same = |s: String| (s.clone(), s);
    let actual = target
        .pushed(true)
        .map_err(|e| same(format!("no server-to-client message: {e}")))?
        .ok_or_else(|| same(format!("the server sent no {}", operations(expected))))?;
    if let Err(d) = session.compare_pushed(expected, &actual) {
        let at = if d.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", d.path)
        };
        return Err((format!("{at}{}", d.detail), format!("{at}{}", d.stable)));
    }
    let response = session.prepare_answer(answer).map_err(same)?;
    target
        .answer_pushed(&response)
        .map_err(|e| same(format!("answering the server: {e}")))
}

/// The (request, expected response) pairs of a document, in the order the requests are sent.
///
/// The documents alternate RequestMessage and ResponseMessage. One OASIS file
/// (`1.4/testcases/TC-DERIVEKEY-4-10.xml`) lists two requests before their two responses, in
/// swapped order; so a response is paired with the earliest pending request that has the same
/// operations, and requests are sent in the order of their responses.
fn pair_up(items: &[Ttlv]) -> Result<Vec<(&Ttlv, &Ttlv)>, String> {
    let mut pairs = Vec::new();
    let mut pending: Vec<&Ttlv> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.tag == tags::REQUEST_MESSAGE {
            pending.push(item);
        } else if item.tag == tags::RESPONSE_MESSAGE {
            let ops = operations(item);
            let at = pending
                .iter()
                .position(|r| operations(r) == ops)
                .or(if pending.is_empty() { None } else { Some(0) })
                .ok_or_else(|| format!("message {i} is a response without a request"))?;
            pairs.push((pending.remove(at), item));
        } else {
            return Err(format!(
                "message {i} is a {}, not a RequestMessage or ResponseMessage",
                tags::name(item.tag)
            ));
        }
    }
    if !pending.is_empty() {
        return Err(format!("{} requests have no response", pending.len()));
    }
    if pairs.is_empty() {
        return Err(String::from("no request"));
    }
    Ok(pairs)
}

/// The operation names of a message's batch items, comma-separated.
fn operations(request: &Ttlv) -> String {
    let names: Vec<String> = request
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == tags::BATCH_ITEM)
        .filter_map(|b| b.child(tags::OPERATION))
        .map(|o| match o.value {
            Value::Enumeration(_) => show::value(o.tag, &o.value),
            _ => String::from("?"),
        })
        .collect();
    names.join(",")
}

/// The profiles whose mandatory test cases `conformance/tests/mandatory.rs` runs (by file name
/// prefix, see [`profile_of`]).
pub const CORE_PROFILES: [&str; 12] = [
    "BL", "SKLC", "SKFF", "AKLC", "CS-BC", "CS-AC", "CS-RNG", "OMOS", "SASED", "TL", "AX", "MSGENC",
];

/// The protocol versions the runner covers.
pub const VERSIONS: [&str; 7] = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1"];

/// The mandatory test cases of [`CORE_PROFILES`] for [`VERSIONS`] under a vectors folder,
/// sorted.
pub fn core_mandatory(vectors: &Path) -> Result<Vec<PathBuf>, String> {
    let dirs: Vec<PathBuf> = VERSIONS
        .iter()
        .map(|v| vectors.join(v).join("profiles").join("mandatory"))
        .filter(|d| d.is_dir())
        .collect();
    let mut files = collect_files(&dirs)?;
    files.retain(|f| {
        let c = classify(f);
        c.kind == Kind::Mandatory && CORE_PROFILES.contains(&c.profile.as_str())
    });
    Ok(files)
}

/// The test case files of `paths`: each a file, or a folder searched recursively for `*.xml`
/// (folders of the KMIP 3.0 draft, `3.*`, are skipped: the runner covers 1.0 to 2.1). Sorted,
/// without duplicates.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out)?;
        } else if path.is_file() {
            out.push(path.clone());
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            let draft = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("3."));
            if !draft {
                walk(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Where a test case belongs: protocol version, folder kind, profile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Classification {
    /// The version folder (`1.4`), or `?` when the path has none.
    pub version: String,
    /// The folder kind.
    pub kind: Kind,
    /// The profile from the file name (`CS-BC`, `SKLC`, `MSGENC`), `TC` for Test Cases notes.
    pub profile: String,
}

/// The folder kinds of the OASIS layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `profiles/mandatory`.
    Mandatory,
    /// `profiles/optional`.
    Optional,
    /// `testcases` (the KMIP Test Cases notes).
    TestCases,
    /// Anything else.
    Other,
}

/// The path of a test case relative to the vectors folder (`1.4/profiles/mandatory/TL-M-1-14.xml`):
/// from the version folder on. Paths outside the OASIS layout are returned as given.
pub fn vector_key(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let start = parts.iter().enumerate().rev().find_map(|(i, p)| {
        let next = parts.get(i + 1).map(String::as_str);
        (is_version(p) && matches!(next, Some("profiles" | "testcases"))).then_some(i)
    });
    match start.and_then(|s| parts.get(s..)) {
        Some(rest) => rest.join("/"),
        None => path.to_string_lossy().into_owned(),
    }
}

fn is_version(s: &str) -> bool {
    let mut it = s.splitn(2, '.');
    matches!(
        (it.next(), it.next()),
        (Some(major), Some(minor))
            if !major.is_empty()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().next().is_some_and(|c| c.is_ascii_digit())
    )
}

/// The version, folder kind and profile of a test case path.
pub fn classify(path: &Path) -> Classification {
    let key = vector_key(path);
    let parts: Vec<&str> = key.split('/').collect();
    let version = parts
        .first()
        .filter(|v| is_version(v))
        .map_or_else(|| String::from("?"), |v| (*v).to_owned());
    let kind = match (parts.get(1).copied(), parts.get(2).copied()) {
        (Some("profiles"), Some("mandatory")) => Kind::Mandatory,
        (Some("profiles"), Some("optional")) => Kind::Optional,
        (Some("testcases"), _) => Kind::TestCases,
        _ => Kind::Other,
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Classification {
        version,
        kind,
        profile: profile_of(&stem, kind),
    }
}

/// The profile of a file name: what precedes `-M-` or `-O-` (`CS-BC-M-GCM-1-14` is `CS-BC`),
/// with the message encoding profiles under `MSGENC`; `TC` for the Test Cases notes.
pub fn profile_of(stem: &str, kind: Kind) -> String {
    if kind == Kind::TestCases || stem.starts_with("TC") {
        return String::from("TC");
    }
    let cut = ["-M-", "-O-"]
        .iter()
        .filter_map(|m| stem.find(m))
        .min()
        .unwrap_or(stem.len());
    let profile = stem.get(..cut).unwrap_or(stem);
    if profile.starts_with("MSGENC") {
        String::from("MSGENC")
    } else {
        profile.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_classes() {
        let p = Path::new("../shared/kmip-vectors/1.4/profiles/mandatory/CS-BC-M-GCM-1-14.xml");
        assert_eq!(vector_key(p), "1.4/profiles/mandatory/CS-BC-M-GCM-1-14.xml");
        let c = classify(p);
        assert_eq!(
            (c.version.as_str(), c.kind, c.profile.as_str()),
            ("1.4", Kind::Mandatory, "CS-BC")
        );
        let c = classify(Path::new("x/2.1/profiles/optional/MSGENC-JSON-O-1-21.xml"));
        assert_eq!((c.kind, c.profile.as_str()), (Kind::Optional, "MSGENC"));
        let c = classify(Path::new("1.0/testcases/TC_311_10_Create_Destroy.xml"));
        assert_eq!((c.kind, c.profile.as_str()), (Kind::TestCases, "TC"));
        let c = classify(Path::new("/tmp/foo.xml"));
        assert_eq!((c.version.as_str(), c.kind), ("?", Kind::Other));
        assert_eq!(
            profile_of("SUITEB_128-M-1-14", Kind::Mandatory),
            "SUITEB_128"
        );
    }

    #[test]
    fn setup_files_are_found_next_to_their_dependents() {
        let dir = std::env::temp_dir().join(format!("kmipd-prereq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("TC-CREG-1-14.xml"), "<KMIP/>").unwrap();
        assert_eq!(
            prerequisite(&dir.join("TC-CREG-2-14.xml")),
            Some(dir.join("TC-CREG-1-14.xml"))
        );
        assert_eq!(
            prerequisite(&dir.join("TC-CREG-3-14.xml")),
            Some(dir.join("TC-CREG-1-14.xml"))
        );
        // No setup file in the folder: none; TC-CREG-1 itself has none.
        assert_eq!(prerequisite(&dir.join("TC-CREG-2-13.xml")), None);
        assert_eq!(prerequisite(&dir.join("TC-CREG-1-14.xml")), None);
        std::fs::remove_dir_all(&dir).unwrap();

        // The One Time Pad cases: SETUP-2 for TC-OTP-3 only; from the 1.3 folder for 1.4.
        let root = std::env::temp_dir().join(format!("kmipd-prereq-otp-{}", std::process::id()));
        let (v13, v14) = (root.join("1.3/testcases"), root.join("1.4/testcases"));
        std::fs::create_dir_all(&v13).unwrap();
        std::fs::create_dir_all(&v14).unwrap();
        for n in [1, 2] {
            std::fs::write(v13.join(format!("TC-OTP-SETUP-{n}-13.xml")), "<KMIP/>").unwrap();
        }
        let setup = |n: u8| Some(v13.join(format!("TC-OTP-SETUP-{n}-13.xml")));
        assert_eq!(prerequisite(&v13.join("TC-OTP-1-13.xml")), setup(1));
        assert_eq!(prerequisite(&v13.join("TC-OTP-3-13.xml")), setup(2));
        assert_eq!(prerequisite(&v13.join("TC-OTP-CLEANUP-1-13.xml")), setup(1));
        assert_eq!(prerequisite(&v13.join("TC-OTP-SETUP-1-13.xml")), None);
        assert_eq!(prerequisite(&v14.join("TC-OTP-5-14.xml")), setup(1));
        assert_eq!(prerequisite(&v14.join("TC-OTP-3-14.xml")), setup(2));
        // Replayed as 1.4: the protocol version and the names' suffix.
        let text =
            r#"<ProtocolVersionMinor type="Integer" value="3"/><V value="TC-OTP-SETUP-1-13"/>"#;
        assert_eq!(
            adapt_setup(
                text,
                &v13.join("TC-OTP-SETUP-1-13.xml"),
                &v14.join("TC-OTP-1-14.xml")
            ),
            r#"<ProtocolVersionMinor type="Integer" value="4"/><V value="TC-OTP-SETUP-1-14"/>"#
        );
        assert_eq!(
            adapt_setup(
                text,
                &v13.join("TC-OTP-SETUP-1-13.xml"),
                &v13.join("TC-OTP-1-13.xml")
            ),
            text
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The console's pages and its one action handler (see the module docs of `console`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kmipd_ops::Principal;
use kmipd_ops::access::Role;
use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::enums::{operation as op, revocation_reason_code as rrc, state};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Limits, Tag, Value};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::Shared;
use super::{Caller, console_role};
use crate::audit::{Filter, Record, Verifier};

/// Objects per inventory page.
const PAGE: usize = 25;
/// Most audit records one page shows (the most recent matches).
const AUDIT_ROWS: usize = 200;

type S = State<Arc<Shared>>;

/// The stylesheet, compiled in.
const CSS: &str = include_str!("console.css");

/// The caller's principal when the console serves its role; else the 403 page.
fn admit(shared: &Shared, caller: &Caller) -> Result<(Principal, Role), Response> {
    if caller
        .serial
        .as_deref()
        .is_some_and(|s| shared.seen.is_revoked(s))
    {
        shared.metrics.refused("client_revoked");
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This client certificate was revoked (kmipd admin client revoke).",
        ));
    }
    let principal = shared.settings.principal(&caller.names);
    match console_role(&principal) {
        Some(role) => Ok((principal, role)),
        None => {
            // Counted as the KMIP port counts a Permission Denied (per identity, bounded).
            shared.metrics.denied(&caller.names.identity);
            Err(refusal(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "The identity {:?} has no console role: only administrators, operators and \
                     auditors ([roles]) may use the console.",
                    caller.names.identity
                ),
            ))
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Administrator => "administrator",
        Role::Operator => "operator",
        Role::Auditor => "auditor",
        Role::Client => "client",
    }
}

/// A page with the navigation bar.
fn page(title: &str, here: &str, who: Option<(&Principal, Role)>, body: Markup) -> Response {
    let nav = [
        ("/", "Health"),
        ("/keys", "Keys"),
        ("/clients", "Clients"),
        ("/audit", "Audit"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kmipd console" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    span.brand { "kmipd console" }
                    @if who.is_some() {
                        nav {
                            @for (href, label) in nav {
                                a href=(href) class=[(href == here).then_some("here")] { (label) }
                            }
                        }
                    }
                    @if let Some((p, role)) = who {
                        span.who { (p.name()) " · " (role_name(role)) }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A refusal page (no navigation).
fn refusal(status: StatusCode, title: &str, line: &str) -> Response {
    let mut r = page(title, "", None, html! { p.note.bad { (line) } });
    *r.status_mut() = status;
    r
}

/// `GET /console.css`.
pub(super) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// Any other path.
pub(super) async fn not_found(State(s): S, Extension(c): Extension<Caller>) -> Response {
    if let Err(r) = admit(&s, &c) {
        return r;
    }
    refusal(StatusCode::NOT_FOUND, "Not found", "No such page.")
}

/// Percent-encodes a query parameter value.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// A value for people: enumeration and mask names, dates, structures as `Name: value`; byte
/// strings and big integers by their size only (never their bytes).
fn show(t: Tag, v: &Value) -> String {
    match v {
        Value::Structure(items) => items
            .iter()
            .map(|i| {
                format!(
                    "{}: {}",
                    kmipd_proto::reader::name(i.tag),
                    show(i.tag, &i.value)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Enumeration(e) => spec::enum_of_tag(t.value())
            .and_then(|d| d.canonical_name(*e))
            .map_or_else(|| format!("0x{e:08x}"), str::to_owned),
        Value::Integer(i) => match spec::enum_of_tag(t.value()) {
            Some(d) if d.is_mask => {
                let (names, rest) = d.mask_names(u32::from_ne_bytes(i.to_ne_bytes()));
                let mut s = names.join(" | ");
                if rest != 0 {
                    s.push_str(&format!(" | 0x{rest:x}"));
                }
                s
            }
            _ => i.to_string(),
        },
        Value::LongInteger(i) => i.to_string(),
        Value::BigInteger(_) => "(big integer, not shown)".to_owned(),
        Value::Boolean(b) => b.to_string(),
        Value::TextString(s) => s.clone(),
        Value::ByteString(b) => format!("({} bytes, not shown)", b.len()),
        Value::DateTime(d) => rfc3339(*d),
        Value::Interval(i) => format!("{i} s"),
        Value::DateTimeExtended(us) => rfc3339(us.div_euclid(1_000_000)),
    }
}

fn state_of(o: &ManagedObject) -> String {
    o.attributes
        .get(tag::STATE)
        .map_or_else(|| "-".to_owned(), |v| show(tag::STATE, v))
}

fn type_name(o: &ManagedObject) -> String {
    show(tag::OBJECT_TYPE, &Value::Enumeration(o.object_type))
}

fn algorithm(o: &ManagedObject) -> String {
    let alg = o
        .attributes
        .get(tag::CRYPTOGRAPHIC_ALGORITHM)
        .map(|v| show(tag::CRYPTOGRAPHIC_ALGORITHM, v));
    let len = o
        .attributes
        .get(tag::CRYPTOGRAPHIC_LENGTH)
        .map(|v| show(tag::CRYPTOGRAPHIC_LENGTH, v));
    match (alg, len) {
        (Some(a), Some(l)) => format!("{a}-{l}"),
        (Some(a), None) => a,
        _ => "-".to_owned(),
    }
}

fn names_of(o: &ManagedObject) -> String {
    o.attributes.name_values().collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Health

/// The value of the first series named `name` (no labels) in a Prometheus text rendering.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every series `name{labels} value` (labels as written).
fn series(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of label `key` in a series' labels (`certificate="x",file="y"`).
fn label<'a>(labels: &'a str, key: &str) -> &'a str {
    labels
        .split_once(&format!("{key}=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(v, _)| v)
}

/// A Unix time as a date with the days left, and whether more than `warn_days` are left.
fn until(now: i64, t: f64, warn_days: i64) -> (String, bool) {
    let t = format!("{t:.0}").parse::<i64>().unwrap_or(0);
    let days = t.saturating_sub(now).div_euclid(86_400);
    (format!("{} ({days} days)", rfc3339(t)), days >= warn_days)
}

/// `GET /`: the health page.
pub(super) async fn health(State(s): S, Extension(c): Extension<Caller>) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = s.metrics.render();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let up = s.started.elapsed().as_secs();
    let uptime = format!(
        "{}d {}h {}m {}s",
        up / 86_400,
        up % 86_400 / 3600,
        up % 3600 / 60,
        up % 60
    );
    let store_backend = format!("{:?}", s.config.store.backend).to_lowercase();
    let poisoned = gauge(&text, "kmipd_store_poisoned").is_some_and(|v| v > 0.0);
    let objects = gauge(&text, "kmipd_store_objects");
    let audit_poisoned = gauge(&text, "kmipd_audit_poisoned").is_some_and(|v| v > 0.0);
    // Each [[audit.forward]] destination with its figures (label `destination`).
    let per_destination = |name: &str, f: &crate::config::ForwardConfig| {
        let label = format!("destination=\"{}\"", crate::audit::forward::destination(f));
        series(&text, name)
            .into_iter()
            .find(|(l, _)| *l == label)
            .map(|(_, v)| v)
    };
    let forward: Vec<_> = s
        .config
        .audit
        .forward
        .iter()
        .map(|f| {
            (
                f,
                per_destination("kmipd_audit_forward_backlog", f),
                per_destination("kmipd_audit_forward_failures_total", f),
                per_destination("kmipd_audit_forward_last_success_seconds", f),
            )
        })
        .collect();
    let certs = series(&text, "kmipd_certificate_not_after_seconds");
    let crls = series(&text, "kmipd_crl_next_update_seconds");
    let open = s.metrics.open_connections();
    let body = html! {
        table {
            tr { th { "version" } td { "kmipd " (env!("CARGO_PKG_VERSION")) } }
            tr { th { "uptime" } td { (uptime) } }
            tr { th { "KMIP listener" } td.mono { (s.config.listen) } }
            tr { th { "open connections" } td { (open) } }
            tr { th { "store" } td {
                (store_backend) " · "
                @if poisoned { span.bad { "POISONED (restart needed)" } } @else { span.ok { "ok" } }
                @if let Some(n) = objects { " · " (n) " objects" }
            } }
            tr { th { "HSM" } td {
                @match &s.config.hsm {
                    Some(h) => { "PKCS#11 " span.mono { (h.module.display()) } " · token " (h.token_label.as_deref().unwrap_or("-")) " · key " (h.key_label) " · master key unwrapped the KEK at start-up" }
                    None => { span.muted { "none configured" } }
                }
            } }
            tr { th { "audit log" } td {
                span.mono { (s.audit.path().display()) } " · "
                @if audit_poisoned { span.bad { "FAILING (writes refused)" } } @else { span.ok { "writing" } }
            } }
            tr { th { "audit forwarding" } td {
                @if forward.is_empty() { span.muted { "off" } }
                @for (i, (f, backlog, fwd_failures, fwd_last)) in forward.iter().enumerate() {
                    @if i > 0 { br; }
                    (format!("{:?}", f.format).to_lowercase()) " to " span.mono { (f.address) }
                    " · backlog " (backlog.unwrap_or(0.0)) " · failures " (fwd_failures.unwrap_or(0.0))
                    " · last success "
                    @match fwd_last { Some(t) if *t > 0.0 => { (until(now, *t, 0).0) } _ => { "never" } }
                }
            } }
        }
        h2 { "Certificate expiry" }
        p.muted { "Warnings as in docs/alerts.yml: a certificate within 30 days of its end, a CRL within 7 days of its next update." }
        table #expiry {
            tr { th { "certificate" } th { "file" } th { "not after" } th { "status" } }
            @for (labels, t) in &certs {
                @let (when, fine) = until(now, *t, 30);
                tr { td { (label(labels, "certificate")) } td.mono { (label(labels, "file")) } td { (when) } td {
                    @if fine { span.ok { "ok" } } @else { span.bad { "expires within 30 days" } }
                } }
            }
            @for (labels, t) in &crls {
                @let (when, fine) = until(now, *t, 7);
                tr { td { "CRL" } td.mono { (label(labels, "file")) } td { "next update " (when) } td {
                    @if fine { span.ok { "ok" } } @else { span.bad { "next update within 7 days" } }
                } }
            }
        }
    };
    page("Health", "/", Some((&p, role)), body)
}

// ---------------------------------------------------------------------------------------------
// Inventory

#[derive(Debug, Default, Deserialize)]
pub(super) struct InventoryQuery {
    #[serde(default)]
    q: String,
    #[serde(default, rename = "type")]
    object_type: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    page: Option<usize>,
}

/// The names of an enumeration's values (for the filters), as [`show`] writes them.
fn enum_names(t: Tag) -> Vec<&'static str> {
    spec::enum_of_tag(t.value()).map_or_else(Vec::new, |d| {
        d.values
            .iter()
            .filter_map(|v| d.canonical_name(v.value))
            .collect()
    })
}

/// The identity's objects (without key material), off the async threads.
async fn inventory_of(s: &Arc<Shared>, p: &Principal) -> Result<Vec<ManagedObject>, String> {
    let engine = s.engine.clone();
    let p = p.clone();
    tokio::task::spawn_blocking(move || engine.inventory(&p))
        .await
        .map_err(|e| format!("inventory task: {e}"))?
        .map_err(|_| "the store could not be read (see the server log)".to_owned())
}

/// `GET /keys`: the key inventory.
pub(super) async fn inventory(
    State(s): S,
    Extension(c): Extension<Caller>,
    Query(q): Query<InventoryQuery>,
) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let all = match inventory_of(&s, &p).await {
        Ok(a) => a,
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, "Keys", &e),
    };
    let needle = q.q.trim().to_lowercase();
    let matching: Vec<&ManagedObject> = all
        .iter()
        .filter(|o| {
            needle.is_empty()
                || o.uid.to_lowercase().contains(&needle)
                || names_of(o).to_lowercase().contains(&needle)
        })
        .filter(|o| q.object_type.is_empty() || type_name(o) == q.object_type)
        .filter(|o| q.state.is_empty() || state_of(o) == q.state)
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page_no = q.page.unwrap_or(1).clamp(1, pages);
    let shown = matching
        .iter()
        .skip((page_no - 1).saturating_mul(PAGE))
        .take(PAGE);
    let link = |n: usize| {
        format!(
            "/keys?q={}&type={}&state={}&page={n}",
            enc(&q.q),
            enc(&q.object_type),
            enc(&q.state)
        )
    };
    let body = html! {
        form.filters method="get" action="/keys" {
            label { "search (identifier or name)" input type="search" name="q" value=(q.q); }
            label { "type" select name="type" {
                option value="" { "any" }
                @for t in enum_names(tag::OBJECT_TYPE) { option value=(t) selected[q.object_type == t] { (t) } }
            } }
            label { "state" select name="state" {
                option value="" { "any" }
                @for st in enum_names(tag::STATE) { option value=(st) selected[q.state == st] { (st) } }
            } }
            button type="submit" { "Filter" }
        }
        p.muted { (matching.len()) " of " (all.len()) " objects · page " (page_no) " of " (pages) }
        table #inventory {
            tr { th { "identifier" } th { "name" } th { "type" } th { "algorithm" } th { "state" } th { "owner" } }
            @for o in shown {
                tr {
                    td.mono { a href={ "/keys/show?uid=" (enc(&o.uid)) } { (o.uid) } }
                    td { (names_of(o)) }
                    td { (type_name(o)) }
                    td { (algorithm(o)) }
                    td { (state_of(o)) }
                    td.mono { (o.owner) }
                }
            }
        }
        div.pager {
            @if page_no > 1 { a href=(link(page_no - 1)) { "← previous" } }
            @if page_no < pages { a href=(link(page_no + 1)) { "next →" } }
        }
    };
    page("Keys", "/keys", Some((&p, role)), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct UidQuery {
    uid: String,
    #[serde(default)]
    action: String,
}

/// The actions a role is offered for an object in this state.
fn offered(role: Role, state: Option<u32>) -> Vec<&'static str> {
    if !matches!(role, Role::Administrator | Role::Operator) {
        return Vec::new();
    }
    match state {
        // Revoking a Pre-Active object needs a compromise (the engine refuses other reasons).
        Some(state::PRE_ACTIVE) => vec!["activate", "destroy"],
        Some(state::ACTIVE) => vec!["revoke"],
        Some(state::DEACTIVATED | state::COMPROMISED) => vec!["destroy"],
        _ => Vec::new(),
    }
}

fn state_value(o: &ManagedObject) -> Option<u32> {
    match o.attributes.get(tag::STATE) {
        Some(Value::Enumeration(e)) => Some(*e),
        _ => None,
    }
}

/// The object as the identity may see it, or the page to answer instead.
async fn described(s: &Arc<Shared>, p: &Principal, uid: &str) -> Result<ManagedObject, Response> {
    let engine = s.engine.clone();
    let who = p.clone();
    let uid = uid.to_owned();
    match tokio::task::spawn_blocking(move || engine.describe(&who, &uid)).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(kmipd_ops::Error::NotFound)) => Err(refusal(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such object (or not one this identity may see).",
        )),
        _ => Err(refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "the store could not be read (see the server log)",
        )),
    }
}

/// `GET /keys/show?uid=`: one object's attributes, links and audit history.
pub(super) async fn object(
    State(s): S,
    Extension(c): Extension<Caller>,
    Query(q): Query<UidQuery>,
) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let o = match described(&s, &p, &q.uid).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let filter = Filter {
        object: Some(o.uid.clone()),
        ..Filter::default()
    };
    let history = search_audit(&s, filter).await;
    let links: Vec<(String, String)> = o
        .attributes
        .iter()
        .filter(|a| a.name == AttrName::Std(tag::LINK))
        .filter_map(|a| match &a.value {
            Value::Structure(items) => {
                let kind = items.iter().find(|i| i.tag == tag::LINK_TYPE)?;
                let target = items
                    .iter()
                    .find(|i| i.tag == tag::LINKED_OBJECT_IDENTIFIER)?;
                match &target.value {
                    Value::TextString(t) => Some((show(kind.tag, &kind.value), t.clone())),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    let attrs: Vec<&Attribute> = o
        .attributes
        .iter()
        .filter(|a| a.name != AttrName::Std(tag::LINK))
        .collect();
    let actions = offered(role, state_value(&o));
    let body = html! {
        p.mono { (o.uid) }
        @if !actions.is_empty() {
            div.actions {
                @for a in &actions {
                    a.button.danger[*a != "activate"] href={ "/keys/confirm?uid=" (enc(&o.uid)) "&action=" (a) } { (a) "…" }
                }
            }
        }
        h2 { "Attributes" }
        table #attributes {
            tr { th { "attribute" } th { "value" } }
            tr { td { "Owner" } td.mono { (o.owner) } }
            @for a in &attrs {
                tr { td { (a.name.v1_name()) } td {
                    @match &a.name { AttrName::Std(t) => { (show(*t, &a.value)) } AttrName::Custom { .. } => { (show(tag::ATTRIBUTE_VALUE, &a.value)) } }
                } }
            }
        }
        h2 { "Links" }
        @if links.is_empty() { p.muted { "none" } } @else {
            table #links {
                tr { th { "link" } th { "object" } }
                @for (kind, target) in &links {
                    tr { td { (kind) } td.mono { a href={ "/keys/show?uid=" (enc(target)) } { (target) } } }
                }
            }
        }
        h2 { "History (audit log)" }
        (audit_table(&history))
    };
    page("Object", "/keys", Some((&p, role)), body)
}

fn action_title(action: &str) -> Option<&'static str> {
    match action {
        "activate" => Some("Activate"),
        "revoke" => Some("Revoke"),
        "destroy" => Some("Destroy"),
        _ => None,
    }
}

/// `GET /keys/confirm?uid=&action=`: the confirmation step (a form with the CSRF token).
pub(super) async fn confirm(
    State(s): S,
    Extension(c): Extension<Caller>,
    Query(q): Query<UidQuery>,
) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(title) = action_title(&q.action) else {
        return refusal(StatusCode::BAD_REQUEST, "Bad request", "Unknown action.");
    };
    if role == Role::Auditor {
        return refusal(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Auditors are read-only: no lifecycle action.",
        );
    }
    let o = match described(&s, &p, &q.uid).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let token = s.console_key.token(p.name(), &q.action, &o.uid);
    let body = html! {
        div.note.bad {
            p { strong { (title) } " the " (type_name(&o)) " " span.mono { (o.uid) }
                @let n = names_of(&o); @if !n.is_empty() { " (" (n) ")" }
                ", now " (state_of(&o)) "?" }
            p { "This runs as a KMIP " (title) " request of " span.mono { (p.name()) } " and is recorded in the audit log." }
        }
        form #confirm method="post" action="/keys/action" {
            input type="hidden" name="uid" value=(o.uid);
            input type="hidden" name="action" value=(q.action);
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="confirm" value="yes";
            @if q.action == "revoke" {
                p { label { "reason " select name="reason" {
                    option value="cessation" { "Cessation of Operation" }
                    option value="superseded" { "Superseded" }
                    option value="affiliation" { "Affiliation Changed" }
                    option value="compromise" { "Key Compromise" }
                    option value="unspecified" { "Unspecified" }
                } } }
            }
            div.actions {
                button.danger[q.action != "activate"] type="submit" { "Confirm: " (q.action) }
                a href={ "/keys/show?uid=" (enc(&o.uid)) } { "cancel" }
            }
        }
    };
    page(&format!("{title}?"), "/keys", Some((&p, role)), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
}

/// True when the request's `Origin` is this console's own (`https://` and its `Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v| v.to_str().ok());
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("https://{host}")),
        _ => false,
    }
}

/// The KMIP request of an action.
fn request_of(action: &str, uid: &str, reason: &str, now: i64) -> Option<Vec<u8>> {
    let id = build::unique_identifier(uid);
    let (operation, payload) = match action {
        "activate" => (op::ACTIVATE, vec![id]),
        "destroy" => (op::DESTROY, vec![id]),
        "revoke" => {
            let code = match reason {
                "superseded" => rrc::SUPERSEDED,
                "affiliation" => rrc::AFFILIATION_CHANGED,
                "compromise" => rrc::KEY_COMPROMISE,
                "unspecified" => rrc::UNSPECIFIED,
                _ => rrc::CESSATION_OF_OPERATION,
            };
            let mut payload = vec![
                id,
                build::structure(
                    tag::REVOCATION_REASON,
                    vec![
                        build::enumeration(tag::REVOCATION_REASON_CODE, code),
                        build::text(tag::REVOCATION_MESSAGE, "kmipd console"),
                    ],
                ),
            ];
            if code == rrc::KEY_COMPROMISE {
                payload.push(build::datetime(tag::COMPROMISE_OCCURRENCE_DATE, now));
            }
            (op::REVOKE, payload)
        }
        _ => return None,
    };
    let message = RequestMessage::new(
        ProtocolVersion::V2_1,
        vec![RequestBatchItem::new(operation, payload)],
    );
    kmipd_ttlv::encode_to_vec(&message.to_ttlv()).ok()
}

/// `POST /keys/action`: a confirmed lifecycle action, run as the caller's KMIP request.
pub(super) async fn action(
    State(s): S,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let refuse = |line: &str| {
        s.metrics.denied(p.name());
        tracing::warn!(identity = p.name(), action = %f.action, reason = line, "console action refused");
        refusal(StatusCode::FORBIDDEN, "Forbidden", line)
    };
    if role == Role::Auditor {
        return refuse("Auditors are read-only: no lifecycle action.");
    }
    if !same_origin(&headers) {
        return refuse("The request's Origin is not this console.");
    }
    if !s.console_key.check(&f.csrf, p.name(), &f.action, &f.uid) {
        return refuse("The form's token is missing or not this identity's: reload the page.");
    }
    if f.confirm != "yes" {
        return refusal(StatusCode::BAD_REQUEST, "Bad request", "Not confirmed.");
    }
    let Some(title) = action_title(&f.action) else {
        return refusal(StatusCode::BAD_REQUEST, "Bad request", "Unknown action.");
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let Some(message) = request_of(&f.action, &f.uid, &f.reason, now) else {
        return refusal(StatusCode::BAD_REQUEST, "Bad request", "Unknown action.");
    };
    let Some(answer) = super::super::execute::execute(&s, &p, &c.peer.into(), message).await else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not done",
            "No answer may be given (audit log failing or shutting down): see the server log.",
        );
    };
    let outcome = kmipd_ttlv::decode(&answer, &Limits::unbounded())
        .ok()
        .and_then(|t| ResponseMessage::from_ttlv(&t).ok())
        .and_then(|m| m.items.into_iter().next());
    let (ok, line) = match outcome {
        Some(i) if i.result_status == kmipd_proto::enums::result_status::SUCCESS => {
            (true, format!("{title}: done."))
        }
        Some(i) => (
            false,
            format!(
                "{title} refused: {} ({})",
                i.result_message.unwrap_or_default(),
                i.result_reason
                    .and_then(|r| spec::enum_of_tag(tag::RESULT_REASON.value())
                        .and_then(|d| d.canonical_name(r)))
                    .unwrap_or("no reason")
            ),
        ),
        None => (false, format!("{title}: unreadable answer")),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let body = html! {
        p #outcome class=(if ok { "note" } else { "note bad" }) { (line) }
        p { a href={ "/keys/show?uid=" (enc(&f.uid)) } { "back to the object" } }
    };
    let mut r = page(title, "/keys", Some((&p, role)), body);
    *r.status_mut() = status;
    r
}

// ---------------------------------------------------------------------------------------------
// Audit

/// How a search of the current audit file ended.
struct Found {
    /// The most recent matches, oldest first.
    records: Vec<Record>,
    matched: usize,
    /// `Ok((records read, last seq))`, or where the chain broke.
    chain: Result<(usize, Option<u64>, String), String>,
}

/// The audit files of the log at `path`, oldest first: its rotated files
/// (`<name>.<12 digits>`, `crate::audit::rotated_name`), then the current one.
fn audit_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = crate::audit::rotated_files(path)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    files.push(path.to_owned());
    files
}

/// Searches the audit files (rotated ones first, as `kmipd audit search` is given them), the
/// chain checked from the first file's first record's `prev` (from the start when that is
/// the genesis; else from where the oldest file kept continues).
async fn search_audit(s: &Arc<Shared>, filter: Filter) -> Found {
    let path = s.audit.path().to_owned();
    let task = tokio::task::spawn_blocking(move || {
        let files = audit_files(&path);
        let first_prev = files.first().and_then(|f| {
            let t = std::fs::read_to_string(f).ok()?;
            let line = t.lines().next()?.to_owned();
            let v: serde_json::Value = serde_json::from_str(&line).ok()?;
            v.get("prev")?.as_str().map(str::to_owned)
        });
        let chain = match first_prev.as_deref() {
            Some(h) if h != crate::audit::GENESIS => Verifier::after(h),
            _ => Verifier::new(),
        };
        let mut kept: VecDeque<Record> = VecDeque::new();
        let r = crate::audit::search(chain, &files, &filter, |rec, _| {
            if kept.len() == AUDIT_ROWS {
                kept.pop_front();
            }
            kept.push_back(rec.clone());
            Ok(())
        });
        let (matched, chain) = match r {
            Ok(done) => (
                done.matched,
                Ok((done.records, done.last_seq, done.last_hash)),
            ),
            Err(e) => (kept.len(), Err(e.to_string())),
        };
        Found {
            records: kept.into(),
            matched,
            chain,
        }
    });
    task.await.unwrap_or_else(|e| Found {
        records: Vec::new(),
        matched: 0,
        chain: Err(format!("search task: {e}")),
    })
}

fn audit_table(found: &Found) -> Markup {
    html! {
        @match &found.chain {
            Ok((n, last, hash)) => p.muted { span.ok { "chain intact" } " · " (n) " records read"
                @if let Some(l) = last { " · last record " (l) " · hash " span.mono { (hash.get(..16).unwrap_or(hash)) "…" } }
                " · " (found.matched) " matched"
                @if found.matched > found.records.len() { " (the last " (found.records.len()) " shown)" } },
            Err(e) => p.note.bad { "CHAIN BROKEN: " (e) " (matches shown come before the break)" },
        }
        table.audit {
            tr { th { "#" } th { "time" } th { "identity" } th { "peer" } th { "operation" } th { "objects" } th { "result" } }
            @for r in found.records.iter().rev() {
                tr {
                    td { (r.seq) }
                    td { (r.time) }
                    td.mono { (r.identity) }
                    td.mono { (r.peer) }
                    td { (r.operation) }
                    td.mono { @for u in &r.uids { a href={ "/keys/show?uid=" (enc(u)) } { (u) } " " } }
                    td class=(if r.status == "Success" { "ok" } else { "bad" }) {
                        (r.status) @if let Some(reason) = &r.reason { " · " (reason) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    identity: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

fn given(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `GET /audit`: the audit trail, `kmipd audit search`'s filters.
pub(super) async fn audit(
    State(s): S,
    Extension(c): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let time = |t: &str| given(t).map(|t| crate::audit::parse_time(&t)).transpose();
    let (since, until) = match (time(&q.since), time(&q.until)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return refusal(StatusCode::BAD_REQUEST, "Audit", &e);
        }
    };
    let filter = Filter {
        identity: given(&q.identity),
        object: given(&q.object),
        operation: given(&q.operation),
        result: given(&q.result),
        since,
        until,
    };
    let found = search_audit(&s, filter).await;
    let body = html! {
        form.filters method="get" action="/audit" {
            label { "identity" input name="identity" value=(q.identity); }
            label { "object" input name="object" value=(q.object); }
            label { "operation" input name="operation" value=(q.operation) placeholder="Revoke"; }
            label { "result" input name="result" value=(q.result) placeholder="Success"; }
            label { "since" input name="since" value=(q.since) placeholder="2026-12-06"; }
            label { "until" input name="until" value=(q.until); }
            button type="submit" { "Search" }
        }
        p.muted { "The audit log " span.mono { (s.audit.path().display()) } " and its rotated files, oldest first." }
        (audit_table(&found))
    };
    page("Audit trail", "/audit", Some((&p, role)), body)
}

// ---------------------------------------------------------------------------------------------
// Clients

/// `GET /clients`: identities seen, open connections, enrolled certificates.
pub(super) async fn clients(State(s): S, Extension(c): Extension<Caller>) -> Response {
    let (p, role) = match admit(&s, &c) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let found = search_audit(&s, Filter::default()).await;
    // Identity -> (requests, last time, last peer), over the whole current file.
    let path = s.audit.path().to_owned();
    let seen = tokio::task::spawn_blocking(move || {
        let mut by: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
        let text: String = audit_files(&path)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect::<Vec<_>>()
            .join("\n");
        for line in text.lines() {
            if let Ok(r) = serde_json::from_str::<Record>(line) {
                let e = by.entry(r.identity).or_default();
                e.0 = e.0.saturating_add(1);
                e.1 = r.time;
                e.2 = r.peer;
            }
        }
        by
    })
    .await
    .unwrap_or_default();
    let open: BTreeMap<String, usize> = s
        .per_identity
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    let engine = s.engine.clone();
    let who = p.clone();
    let enrolled = tokio::task::spawn_blocking(move || {
        crate::clients::Enrollment::new(&engine, &who)
            .list()
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let body = html! {
        h2 { "Identities seen (audit log)" }
        table #identities {
            tr { th { "identity" } th { "role (of the identity)" } th { "requests" } th { "last seen" } th { "last peer" } th { "open connections" } }
            @for (id, (n, last, peer)) in &seen {
                tr {
                    td.mono { a href={ "/audit?identity=" (enc(id)) } { (id) } }
                    td { (role_name(s.settings.principal(&kmipd_ops::access::CertNames::identity(id)).role())) }
                    td { (n) }
                    td { (last) }
                    td.mono { (peer) }
                    td { (open.get(id).copied().unwrap_or(0)) }
                }
            }
        }
        @if let Err(e) = &found.chain { p.note.bad { "audit chain: " (e) } }
        h2 { "Enrolled client certificates" }
        @match &enrolled {
            Ok(list) if list.is_empty() => { p.muted { "none (kmipd admin client issue)" } }
            Ok(list) => {
                table #enrolled {
                    tr { th { "client" } th { "serial" } th { "not after" } th { "status" } th { "last connection" } }
                    @for r in list {
                        tr {
                            td { (r.name) }
                            td.mono { (r.serial) }
                            td { (r.not_after) }
                            td class=(if r.status == "active" { "ok" } else { "bad" }) { (r.status) }
                            td { (s.seen.last_seen(&r.serial).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "not since start".to_owned())) }
                        }
                    }
                }
            }
            Err(e) => { p.muted { "not available to this identity: " (e) } }
        }
    };
    page("Clients", "/clients", Some((&p, role)), body)
}

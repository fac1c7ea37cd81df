//! Roles through the public engine: every cell of the matrix in `docs/access-control.md`
//! (role x operation x own/other object) is read from the document and asserted with a real
//! request (success, Permission Denied, or Not Found as for a missing object); role patterns;
//! scopes keep two tenants' operators apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::access::{CertNames, Role, RoleAssignments, operation_by_name};
use kmipd_ops::{Engine, Principal};
use kmipd_proto::enums::{operation as op, result_reason, result_status};
use kmipd_proto::reader::{as_bytes, as_text};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use engine::{batch_items, field, status, xml_request};
use kmipd_test_support::engine;

const PAST: &str = "2001-01-01T00:00:00+00:00";
const V: (u8, u8) = (2, 1);

fn send(e: &Engine, who: &Principal, items: &str) -> Vec<Ttlv> {
    batch_items(&e.handle_message(who, &xml_request(V, items)))
}

fn item(op: &str, payload: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
    )
}

fn one(e: &Engine, who: &Principal, op: &str, payload: &str) -> Ttlv {
    send(e, who, &item(op, payload)).remove(0)
}

fn ok_field(it: &Ttlv, t: kmipd_ttlv::Tag) -> Ttlv {
    assert_eq!(status(it), (result_status::SUCCESS, None), "{it:?}");
    field(it, &[tag::RESPONSE_PAYLOAD, t]).unwrap().clone()
}

fn uid_of(it: &Ttlv) -> String {
    as_text(&ok_field(it, tag::UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned()
}

fn u(uid: &str) -> String {
    format!(r#"<UniqueIdentifier type="TextString" value="{uid}"/>"#)
}

/// Registers a symmetric key of `algorithm` (Active unless `pre_active`), named `name`.
fn register_key(
    e: &Engine,
    owner: &str,
    algorithm: &str,
    usage: &str,
    name: &str,
    pre_active: bool,
) -> String {
    let activation = if pre_active {
        String::new()
    } else {
        format!(r#"<ActivationDate type="DateTime" value="{PAST}"/>"#)
    };
    let payload = format!(
        r#"<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="{usage}"/>{activation}
<Name><NameValue type="TextString" value="{name}"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name>
<ContactInformation type="TextString" value="desk 1"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="{algorithm}"/>
<CryptographicLength type="Integer" value="256"/></KeyBlock></SymmetricKey>"#
    );
    uid_of(&one(e, &Principal::new(owner), "Register", &payload))
}

/// Creates an Active RSA-2048 pair for `owner`: (private, public).
fn key_pair(e: &Engine, owner: &str) -> (String, String) {
    let payload = format!(
        r#"<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="RSA"/>
<CryptographicLength type="Integer" value="2048"/>
<ActivationDate type="DateTime" value="{PAST}"/></CommonAttributes>
<PrivateKeyAttributes><CryptographicUsageMask type="Integer" value="Sign"/></PrivateKeyAttributes>
<PublicKeyAttributes><CryptographicUsageMask type="Integer" value="Verify"/></PublicKeyAttributes>"#
    );
    let it = one(e, &Principal::new(owner), "CreateKeyPair", &payload);
    let private = as_text(&ok_field(&it, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned();
    let public = as_text(&ok_field(&it, tag::PUBLIC_KEY_UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned();
    (private, public)
}

const SIGN_PARAMS: &str = r#"<CryptographicParameters><DigitalSignatureAlgorithm type="Enumeration" value="SHA_256WithRSAEncryption"/></CryptographicParameters><Data type="ByteString" value="616263"/>"#;
const MAC_PARAMS: &str = r#"<CryptographicParameters><CryptographicAlgorithm type="Enumeration" value="HMAC_SHA256"/></CryptographicParameters><Data type="ByteString" value="616263"/>"#;
const ECB: &str = r#"<CryptographicParameters><BlockCipherMode type="Enumeration" value="ECB"/><PaddingMethod type="Enumeration" value="None"/></CryptographicParameters><Data type="ByteString" value="000102030405060708090a0b0c0d0e0f"/>"#;

/// A fresh object for `operation`, owned by `owner`, and the request payload that performs the
/// operation on it (as a request that succeeds when access is allowed).
fn target(e: &Engine, owner: &str, operation: u32, n: usize) -> (String, String) {
    let name = format!("{owner}-{n}");
    let aes = |pre: bool| register_key(e, owner, "AES", "Encrypt Decrypt DeriveKey", &name, pre);
    match operation {
        op::LOCATE => {
            let uid = aes(false);
            (
                uid,
                format!(
                    r#"<Attributes><Name><NameValue type="TextString" value="{name}"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name></Attributes>"#
                ),
            )
        }
        op::GET
        | op::GET_ATTRIBUTES
        | op::GET_ATTRIBUTE_LIST
        | op::CHECK
        | op::OBTAIN_LEASE
        | op::RE_KEY
        | op::REVOKE => {
            let uid = aes(false);
            let mut p = u(&uid);
            if operation == op::REVOKE {
                p.push_str(r#"<RevocationReason><RevocationReasonCode type="Enumeration" value="Unspecified"/></RevocationReason>"#);
            }
            (uid, p)
        }
        op::ACTIVATE | op::DESTROY => {
            let uid = aes(true);
            (uid.clone(), u(&uid))
        }
        op::ADD_ATTRIBUTE => {
            let uid = aes(false);
            let p = format!(
                r#"{}<NewAttribute><Attribute><VendorIdentification type="TextString" value="x"/><AttributeName type="TextString" value="role-test"/><AttributeValue type="TextString" value="v"/></Attribute></NewAttribute>"#,
                u(&uid)
            );
            (uid, p)
        }
        op::MODIFY_ATTRIBUTE => {
            let uid = aes(false);
            let p = format!(
                r#"{}<NewAttribute><ContactInformation type="TextString" value="desk 2"/></NewAttribute>"#,
                u(&uid)
            );
            (uid, p)
        }
        op::SET_ATTRIBUTE => {
            let uid = aes(false);
            let p = format!(
                r#"{}<NewAttribute><ContactInformation type="TextString" value="desk 3"/></NewAttribute>"#,
                u(&uid)
            );
            (uid, p)
        }
        op::DELETE_ATTRIBUTE => {
            let uid = aes(false);
            let p = format!(
                r#"{}<CurrentAttribute><ContactInformation type="TextString" value="desk 1"/></CurrentAttribute>"#,
                u(&uid)
            );
            (uid, p)
        }
        op::ENCRYPT | op::DECRYPT => {
            let uid = aes(false);
            (uid.clone(), format!("{}{ECB}", u(&uid)))
        }
        op::DERIVE_KEY => {
            let uid = aes(false);
            let p = format!(
                r#"<ObjectType type="Enumeration" value="SymmetricKey"/>{}
<DerivationMethod type="Enumeration" value="HASH"/>
<DerivationParameters><CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_256"/></CryptographicParameters></DerivationParameters>
<Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="128"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/></Attributes>"#,
                u(&uid)
            );
            (uid, p)
        }
        op::MAC | op::MAC_VERIFY => {
            let uid = register_key(
                e,
                owner,
                "HMAC_SHA256",
                "MACGenerate MACVerify",
                &name,
                false,
            );
            let mut p = format!("{}{MAC_PARAMS}", u(&uid));
            if operation == op::MAC_VERIFY {
                let mac = one(e, &Principal::new(owner), "MAC", &p);
                let mac = hex::encode(as_bytes(&ok_field(&mac, tag::MAC_DATA)).unwrap());
                p.push_str(&format!(r#"<MACData type="ByteString" value="{mac}"/>"#));
            }
            (uid, p)
        }
        op::SIGN | op::SIGNATURE_VERIFY | op::RE_KEY_KEY_PAIR => {
            let (private, public) = key_pair(e, owner);
            match operation {
                op::SIGN => (private.clone(), format!("{}{SIGN_PARAMS}", u(&private))),
                op::SIGNATURE_VERIFY => {
                    let s = one(
                        e,
                        &Principal::new(owner),
                        "Sign",
                        &format!("{}{SIGN_PARAMS}", u(&private)),
                    );
                    let sig = hex::encode(as_bytes(&ok_field(&s, tag::SIGNATURE_DATA)).unwrap());
                    (
                        public.clone(),
                        format!(
                            r#"{}{SIGN_PARAMS}<SignatureData type="ByteString" value="{sig}"/>"#,
                            u(&public)
                        ),
                    )
                }
                _ => (
                    private.clone(),
                    format!(r#"<PrivateKeyUniqueIdentifier type="TextString" value="{private}"/>"#),
                ),
            }
        }
        other => panic!("no target for operation {other}"),
    }
}

/// The rows of the table between `<!-- {marker}:begin -->` and `<!-- {marker}:end -->`: the
/// operation and its cells.
fn table(marker: &str) -> Vec<(u32, Vec<String>)> {
    let doc = include_str!("../../../docs/access-control.md");
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let body = doc
        .split(&begin)
        .nth(1)
        .unwrap()
        .split(&end)
        .next()
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| operation"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let operation = operation_by_name(&cells[0])
                .unwrap_or_else(|| panic!("unknown operation {:?}", cells[0]));
            (operation, cells[1..].to_vec())
        })
        .collect()
}

fn expected(cell: &str) -> Option<u32> {
    match cell {
        "yes" => None,
        "no" => Some(result_reason::PERMISSION_DENIED),
        "absent" => Some(result_reason::OBJECT_NOT_FOUND),
        other => panic!("unknown cell {other:?}"),
    }
}

#[test]
fn every_cell_of_the_documented_matrix_holds_through_the_engine() {
    let e = Engine::in_memory();
    let rows = table("roles-matrix");
    assert_eq!(
        rows.len(),
        22,
        "the matrix lists every operation on an object"
    );
    let mut n = 0usize;
    let mut cells = 0usize;
    for (operation, row) in rows {
        assert_eq!(row.len(), 8);
        for (i, role) in [
            Role::Administrator,
            Role::Operator,
            Role::Auditor,
            Role::Client,
        ]
        .into_iter()
        .enumerate()
        {
            for (j, own) in [true, false].into_iter().enumerate() {
                n += 1;
                let caller_name = format!("{}-{n}", role.name());
                let owner = if own {
                    caller_name.clone()
                } else {
                    format!("alice-{n}")
                };
                let (uid, payload) = target(&e, &owner, operation, n);
                let caller = Principal::with_role(caller_name, role);
                let name = kmipd_ops::access::operation_name(operation);
                let it = one(&e, &caller, &name, &payload);
                let cell = &row[i * 2 + j];
                let what = format!(
                    "{name} by {} on {} object",
                    role.name(),
                    if own { "its own" } else { "another's" }
                );
                match expected(cell) {
                    None => {
                        assert_eq!(
                            status(&it),
                            (result_status::SUCCESS, None),
                            "{what}: {it:?}"
                        );
                        if operation == op::LOCATE {
                            let found =
                                field(&it, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]);
                            assert_eq!(
                                found.and_then(|f| as_text(f).ok()),
                                Some(uid.as_str()),
                                "{what}"
                            );
                        }
                    }
                    Some(reason) if operation == op::LOCATE => {
                        // Locate refuses nothing: the object is simply not found.
                        assert_eq!(reason, result_reason::OBJECT_NOT_FOUND, "{what}");
                        assert_eq!(status(&it), (result_status::SUCCESS, None), "{what}");
                        assert!(
                            field(&it, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).is_none(),
                            "{what}"
                        );
                    }
                    Some(reason) => {
                        assert_eq!(
                            status(&it),
                            (result_status::OPERATION_FAILED, Some(reason)),
                            "{what}"
                        );
                    }
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 22 * 8);
}

#[test]
fn every_cell_of_the_objectless_table_holds_through_the_engine() {
    let e = Engine::in_memory();
    let rows = table("roles-matrix-none");
    assert_eq!(rows.len(), 10);
    for (operation, row) in rows {
        let payload = match operation {
            op::CREATE => r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="256"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/></Attributes>"#.to_owned(),
            op::CREATE_KEY_PAIR => r#"<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="EC"/><RecommendedCurve type="Enumeration" value="P_256"/></CommonAttributes><PrivateKeyAttributes><CryptographicUsageMask type="Integer" value="Sign"/></PrivateKeyAttributes><PublicKeyAttributes><CryptographicUsageMask type="Integer" value="Verify"/></PublicKeyAttributes>"#.to_owned(),
            op::REGISTER => r#"<ObjectType type="Enumeration" value="SecretData"/><Attributes><CryptographicUsageMask type="Integer" value="Verify"/></Attributes><SecretData><SecretDataType type="Enumeration" value="Password"/><KeyBlock><KeyFormatType type="Enumeration" value="Opaque"/><KeyValue><KeyMaterial type="ByteString" value="616263"/></KeyValue></KeyBlock></SecretData>"#.to_owned(),
            op::QUERY => r#"<QueryFunction type="Enumeration" value="QueryOperations"/>"#.to_owned(),
            op::DISCOVER_VERSIONS => String::new(),
            op::HASH => r#"<CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_256"/></CryptographicParameters><Data type="ByteString" value="616263"/>"#.to_owned(),
            op::RNG_RETRIEVE => r#"<DataLength type="Integer" value="16"/>"#.to_owned(),
            op::SET_CONSTRAINTS | op::GET_CONSTRAINTS => String::new(),
            op::PKCS_11 => r#"<PKCS_11Function type="Enumeration" value="C_GetInfo"/>"#.to_owned(),
            other => panic!("no payload for operation {other}"),
        };
        assert_eq!(row.len(), 4);
        for (i, role) in [
            Role::Administrator,
            Role::Operator,
            Role::Auditor,
            Role::Client,
        ]
        .into_iter()
        .enumerate()
        {
            let name = kmipd_ops::access::operation_name(operation);
            let it = one(&e, &Principal::with_role("someone", role), &name, &payload);
            let want = match expected(&row[i]) {
                None => (result_status::SUCCESS, None),
                Some(r) => (result_status::OPERATION_FAILED, Some(r)),
            };
            assert_eq!(status(&it), want, "{name} by {}", role.name());
        }
    }
}

#[test]
fn an_operators_rekey_of_anothers_key_belongs_to_that_owner_and_a_grant_never_lifts_a_role() {
    let e = Engine::in_memory();
    let alice = Principal::new("alice");
    let ops = Principal::with_role("ops", Role::Operator);
    let old = register_key(&e, "alice", "AES", "Encrypt Decrypt", "k", false);
    let new = uid_of(&one(&e, &ops, "ReKey", &u(&old)));
    // The replacement is alice's: she gets it, and a client other than her does not see it.
    assert_eq!(
        status(&one(&e, &alice, "Get", &u(&new))),
        (result_status::SUCCESS, None)
    );
    assert_eq!(
        status(&one(&e, &Principal::new("ops"), "Get", &u(&new))).1,
        Some(result_reason::OBJECT_NOT_FOUND)
    );
    // An auditor granted Get by the owner still may not read key material.
    e.grant(&alice, &new, "audit-1", &[op::GET]).unwrap();
    let auditor = Principal::with_role("audit-1", Role::Auditor);
    assert_eq!(
        status(&one(&e, &auditor, "Get", &u(&new))),
        (
            result_status::OPERATION_FAILED,
            Some(result_reason::PERMISSION_DENIED)
        )
    );
    // Only the owner or an administrator manages grants, not an operator.
    assert!(e.grant(&ops, &new, "x", &[op::GET]).is_err());
}

#[test]
fn patterns_assign_roles_by_cn_ou_san_subject_and_identity() {
    let roles = RoleAssignments {
        administrator: vec!["admin".into()],
        operator: vec!["ou:key-custodians".into(), "san:*.ops.example".into()],
        auditor: vec![
            "client2".into(),
            "cn:audit-*".into(),
            "subject:*O=Audit Co*".into(),
        ],
        ..RoleAssignments::default()
    };
    roles.validate().unwrap();
    let names = |identity: &str| CertNames::identity(identity);
    assert_eq!(roles.role_of(&names("admin")), Role::Administrator);
    assert_eq!(roles.role_of(&names("client2")), Role::Auditor);
    assert_eq!(roles.role_of(&names("audit-7")), Role::Auditor);
    assert_eq!(roles.role_of(&names("audit")), Role::Client);
    assert_eq!(roles.role_of(&names("client")), Role::Client);
    assert_eq!(roles.role_of(&names("xadmin")), Role::Client);
    let mut custodian = names("bob");
    custodian.ou = vec!["finance".into(), "key-custodians".into()];
    assert_eq!(roles.role_of(&custodian), Role::Operator);
    let mut host = names("host-1");
    host.san = vec!["host-1.ops.example".into()];
    assert_eq!(roles.role_of(&host), Role::Operator);
    host.san = vec!["host-1.ops.example.evil".into()];
    assert_eq!(roles.role_of(&host), Role::Client);
    let mut firm = names("carol");
    firm.subject = "CN=carol, O=Audit Co".into();
    assert_eq!(roles.role_of(&firm), Role::Auditor);
    // In two lists: the more privileged role.
    let both = RoleAssignments {
        operator: vec!["cn:x-*".into()],
        auditor: vec!["x-1".into()],
        ..RoleAssignments::default()
    };
    assert_eq!(both.role_of(&names("x-1")), Role::Operator);
    let empty = RoleAssignments {
        auditor: vec!["cn:".into()],
        ..RoleAssignments::default()
    };
    assert!(empty.validate().is_err());
}

#[test]
fn scopes_keep_two_tenants_operators_apart() {
    let e = Engine::in_memory();
    let roles = RoleAssignments {
        operator: vec!["cn:ops-*".into()],
        scopes: [
            ("cn:ops-a".to_owned(), vec!["tenant-a".to_owned()]),
            ("cn:ops-b".to_owned(), vec!["tenant-b".to_owned()]),
        ]
        .into_iter()
        .collect(),
        ..RoleAssignments::default()
    };
    let ops_a = roles.principal(&CertNames::identity("ops-a"));
    let ops_b = roles.principal(&CertNames::identity("ops-b"));
    assert_eq!(ops_a.role(), Role::Operator);
    assert_eq!(ops_a.scope(), Some(&["tenant-a".to_owned()][..]));
    let in_group = |group: &str, owner: &str| {
        let payload = format!(
            r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="256"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/><ObjectGroup type="TextString" value="{group}"/></Attributes>"#
        );
        uid_of(&one(&e, &Principal::new(owner), "Create", &payload))
    };
    let a = in_group("tenant-a", "app-a");
    let b = in_group("tenant-b", "app-b");
    let locate = |who: &Principal| -> Vec<String> {
        let it = one(&e, who, "Locate", "");
        assert_eq!(status(&it), (result_status::SUCCESS, None));
        let payload = field(&it, &[tag::RESPONSE_PAYLOAD]).unwrap();
        payload
            .children()
            .into_iter()
            .flatten()
            .filter(|c| c.tag == tag::UNIQUE_IDENTIFIER)
            .map(|c| as_text(c).unwrap().to_owned())
            .collect()
    };
    assert_eq!(locate(&ops_a), vec![a.clone()]);
    assert_eq!(locate(&ops_b), vec![b.clone()]);
    // The other tenant's key is absent for each, not refused.
    assert_eq!(
        status(&one(&e, &ops_a, "Revoke", &format!(r#"{}<RevocationReason><RevocationReasonCode type="Enumeration" value="Unspecified"/></RevocationReason>"#, u(&b)))).1,
        Some(result_reason::OBJECT_NOT_FOUND)
    );
    assert_eq!(
        status(&one(&e, &ops_b, "Activate", &u(&b))),
        (result_status::SUCCESS, None)
    );
    // An unscoped operator sees both.
    let ops_c = roles.principal(&CertNames::identity("ops-c"));
    assert_eq!(ops_c.scope(), None);
    assert_eq!(locate(&ops_c).len(), 2);
}

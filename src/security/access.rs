//! Who a caller is and what it may do: roles, the access file (hashed
//! bearer tokens and client-certificate names, each with a name and
//! roles), and the decision for one call.
//!
//! The access file is plain text, one client a line:
//!
//! ```text
//! # NAME           ROLES          CREDENTIAL
//! clearance-be     score          sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! inspection-app   report         sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//! ops-console      score,admin    cert:ops.customs.example
//! ```
//!
//! A token is never stored, only its SHA-256 (`parcel-risk token` makes a
//! token and its line). A `cert:` line names a client certificate by its
//! subject common name or one of its subject alternative names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

/// What a caller may do. Each RPC needs exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// ScoreDeclaration(s), PlanInspections, GetModelInfo.
    Score,
    /// ReportInspectionResult(s): the labels that retraining learns from.
    Report,
    /// Anything that changes the service itself.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Score, Role::Report, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Score => "score",
            Role::Report => "report",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Score => 1,
            Role::Report => 2,
            Role::Admin => 4,
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const ALL: Roles = Roles(7);
    /// What a client the CA signed may do when no access file names it.
    pub const SCORE_AND_REPORT: Roles = Roles(3);

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    #[must_use]
    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    /// `score,report`; `none` for the empty set.
    pub fn names(self) -> String {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.contains(*r))
            .map(Role::name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }

    /// Parses `score,report`.
    pub fn parse(s: &str) -> Result<Roles, String> {
        s.split(',').try_fold(Roles::NONE, |roles, name| {
            Role::parse(name.trim())
                .map(|r| roles.with(r))
                .ok_or_else(|| format!("unknown role {name:?} (roles: score, report, admin)"))
        })
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    BearerToken,
    ClientCertificate,
    /// Nothing: the server runs without credentials (development on
    /// loopback, or `--insecure`).
    None,
}

impl Credential {
    pub fn name(self) -> &'static str {
        match self {
            Credential::BearerToken => "token",
            Credential::ClientCertificate => "certificate",
            Credential::None => "none",
        }
    }
}

/// The authenticated caller of one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The name the access file gives it, or its certificate's name.
    pub name: String,
    pub roles: Roles,
    pub credential: Credential,
    /// Where the call came from.
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// The caller of a server that asks for no credentials.
    pub fn anonymous(peer: Option<SocketAddr>) -> Caller {
        Caller {
            name: ANONYMOUS.into(),
            roles: Roles::ALL,
            credential: Credential::None,
            peer,
        }
    }
}

/// The name of callers of a server without credentials.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, thiserror::Error)]
pub enum AccessFileError {
    #[error("cannot read the access file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("access file line {line}: {message}")]
    Line { line: usize, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    roles: Roles,
}

/// The access file, parsed.
#[derive(Debug, Default, Clone)]
pub struct AccessList {
    /// By SHA-256 of the token.
    tokens: HashMap<[u8; 32], Entry>,
    /// By certificate name.
    certificates: HashMap<String, Entry>,
}

impl AccessList {
    pub fn load(path: &Path) -> Result<AccessList, AccessFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AccessList::parse(&text)
    }

    pub fn parse(text: &str) -> Result<AccessList, AccessFileError> {
        let mut list = AccessList::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |message: String| AccessFileError::Line { line, message };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, roles, credential] = fields[..] else {
                return Err(fail(format!(
                    "expected NAME ROLES CREDENTIAL, found {} fields",
                    fields.len()
                )));
            };
            let roles = Roles::parse(roles).map_err(fail)?;
            let entry = Entry {
                name: name.to_owned(),
                roles,
            };
            if let Some(hex) = credential.strip_prefix("sha256:") {
                let digest = parse_digest(hex).ok_or_else(|| {
                    fail("a token hash is sha256: and 64 hexadecimal digits".into())
                })?;
                if list.tokens.insert(digest, entry).is_some() {
                    return Err(fail("this token hash is listed twice".into()));
                }
            } else if let Some(cert) = credential.strip_prefix("cert:") {
                if cert.is_empty() {
                    return Err(fail("cert: needs a certificate name".into()));
                }
                if list.certificates.insert(cert.to_owned(), entry).is_some() {
                    return Err(fail(format!("certificate {cert:?} is listed twice")));
                }
            } else {
                // The credential is not echoed: it may be a token pasted by mistake.
                return Err(fail(
                    "the credential must be sha256:HEX (a token's hash) or cert:NAME".into(),
                ));
            }
        }
        Ok(list)
    }

    pub fn len(&self) -> usize {
        self.tokens.len() + self.certificates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn by_token(&self, token: &str) -> Option<&Entry> {
        self.tokens.get(&sha256(token.as_bytes()))
    }

    fn by_certificate<'a>(&'a self, names: &'a [String]) -> Option<&'a Entry> {
        names.iter().find_map(|n| self.certificates.get(n))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The access-file credential of a token: `sha256:` and its hex digest.
pub fn token_hash(token: &str) -> String {
    let mut out = String::from("sha256:");
    for b in sha256(token.as_bytes()) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new random token: 32 bytes from the system's generator, as 64 hex digits.
pub fn new_token() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a call was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No credential where one is needed (UNAUTHENTICATED).
    #[error(
        "credentials required: a client certificate or an `authorization: Bearer TOKEN` header"
    )]
    NoCredentials,
    /// A token that is malformed or unknown (UNAUTHENTICATED).
    #[error("the bearer token is not valid")]
    BadToken,
    /// Authenticated, without the role the call needs (PERMISSION_DENIED).
    #[error("{caller} may not call {method}: it needs the role {role}, and has {has}")]
    Forbidden {
        caller: String,
        method: String,
        role: &'static str,
        has: String,
    },
}

/// Who may call what, as configured: an access file (or none), and
/// whether clients present certificates that the TLS layer verified.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// None: no access file.
    pub list: Option<AccessList>,
    /// Client certificates are required and verified (mutual TLS).
    pub mutual_tls: bool,
}

impl AccessPolicy {
    /// No credentials asked: every caller is [`ANONYMOUS`] with every role.
    pub fn open() -> AccessPolicy {
        AccessPolicy::default()
    }

    pub fn is_open(&self) -> bool {
        self.list.is_none() && !self.mutual_tls
    }

    /// Identifies a caller from its `authorization` header (if any) and the
    /// names of the client certificate the TLS layer verified (if any).
    ///
    /// A bearer token, when the access file lists tokens, decides alone;
    /// otherwise a verified certificate names the caller, with the roles of
    /// its `cert:` line, or score and report when there is no access file
    /// (the CA is then the list). Without either, only an open policy lets
    /// the call in.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificate_names: Option<&[String]>,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, AccessError> {
        if let (Some(header), Some(list)) = (authorization, &self.list) {
            let token = std::str::from_utf8(header)
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(AccessError::BadToken)?;
            let entry = list.by_token(token).ok_or(AccessError::BadToken)?;
            return Ok(Caller {
                name: entry.name.clone(),
                roles: entry.roles,
                credential: Credential::BearerToken,
                peer,
            });
        }
        if let Some(names) = certificate_names.filter(|n| !n.is_empty()) {
            let (name, roles) = match &self.list {
                Some(list) => match list.by_certificate(names) {
                    Some(entry) => (entry.name.clone(), entry.roles),
                    None => (names[0].clone(), Roles::NONE),
                },
                None => (names[0].clone(), Roles::SCORE_AND_REPORT),
            };
            return Ok(Caller {
                name,
                roles,
                credential: Credential::ClientCertificate,
                peer,
            });
        }
        if self.is_open() {
            return Ok(Caller::anonymous(peer));
        }
        Err(AccessError::NoCredentials)
    }
}

/// Checks that `caller` holds `role` for `method`.
pub fn authorize(caller: &Caller, role: Role, method: &str) -> Result<(), AccessError> {
    if caller.roles.contains(role) {
        Ok(())
    } else {
        Err(AccessError::Forbidden {
            caller: caller.name.clone(),
            method: method.to_owned(),
            role: role.name(),
            has: caller.roles.names(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AccessList {
        AccessList::parse(&format!(
            "# NAME ROLES CREDENTIAL\n\nclearance score {} # the clearance system\ninspect report,score {}\nops admin cert:ops.example\n",
            token_hash("tok-clearance"),
            token_hash("tok-inspect"),
        ))
        .unwrap()
    }

    #[test]
    fn roles_parse_and_print() {
        assert_eq!(
            Roles::parse("report,score").unwrap().names(),
            "score,report"
        );
        assert_eq!(
            Roles::parse("admin").unwrap(),
            Roles::NONE.with(Role::Admin)
        );
        assert!(Roles::parse("root").is_err());
        assert_eq!(Roles::NONE.names(), "none");
    }

    #[test]
    fn the_access_file_names_bad_lines_and_never_echoes_a_credential() {
        let e = AccessList::parse("a score sha256:1234\n").unwrap_err();
        assert!(e.to_string().starts_with("access file line 1:"), "{e}");
        let e = AccessList::parse("\n# x\nb score my-secret-token\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(!e.to_string().contains("my-secret-token"), "{e}");
        let e = AccessList::parse("a root cert:x\n").unwrap_err();
        assert!(e.to_string().contains("unknown role"), "{e}");
        let e = AccessList::parse("a score\n").unwrap_err();
        assert!(e.to_string().contains("NAME ROLES CREDENTIAL"), "{e}");
        let twice = format!("a score {h}\nb report {h}\n", h = token_hash("t"));
        assert!(AccessList::parse(&twice).is_err());
        assert_eq!(list().len(), 3);
    }

    #[test]
    fn tokens_and_certificates_name_callers_with_their_roles() {
        let policy = AccessPolicy {
            list: Some(list()),
            mutual_tls: false,
        };
        let c = policy
            .authenticate(Some(b"Bearer tok-inspect"), None, None)
            .unwrap();
        assert_eq!(
            (c.name.as_str(), c.roles.names()),
            ("inspect", "score,report".into())
        );
        assert_eq!(c.credential, Credential::BearerToken);
        assert_eq!(
            policy.authenticate(Some(b"Bearer nope"), None, None),
            Err(AccessError::BadToken)
        );
        assert_eq!(
            policy.authenticate(Some(b"Basic abc"), None, None),
            Err(AccessError::BadToken)
        );
        assert_eq!(
            policy.authenticate(None, None, None),
            Err(AccessError::NoCredentials)
        );
        let names = vec!["ops.example".to_string()];
        let ops = policy.authenticate(None, Some(&names), None).unwrap();
        assert_eq!(
            (ops.name.as_str(), ops.roles),
            ("ops", Roles::NONE.with(Role::Admin))
        );
        // A certificate the CA signed but the list does not name: no role.
        let other = vec!["other.example".to_string()];
        let c = policy.authenticate(None, Some(&other), None).unwrap();
        assert_eq!(c.roles, Roles::NONE);
        assert!(authorize(&c, Role::Score, "ScoreDeclaration").is_err());
    }

    #[test]
    fn without_an_access_file_the_ca_decides_and_an_open_server_lets_all_in() {
        let mtls = AccessPolicy {
            list: None,
            mutual_tls: true,
        };
        let names = vec!["clearance.example".to_string()];
        let c = mtls.authenticate(None, Some(&names), None).unwrap();
        assert_eq!(c.roles, Roles::SCORE_AND_REPORT);
        assert!(authorize(&c, Role::Admin, "Reload").is_err());
        assert_eq!(
            mtls.authenticate(None, None, None),
            Err(AccessError::NoCredentials)
        );
        let open = AccessPolicy::open();
        let c = open
            .authenticate(Some(b"Bearer whatever"), None, None)
            .unwrap();
        assert_eq!((c.name.as_str(), c.roles), (ANONYMOUS, Roles::ALL));
    }

    #[test]
    fn token_hashes_are_sha256_and_new_tokens_differ() {
        assert_eq!(
            token_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

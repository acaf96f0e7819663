//! Who may use the web page and the API: users with argon2 password hashes and API tokens
//! (both in the store), browser sessions and the failed-login limiter (both in the server's
//! memory).
//!
//! Data flow: `drover admin passwd` and `drover token create` write [`User`] and [`ApiToken`]
//! records; the first `drover serve` creates the `admin` user with a random password written
//! to a 0600 file ([`ensure_admin`]). The HTTP layer (`crate::api`) calls [`verify_password`]
//! on login, then keeps a [`Session`] in [`Sessions`]; scripts send a token that
//! [`token_owner`] looks up by its hash.
//!
//! Secrets never reach logs: passwords and tokens are not `Debug`-printed, the store keeps
//! only hashes, and the random first password goes to a file, not to the log.
//!
//! Roles ([`Role`]): each user and token has one; records older than roles read as admin.
//! The last admin cannot be demoted, so the appliance never locks its admins out.
//!
//! Not here: the HTTP side (cookies, CSRF header, status codes, which role each route needs:
//! `crate::api`), TLS (`crate::tls`).

use crate::admin::{check_name, AdminError};
use crate::store::model::{ApiToken, Role, User};
use crate::store::{Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The user made at first start.
pub const ADMIN: &str = "admin";
/// Where the first start writes the admin's random password (0600, under the state dir).
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";
/// Shortest password `drover admin passwd` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 cost does not depend on it, but request bodies do).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Prefix of API tokens, so that they are recognisable in scripts and secret scanners.
pub const TOKEN_PREFIX: &str = "drv_";

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many live sessions; the least recently used goes when a new one needs room.
pub const MAX_SESSIONS: usize = 1024;

/// Failed logins a client may make in a burst before it has to wait.
pub const LOGIN_BURST: u32 = 5;
/// After the burst, one more attempt is allowed per this interval.
pub const LOGIN_REFILL: Duration = Duration::from_secs(12);
/// Clients the limiter tracks at most (entries at full credit are dropped first).
pub const MAX_LIMITER_CLIENTS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the password is too short: at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the password is too long: at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("{name} is the last admin: make another user admin first")]
    LastAdmin { name: String },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Admin(AdminError::Store(e))
    }
}

/// `n` random bytes as lowercase hex, from the operating system's CSPRNG.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::TooLong);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Sets (or creates, as an admin) user `name` with `password`; an existing user keeps its
/// role.
pub fn set_password(store: &Store, name: &str, password: &str) -> Result<(), AuthError> {
    put_user(store, name, password, None)
}

/// Makes user `name` with `password` and `role`; refused if the user exists.
pub fn add_user(store: &Store, name: &str, password: &str, role: Role) -> Result<(), AuthError> {
    put_user(store, name, password, Some(role))
}

/// Writes user `name` with `password`: a new user with `role`, refused if it exists; or
/// (`role` None) any user, keeping its role (admin when new).
fn put_user(
    store: &Store,
    name: &str,
    password: &str,
    role: Option<Role>,
) -> Result<(), AuthError> {
    check_name(name)?;
    let password_hash = hash_password(password)?;
    store.write(|w| {
        let existing = w.get::<User>(name)?.map(|u| u.role);
        let role = match (role, existing) {
            (Some(_), Some(_)) => {
                return Err(AuthError::Admin(AdminError::Exists {
                    kind: "user",
                    name: name.to_string(),
                }))
            }
            (Some(role), None) => role,
            (None, existing) => existing.unwrap_or_default(),
        };
        w.put(&User {
            name: name.to_string(),
            password_hash,
            role,
        })?;
        Ok(())
    })
}

/// Gives user `name` `role`. Refused for an unknown user, and when it would leave no admin.
pub fn set_role(store: &Store, name: &str, role: Role) -> Result<(), AuthError> {
    store.write(|w| {
        let Some(mut user) = w.get::<User>(name)? else {
            return Err(AuthError::Admin(AdminError::Unknown {
                kind: "user",
                name: name.to_string(),
            }));
        };
        let admins = w
            .all::<User>()?
            .iter()
            .filter(|u| u.role == Role::Admin)
            .count();
        if user.role == Role::Admin && role != Role::Admin && admins <= 1 {
            return Err(AuthError::LastAdmin {
                name: name.to_string(),
            });
        }
        user.role = role;
        w.put(&user)?;
        Ok(())
    })
}

/// Every user (names and roles; the hashes stay in the records).
pub fn users(store: &Store) -> Result<Vec<User>, StoreError> {
    store.read(|r| r.all::<User>())
}

/// The role of user `name`, if the user exists.
pub fn user_role(store: &Store, name: &str) -> Result<Option<Role>, StoreError> {
    Ok(store.read(|r| r.get::<User>(name))?.map(|u| u.role))
}

/// Whether `password` is user `name`'s. Slow on purpose (argon2): call it off the async
/// workers. Unknown users cost the same time as known ones, so timing does not tell them apart.
pub fn verify_password(store: &Store, name: &str, password: &str) -> Result<bool, StoreError> {
    let user = if check_name(name).is_ok() && password.len() <= MAX_PASSWORD_LEN {
        store.read(|r| r.get::<User>(name))?
    } else {
        None
    };
    let (hash, known) = match &user {
        Some(u) => (u.password_hash.as_str(), true),
        None => (DUMMY_HASH, false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!(user = name, "stored password hash is not a PHC string");
        return Ok(false);
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(ok && known)
}

/// A valid argon2id hash of a random password, verified against for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Dnl1GSNdx4mu/ixEBL0mr6FUK1M1Cg3UEudl7SBsuM0";

/// At first start (no user at all), creates [`ADMIN`] with a random password and writes it to
/// `state_dir/initial-admin-password` (mode 0600). Returns that file's path when it did.
pub fn ensure_admin(store: &Store, state_dir: &Path) -> Result<Option<PathBuf>, AuthError> {
    if !store.read(|r| r.all::<User>())?.is_empty() {
        return Ok(None);
    }
    let password = random_hex(12);
    let path = state_dir.join(INITIAL_PASSWORD_FILE);
    write_secret(&path, &format!("{password}\n"))?;
    set_password(store, ADMIN, &password)?;
    Ok(Some(path))
}

fn write_secret(path: &Path, text: &str) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    // The new name itself must survive a crash too.
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::durable::sync_dir(dir).map_err(err)
}

fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Makes API token `name` and returns the token (shown once; only its hash is kept).
pub fn create_token(store: &Store, name: &str, role: Role, now: u64) -> Result<String, AuthError> {
    check_name(name)?;
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
    let record = ApiToken {
        name: name.to_string(),
        hash: token_hash(&token),
        created: now,
        role,
    };
    store.write(|w| {
        if w.get::<ApiToken>(name)?.is_some() {
            return Err(AuthError::Admin(AdminError::Exists {
                kind: "token",
                name: name.to_string(),
            }));
        }
        w.put(&record)?;
        Ok(())
    })?;
    Ok(token)
}

pub fn remove_token(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<ApiToken>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "token",
                name: name.to_string(),
            })
        }
    })
}

pub fn tokens(store: &Store) -> Result<Vec<ApiToken>, StoreError> {
    store.read(|r| r.all::<ApiToken>())
}

/// The name and role of the API token `token`, if it is one.
pub fn token_owner(store: &Store, token: &str) -> Result<Option<(String, Role)>, StoreError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    store.read(|r| {
        let Some(name) = r.owner(&format!("token/{}", token_hash(token)))? else {
            return Ok(None);
        };
        Ok(r.get::<ApiToken>(&name)?.map(|t| (name, t.role)))
    })
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in browser.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    /// Sent back in the `X-CSRF-Token` header of every state-changing request.
    pub csrf: String,
    last_used: Instant,
}

/// The live sessions, keyed by the session cookie's value. In memory: a restart logs every
/// browser out (tokens survive, they are in the store).
#[derive(Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    /// Starts a session for `user`; returns its id (the cookie value) and the session.
    pub fn create(&mut self, user: &str, now: Instant) -> (String, Session) {
        self.expire(now);
        if self.map.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        let id = random_hex(32);
        let session = Session {
            user: user.to_string(),
            csrf: random_hex(24),
            last_used: now,
        };
        self.map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session with cookie value `id`, if it is live; marks it used.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.map.get_mut(id)?;
        if now.duration_since(s.last_used) > SESSION_IDLE {
            self.map.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Whether session `id` is live, without counting this as a use.
    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        self.map
            .get(id)
            .is_some_and(|s| now.duration_since(s.last_used) <= SESSION_IDLE)
    }

    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.map
            .retain(|_, s| now.duration_since(s.last_used) <= SESSION_IDLE);
    }
}

/// Failed-login limiter: a token bucket per client address ([`LOGIN_BURST`] attempts, then
/// one per [`LOGIN_REFILL`]). Pure: the caller passes the time.
///
/// An attempt is charged before its password is verified ([`LoginLimiter::reserve`]) and
/// refunded by a success: checking first and recording the failure after the slow
/// verification let 64 parallel attempts from one address all through.
#[derive(Default)]
pub struct LoginLimiter {
    clients: HashMap<std::net::IpAddr, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures still allowed before waiting.
    credit: u32,
    /// When the credit was last computed.
    at: Instant,
}

impl LoginLimiter {
    fn current(&self, client: std::net::IpAddr, now: Instant) -> Bucket {
        match self.clients.get(&client) {
            None => Bucket {
                credit: LOGIN_BURST,
                at: now,
            },
            Some(b) => {
                let elapsed = now.saturating_duration_since(b.at);
                let earned = (elapsed.as_millis() / LOGIN_REFILL.as_millis()) as u32;
                if earned == 0 {
                    *b
                } else {
                    Bucket {
                        credit: (b.credit + earned).min(LOGIN_BURST),
                        at: b.at + LOGIN_REFILL * earned,
                    }
                }
            }
        }
    }

    /// `Ok` when `client` may try to log in now, else how long it must wait.
    fn check(&self, client: std::net::IpAddr, now: Instant) -> Result<(), Duration> {
        let b = self.current(client, now);
        if b.credit > 0 {
            Ok(())
        } else {
            Err((b.at + LOGIN_REFILL).saturating_duration_since(now))
        }
    }

    /// Charges one attempt of `client` if it has credit (`Ok`), else says how long it must
    /// wait. Check and charge are one step, so parallel attempts cannot overdraw.
    pub fn reserve(&mut self, client: std::net::IpAddr, now: Instant) -> Result<(), Duration> {
        self.check(client, now)?;
        self.charge(client, now);
        Ok(())
    }

    /// Counts an attempt of `client`.
    fn charge(&mut self, client: std::net::IpAddr, now: Instant) {
        let mut b = self.current(client, now);
        if b.credit == LOGIN_BURST {
            b.at = now;
        }
        b.credit = b.credit.saturating_sub(1);
        if self.clients.len() >= MAX_LIMITER_CLIENTS && !self.clients.contains_key(&client) {
            let full: Vec<_> = self
                .clients
                .keys()
                .copied()
                .filter(|c| self.current(*c, now).credit == LOGIN_BURST)
                .collect();
            for c in full {
                self.clients.remove(&c);
            }
            if self.clients.len() >= MAX_LIMITER_CLIENTS {
                // Every tracked client is limited: drop the one that waited longest.
                if let Some(c) = self
                    .clients
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(c, _)| *c)
                {
                    self.clients.remove(&c);
                }
            }
        }
        self.clients.insert(client, b);
    }

    /// A successful login clears the client's record.
    pub fn succeeded(&mut self, client: std::net::IpAddr) {
        self.clients.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_tokens_stored_before_roles_read_as_admins() {
        let user: User = serde_json::from_str(r#"{"name":"a","password_hash":"h"}"#).unwrap();
        assert_eq!(user.role, Role::Admin);
        let token: ApiToken =
            serde_json::from_str(r#"{"name":"t","hash":"h","created":1}"#).unwrap();
        assert_eq!(token.role, Role::Admin);
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn limiter_allows_a_burst_then_one_per_interval() {
        let mut l = LoginLimiter::default();
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..LOGIN_BURST {
            assert!(l.reserve(ip, t0).is_ok());
        }
        let wait = l.reserve(ip, t0).unwrap_err();
        assert!(wait <= LOGIN_REFILL && wait > Duration::ZERO);
        assert!(
            l.reserve(other, t0).is_ok(),
            "other clients are not limited"
        );
        let t1 = t0 + LOGIN_REFILL;
        assert!(l.reserve(ip, t1).is_ok());
        assert!(l.reserve(ip, t1).is_err());
        l.succeeded(ip);
        assert!(l.reserve(ip, t1).is_ok());
    }

    #[test]
    fn sessions_expire_when_idle_and_are_capped() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let (id, sess) = s.create("admin", t0);
        assert_eq!(sess.user, "admin");
        assert_eq!(sess.csrf.len(), 48);
        assert!(s.touch(&id, t0 + Duration::from_secs(60)).is_some());
        assert!(s.is_live(&id, t0 + Duration::from_secs(61)));
        assert!(s.touch(&id, t0 + SESSION_IDLE * 2).is_none());
        assert!(s.touch("nope", t0).is_none());
        for _ in 0..MAX_SESSIONS + 10 {
            s.create("admin", t0);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}

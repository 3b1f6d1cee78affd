//! Accounts and devices: registration, password login, access tokens, logout.
//!
//! Passwords are hashed with argon2 on the blocking pool. Access tokens are random,
//! stored only as SHA-256 hashes (a fast hash is right for high-entropy secrets, and
//! every request looks one up). A small cache maps token hashes to devices; only this
//! server issues and revokes tokens, so the cache is never stale, and accounts that
//! `tidings create-user` adds while the server runs are read from the database.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::Rng;
use ruma::{OwnedUserId, UserId};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{check_new_localpart, is_local, parse_user_id};
use crate::storage::Db;

/// The device behind an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its owner.
    pub user_id: OwnedUserId,
    /// Its ID.
    pub device_id: String,
    /// Whether the owner may use the admin API.
    pub admin: bool,
}

/// A fresh login: the device and its access token (shown once, never stored).
#[derive(Debug, Clone)]
pub struct Session {
    /// The device.
    pub device: Device,
    /// The access token.
    pub access_token: String,
}

/// What a login or registration asks for besides the credentials.
#[derive(Debug, Clone, Default)]
pub struct DeviceRequest {
    /// Reuse this device ID (its old token is replaced).
    pub device_id: Option<String>,
    /// A human-readable name for the device.
    pub display_name: Option<String>,
}

/// Accounts, devices and tokens.
#[derive(Debug)]
pub struct AccountService {
    db: Db,
    server_name: String,
    clock: SharedClock,
    tokens: Mutex<HashMap<String, Device>>,
    /// Password hashes running at once, at most one per core: argon2 takes 19 MiB
    /// each, so a registration burst must queue rather than exhaust memory.
    hashing: tokio::sync::Semaphore,
}

/// Run a password hash (or check) off the runtime, at most one per core at a time.
async fn hash_bounded<T: Send + 'static>(
    limit: &tokio::sync::Semaphore,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let _permit = limit.acquire().await.map_err(|_| Error::internal("password hashing closed"))?;
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)
}

/// Hash a password with argon2's defaults (slow on purpose; call off the runtime).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn hash_token(token: &str) -> String {
    crate::ids::hex(&Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    format!("tdg_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn new_device_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10).map(|_| char::from(b'A' + rng.gen_range(0..26))).collect()
}

fn new_localpart() -> String {
    let mut rng = rand::thread_rng();
    format!("u{}", (0..12).map(|_| char::from(b'a' + rng.gen_range(0..26))).collect::<String>())
}

/// Create a user straight in the database (the `create-user` command).
/// Fails with `M_USER_IN_USE` if the ID is taken.
pub fn create_user_blocking(
    db: &Db,
    server_name: &str,
    localpart: &str,
    password: &str,
    admin: bool,
    now: u64,
) -> Result<OwnedUserId> {
    check_new_localpart(localpart)?;
    let user_id = parse_user_id(&format!("@{localpart}:{server_name}"))?;
    let hash = hash_password(password)?;
    let id = user_id.to_string();
    let created = db.write_blocking(move |s| s.insert_user(&id, &hash, admin, now))?;
    if !created {
        return Err(Error::new(ErrorKind::UserInUse, format!("{user_id} already exists")));
    }
    Ok(user_id)
}

impl AccountService {
    /// The account service over `db` for users of `server_name`.
    pub fn new(db: Db, server_name: &str, clock: SharedClock) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self {
            db,
            server_name: server_name.to_owned(),
            clock,
            tokens: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(cores),
        }
    }

    /// This server's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Device>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `localpart` is free (and valid) for registration.
    pub async fn available(&self, localpart: &str) -> Result<OwnedUserId> {
        check_new_localpart(localpart)?;
        let user_id = parse_user_id(&format!("@{localpart}:{}", self.server_name))?;
        let id = user_id.to_string();
        if self.db.read(move |s| s.user_exists(&id)).await? {
            return Err(Error::new(ErrorKind::UserInUse, format!("{user_id} is taken")));
        }
        Ok(user_id)
    }

    /// Create an account; with `login`, also a device and token.
    pub async fn register(
        &self,
        localpart: Option<&str>,
        password: &str,
        device: DeviceRequest,
        login: bool,
    ) -> Result<(OwnedUserId, Option<Session>)> {
        let localpart = localpart.map(str::to_owned).unwrap_or_else(new_localpart);
        let user_id = self.available(&localpart).await?;
        let password = password.to_owned();
        let hash = hash_bounded(&self.hashing, move || hash_password(&password)).await??;
        let (id, now) = (user_id.to_string(), self.clock.now_ms());
        if !self.db.write(move |s| s.insert_user(&id, &hash, false, now)).await? {
            return Err(Error::new(ErrorKind::UserInUse, format!("{user_id} is taken")));
        }
        let session = if login { Some(self.open_session(&user_id, false, device).await?) } else { None };
        Ok((user_id, session))
    }

    /// Check a password and open a session. Wrong user or password: `M_FORBIDDEN`, alike.
    pub async fn login(&self, user_id: &UserId, password: &str, device: DeviceRequest) -> Result<Session> {
        let id = user_id.to_string();
        let row =
            if is_local(user_id, &self.server_name) { self.db.read(move |s| s.get_user(&id)).await? } else { None };
        let password = password.to_owned();
        let (ok, admin) = hash_bounded(&self.hashing, move || match row {
            Some(row) => (verify_password(&password, &row.password_hash), row.admin),
            None => {
                // Spend the same time as a real check so timing does not tell who exists.
                let _ = hash_password(&password);
                (false, false)
            }
        })
        .await?;
        if !ok {
            return Err(Error::forbidden("invalid user name or password"));
        }
        self.open_session(user_id, admin, device).await
    }

    async fn open_session(&self, user_id: &UserId, admin: bool, request: DeviceRequest) -> Result<Session> {
        let device_id = request.device_id.filter(|d| !d.is_empty() && d.len() <= 255).unwrap_or_else(new_device_id);
        let token = new_token();
        let hash = hash_token(&token);
        let (id, dev, name, h, now) =
            (user_id.to_string(), device_id.clone(), request.display_name, hash.clone(), self.clock.now_ms());
        let old = self
            .db
            .write(move |s| {
                // Re-login on a known device keeps its row (kind, name), replacing the token.
                let old = s.device_token_hash(&id, &dev)?;
                s.upsert_device(&id, &dev, name.as_deref(), &h, now)?;
                Ok(old)
            })
            .await?;
        let device = Device { user_id: user_id.to_owned(), device_id, admin };
        let mut tokens = self.tokens();
        if let Some(old) = old {
            tokens.remove(&old);
        }
        tokens.insert(hash, device.clone());
        Ok(Session { device, access_token: token })
    }

    /// The device an access token belongs to; `M_UNKNOWN_TOKEN` if none.
    pub async fn authenticate(&self, token: &str) -> Result<Device> {
        let hash = hash_token(token);
        if let Some(device) = self.tokens().get(&hash) {
            return Ok(device.clone());
        }
        let h = hash.clone();
        let row = self.db.read(move |s| s.device_by_token(&h)).await?;
        let row = row.ok_or_else(|| Error::new(ErrorKind::UnknownToken, "unknown or expired access token"))?;
        let device = Device { user_id: parse_user_id(&row.user_id)?, device_id: row.device_id, admin: row.admin };
        self.tokens().insert(hash, device.clone());
        Ok(device)
    }

    /// Delete one device and its token.
    pub async fn logout(&self, device: &Device) -> Result<()> {
        let (id, dev) = (device.user_id.to_string(), device.device_id.clone());
        if let Some(hash) = self.db.write(move |s| s.delete_device(&id, &dev)).await? {
            self.tokens().remove(&hash);
        }
        Ok(())
    }

    /// Delete every device of `user_id`; returns their IDs.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<Vec<String>> {
        let id = user_id.to_string();
        let removed = self.db.write(move |s| s.delete_all_devices(&id)).await?;
        let mut tokens = self.tokens();
        Ok(removed
            .into_iter()
            .map(|(device_id, hash)| {
                tokens.remove(&hash);
                device_id
            })
            .collect())
    }

    /// Forget cached tokens whose devices were deleted (by [`crate::devices::DeviceService`]).
    pub fn forget_token_hashes(&self, hashes: &[&str]) {
        let mut tokens = self.tokens();
        for hash in hashes {
            tokens.remove(*hash);
        }
    }

    /// Check `user_id`'s password (user-interactive auth); `M_FORBIDDEN` if wrong.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<()> {
        let id = user_id.to_string();
        let row =
            if is_local(user_id, &self.server_name) { self.db.read(move |s| s.get_user(&id)).await? } else { None };
        let Some(row) = row else { return Err(Error::forbidden("invalid password")) };
        let password = password.to_owned();
        let ok = hash_bounded(&self.hashing, move || verify_password(&password, &row.password_hash)).await?;
        if ok { Ok(()) } else { Err(Error::forbidden("invalid password")) }
    }

    /// Whether a local user exists.
    pub async fn exists(&self, user_id: &UserId) -> Result<bool> {
        if !is_local(user_id, &self.server_name) {
            return Ok(false);
        }
        let id = user_id.to_string();
        self.db.read(move |s| s.user_exists(&id)).await
    }

    /// A local user's display name; `M_NOT_FOUND` if there is no such user.
    pub async fn displayname(&self, user_id: &UserId) -> Result<Option<String>> {
        let id = user_id.to_string();
        let row =
            if is_local(user_id, &self.server_name) { self.db.read(move |s| s.get_user(&id)).await? } else { None };
        row.map(|r| r.displayname).ok_or_else(|| Error::not_found(format!("there is no user {user_id}")))
    }

    /// Set a user's display name.
    pub async fn set_displayname(&self, user_id: &UserId, name: Option<String>) -> Result<()> {
        let id = user_id.to_string();
        self.db.write(move |s| s.set_displayname(&id, name.as_deref())).await
    }

    /// A local user's avatar URL; `M_NOT_FOUND` if there is no such user.
    pub async fn avatar_url(&self, user_id: &UserId) -> Result<Option<String>> {
        let id = user_id.to_string();
        let row = if is_local(user_id, &self.server_name) {
            self.db.read(move |s| s.avatar_url_get(&id)).await?
        } else {
            None
        };
        row.ok_or_else(|| Error::not_found(format!("there is no user {user_id}")))
    }

    /// Set a user's avatar URL (an `mxc://` URI, or `None` to remove it).
    pub async fn set_avatar_url(&self, user_id: &UserId, url: Option<String>) -> Result<()> {
        if url.as_ref().is_some_and(|u| !u.starts_with("mxc://") || u.len() > 512) {
            return Err(Error::invalid_param("avatar_url must be an mxc:// URI of at most 512 bytes"));
        }
        let id = user_id.to_string();
        self.db.write(move |s| s.avatar_url_set(&id, url.as_deref())).await
    }

    /// Every user with admin flag and device count.
    pub async fn list(&self) -> Result<Vec<(String, bool, u64)>> {
        self.db.read(|s| s.list_users()).await
    }

    /// How many users there are.
    pub async fn count(&self) -> Result<u64> {
        self.db.read(|s| s.count_users()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn service() -> AccountService {
        AccountService::new(crate::storage::memory(), "hs.test", Arc::new(ManualClock::new(1_000)))
    }

    #[tokio::test]
    async fn register_login_and_tokens() {
        let accounts = service();
        let (id, session) =
            accounts.register(Some("alice"), "pw", DeviceRequest::default(), true).await.expect("registered");
        assert_eq!(id.as_str(), "@alice:hs.test");
        let session = session.expect("logged in");
        assert_eq!(accounts.authenticate(&session.access_token).await.expect("valid").user_id, id);
        let err = accounts.register(Some("alice"), "pw", DeviceRequest::default(), true).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UserInUse);
        let err = accounts.login(&id, "wrong", DeviceRequest::default()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        let second = accounts.login(&id, "pw", DeviceRequest::default()).await.expect("login");
        accounts.logout(&session.device).await.expect("logout");
        assert_eq!(accounts.authenticate(&session.access_token).await.unwrap_err().kind(), ErrorKind::UnknownToken);
        assert!(accounts.authenticate(&second.access_token).await.is_ok());
        accounts.logout_all(&id).await.expect("logout all");
        assert!(accounts.authenticate(&second.access_token).await.is_err());
    }

    #[tokio::test]
    async fn relogin_with_a_device_id_replaces_its_token() {
        let accounts = service();
        let (id, _) = accounts.register(Some("bob"), "pw", DeviceRequest::default(), false).await.expect("registered");
        let req = DeviceRequest { device_id: Some("PHONE".into()), display_name: None };
        let first = accounts.login(&id, "pw", req.clone()).await.expect("login");
        let second = accounts.login(&id, "pw", req).await.expect("login");
        assert_eq!(second.device.device_id, "PHONE");
        assert!(accounts.authenticate(&first.access_token).await.is_err());
        assert!(accounts.authenticate(&second.access_token).await.is_ok());
    }

    #[test]
    fn tokens_are_stored_hashed() {
        let t = new_token();
        assert!(t.starts_with("tdg_") && t.len() > 40);
        assert_eq!(hash_token(&t).len(), 64);
        assert_ne!(hash_token(&t), t);
    }
}

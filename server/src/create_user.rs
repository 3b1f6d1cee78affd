//! `tidings create-user`: add an account straight to the database, also while the
//! server runs (SQLite in WAL mode with a busy timeout; the server caches no users).

use std::io::Read;
use std::path::PathBuf;

use tidings_core::accounts::create_user_blocking;
use tidings_core::storage::Db;

use crate::config::Config;

/// Where the password comes from.
#[derive(Debug)]
pub enum PasswordSource {
    /// Given on the command line.
    Literal(String),
    /// Read from a file, or standard input for `-`.
    File(PathBuf),
}

fn read_password(source: PasswordSource) -> Result<String, String> {
    let mut text = match source {
        PasswordSource::Literal(pw) => return Ok(pw),
        PasswordSource::File(path) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            s
        }
        PasswordSource::File(path) => {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read password file {}: {e}", path.display()))?
        }
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Create the user; the error is the one-line reason for the command line.
pub fn create_user(config: &Config, localpart: &str, password: PasswordSource, admin: bool) -> Result<String, String> {
    let password = read_password(password)?;
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    crate::config::create_data_dir(&config.data_dir)?;
    let db = Db::open(&config.data_dir.join("tidings.sqlite")).map_err(|e| e.to_string())?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let user = create_user_blocking(&db, &config.server_name, localpart, &password, admin, now).map_err(|e| match e
        .kind()
    {
        tidings_core::ErrorKind::Unknown => e.to_string(),
        _ => e.message().to_owned(),
    })?;
    Ok(user.to_string())
}

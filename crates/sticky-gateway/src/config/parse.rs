//! Text forms shared by the file and the command line: durations,
//! addresses, failover names, cookie names and `--backend NAME=HOST:PORT`.

use std::net::SocketAddr;
use std::time::Duration;

use tower_sticky::FailoverPolicy;

use super::validate::one_of;
use super::{BackendConfig, ConfigError};

/// Parses `250ms`, `10s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "invalid duration {text:?}, expected e.g. \"500ms\", \"10s\", \"5m\", \"2h\", \"1d\""
        )
    })?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration {text:?}, expected a unit of ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

/// Checks `HOST:PORT` (host a name or an IP literal, `[v6]` in brackets),
/// optionally after `https://` (TLS to the backend) or `http://`.
pub fn check_address(full: &str) -> Result<(), String> {
    let (tls, text) = crate::tls::backends::split_scheme(full);
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || {
        if tls {
            format!("invalid backend address {full:?}, expected https://HOST:PORT")
        } else {
            format!("invalid socket address {full:?}, expected HOST:PORT")
        }
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let ok_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok_host {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Parses a failover policy name.
pub fn parse_failover(field: &str, v: &str) -> Result<FailoverPolicy, ConfigError> {
    one_of(
        field,
        v,
        &[
            ("redistribute", FailoverPolicy::Redistribute),
            ("temporary", FailoverPolicy::Temporary),
            ("strict", FailoverPolicy::Strict),
        ],
    )
}

/// Checks a cookie name (an RFC 6265 token).
pub fn check_token_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("invalid cookie name {name:?}"),
        ))
    }
}

/// Parses one `--backend NAME=HOST:PORT` (or `NAME=https://HOST:PORT`).
pub fn parse_backend_flag(v: &str) -> Result<BackendConfig, String> {
    let (name, address) = v
        .split_once('=')
        .ok_or_else(|| format!("{v:?} is not NAME=HOST:PORT"))?;
    if name.is_empty() {
        return Err(format!("{v:?} has an empty NAME"));
    }
    check_address(address)?;
    Ok(BackendConfig {
        name: name.into(),
        address: address.into(),
        weight: 1,
    })
}

//! The README's Rust receiver example, compiled and run by the webhook
//! tests (which also check that the README still shows this very code).

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub fn verify(secret: &str, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let Some(Ok(key)) = secret.strip_prefix("whsec_").map(|k| B64.decode(k)) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if !timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= 300)
    {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| B64.decode(s).ok())
        .any(|signature| mac.clone().verify_slice(&signature).is_ok())
}

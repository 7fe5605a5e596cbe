//! HTTP digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760), server side, as pure functions:
//! the HA1 an agents file stores, the challenge a 401 carries, the credentials an Authorization header holds, the
//! response they must carry, and nonces that say when they were issued and that only this process can mint.
//!
//! No I/O and no clock: the time is an argument, the randomness (a nonce's salt, the process's secret) too.
//! Which nonce-counts were already used, and what to answer, is the registrar's business.

use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm knappval offers (RFC 8760 §2: SHA-256 for phones that have it, MD5 for the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=` (RFC 7616 §3.3 spells SHA-256 with the hyphen).
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Reads `MD5` or `SHA-256` in any case; `SHA256` too, as some phones write it.
    pub fn parse(token: &str) -> Option<Algorithm> {
        let token = token.trim();
        if token.eq_ignore_ascii_case("md5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("sha-256") || token.eq_ignore_ascii_case("sha256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Length of a digest in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// H(data) in lowercase hex.
    pub fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// Parses a comma-separated list such as `sha-256,md5` (the `--digest` flag), preferred first, no repeats.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let mut algorithms = Vec::new();
    for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let algorithm = Algorithm::parse(token)
            .ok_or_else(|| format!("unknown digest algorithm {token:?}: use md5 or sha-256"))?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err("no digest algorithm given: use md5, sha-256, or both (sha-256,md5)".into());
    }
    Ok(algorithms)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// HA1 = H(username:realm:password), what the agents file stores instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(&format!("{username}:{realm}:{password}"))
}

/// The `request-digest` a client must send (RFC 7616 §3.4.1): with qop=auth
/// H(HA1:nonce:nc:cnonce:auth:HA2), without qop (RFC 2069 clients) H(HA1:nonce:HA2); HA2 = H(method:uri).
pub fn request_digest(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => {
            algorithm.hash_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        None => algorithm.hash_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// One `WWW-Authenticate` value: `Digest realm="…", nonce="…", algorithm=…, qop="auth"[, stale=true]`.
pub fn challenge(algorithm: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let mut value = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        algorithm.token()
    );
    if stale {
        value.push_str(", stale=true");
    }
    value
}

/// What a client's `Authorization: Digest …` says, as written (the digest covers the exact text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `(nc, cnonce)` when the client used qop=auth; `nc` as its 8 hex digits.
    pub qop: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("not Digest credentials")]
    NotDigest,
    #[error("Authorization unreadable: {0}")]
    Malformed(String),
    #[error("Authorization has no {0}")]
    Missing(&'static str),
    #[error("algorithm {0:?} is not offered")]
    Algorithm(String),
    #[error("qop {0:?} is not offered (only auth)")]
    Qop(String),
    #[error("nc {0:?} is not 8 hex digits")]
    NonceCount(String),
}

impl Credentials {
    /// Parses an Authorization header value. Parameter names are case-insensitive, values kept as written.
    pub fn parse(value: &str) -> Result<Credentials, CredentialsError> {
        use rsipstack::sip::typed::tokenizers::AuthTokenizer;
        let scheme = value.split_whitespace().next().unwrap_or("");
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(CredentialsError::NotDigest);
        }
        let parsed =
            AuthTokenizer::parse(value).map_err(|e| CredentialsError::Malformed(e.to_string()))?;
        if !parsed.scheme.eq_ignore_ascii_case("digest") {
            return Err(CredentialsError::NotDigest);
        }
        let param = |name: &'static str| {
            parsed
                .params
                .iter()
                .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_string())
        };
        let required = |name: &'static str| param(name).ok_or(CredentialsError::Missing(name));
        let algorithm = match param("algorithm") {
            // RFC 7616 §3.4: no algorithm means MD5.
            None => Algorithm::Md5,
            Some(token) => Algorithm::parse(&token).ok_or(CredentialsError::Algorithm(token))?,
        };
        let qop = match param("qop") {
            None => None,
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let nc = required("nc")?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CredentialsError::NonceCount(nc));
                }
                Some((nc, required("cnonce")?))
            }
            Some(other) => return Err(CredentialsError::Qop(other)),
        };
        Ok(Credentials {
            username: required("username")?,
            realm: required("realm")?,
            nonce: required("nonce")?,
            uri: required("uri")?,
            response: required("response")?,
            algorithm,
            qop,
        })
    }

    /// The nonce-count as a number (qop=auth only).
    pub fn nonce_count(&self) -> Option<u32> {
        let (nc, _) = self.qop.as_ref()?;
        u32::from_str_radix(nc, 16).ok()
    }

    /// Whether `response` is the digest of `method` with this HA1. Compared in constant time.
    pub fn verify(&self, ha1: &str, method: &str) -> bool {
        let expected = request_digest(
            self.algorithm,
            ha1,
            &self.nonce,
            self.qop
                .as_ref()
                .map(|(nc, cnonce)| (nc.as_str(), cnonce.as_str())),
            method,
            &self.uri,
        );
        constant_time_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104): a dozen lines, so no crate for it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// What a nonce a client sent back is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Minted here and still within its lifetime; it expires at the instant given.
    Fresh { expires_at: Instant },
    /// Minted here, but too old: the client should retry with a new one (stale=true).
    Stale,
    /// Not minted by this process (forged, garbled, or from before a restart).
    Foreign,
}

/// Mints and checks nonces without remembering them: a nonce is the time it was minted (ms since `epoch`), a
/// salt, and an HMAC of both under a secret that never leaves the process. So a nonce cannot be forged or
/// back-dated, and the registrar needs to remember only the nonces a client authenticated with (for their
/// nonce-counts), not every challenge it sent out: a flood of unauthenticated REGISTERs costs no memory.
pub struct NonceKey {
    secret: [u8; 32],
    epoch: Instant,
}

const NONCE_TAG: usize = 16;

impl NonceKey {
    pub fn new(secret: [u8; 32], epoch: Instant) -> NonceKey {
        NonceKey { secret, epoch }
    }

    /// A nonce minted at `now`: 64 hex digits.
    pub fn mint(&self, now: Instant, salt: u64) -> String {
        let millis = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&millis.to_be_bytes());
        payload[8..].copy_from_slice(&salt.to_be_bytes());
        let tag = hmac_sha256(&self.secret, &payload);
        format!("{}{}", hex(&payload), hex(&tag[..NONCE_TAG]))
    }

    /// Whether `nonce` is one of ours, and whether it is younger than `lifetime` at `now`.
    pub fn check(&self, nonce: &str, now: Instant, lifetime: Duration) -> NonceCheck {
        let Some(bytes) = unhex(nonce).filter(|b| b.len() == 16 + NONCE_TAG) else {
            return NonceCheck::Foreign;
        };
        let (payload, tag) = bytes.split_at(16);
        if !constant_time_eq(&hmac_sha256(&self.secret, payload)[..NONCE_TAG], tag) {
            return NonceCheck::Foreign;
        }
        let mut millis = [0u8; 8];
        millis.copy_from_slice(&payload[..8]);
        let minted = self.epoch + Duration::from_millis(u64::from_be_bytes(millis));
        if minted > now {
            return NonceCheck::Foreign;
        }
        if now.duration_since(minted) >= lifetime {
            return NonceCheck::Stale;
        }
        NonceCheck::Fresh {
            expires_at: minted + lifetime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_md5_example() {
        // RFC 2617 §3.5.
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let response = request_digest(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc_7616_md5_and_sha256_examples() {
        // RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let digest = |algorithm| {
            let ha1 = ha1(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
            );
            request_digest(
                algorithm,
                &ha1,
                nonce,
                Some(("00000001", cnonce)),
                "GET",
                "/dir/index.html",
            )
        };
        assert_eq!(digest(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            digest(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc_2069_digest_without_qop() {
        // RFC 2069 §2.4's example (the spec's printed response is known to be wrong; this is the errata value
        // every implementation computes).
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "CircleOfLife",
        );
        assert_eq!(
            request_digest(
                Algorithm::Md5,
                &ha1,
                "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                None,
                "GET",
                "/dir/index.html"
            ),
            "1949323746fe6a43ef61f9606e7febea"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2, and case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn credentials_parse_and_verify() {
        let ha1 = ha1(Algorithm::Sha256, "it-anna", "knappval", "hemligt");
        let response = request_digest(
            Algorithm::Sha256,
            &ha1,
            "abc",
            Some(("0000000a", "xyz")),
            "REGISTER",
            "sip:127.0.0.1:5060",
        );
        let header = format!(
            "Digest username=\"it-anna\",realm=\"knappval\", nonce=\"abc\", uri=\"sip:127.0.0.1:5060\", \
             response=\"{}\", algorithm=SHA-256, qop=auth, NC=0000000a, cnonce=\"xyz\"",
            response.to_uppercase()
        );
        let credentials = Credentials::parse(&header).unwrap();
        assert_eq!(credentials.algorithm, Algorithm::Sha256);
        assert_eq!(credentials.nonce_count(), Some(10));
        assert!(credentials.verify(&ha1, "REGISTER"));
        assert!(!credentials.verify(&ha1, "INVITE"));
        let other = super::ha1(Algorithm::Sha256, "it-anna", "knappval", "fel");
        assert!(!credentials.verify(&other, "REGISTER"));
    }

    #[test]
    fn credentials_refuse_what_was_not_offered() {
        let base = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"0\"";
        assert_eq!(
            Credentials::parse(base).unwrap().algorithm,
            Algorithm::Md5,
            "no algorithm means MD5"
        );
        assert!(matches!(
            Credentials::parse(&format!("{base}, algorithm=SHA-512-256")),
            Err(CredentialsError::Algorithm(_))
        ));
        assert!(matches!(
            Credentials::parse(&format!("{base}, qop=auth-int, nc=00000001, cnonce=\"c\"")),
            Err(CredentialsError::Qop(_))
        ));
        assert!(matches!(
            Credentials::parse(&format!("{base}, qop=auth, nc=1, cnonce=\"c\"")),
            Err(CredentialsError::NonceCount(_))
        ));
        assert!(matches!(
            Credentials::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
            Err(CredentialsError::NotDigest)
        ));
        assert!(matches!(
            Credentials::parse("Digest realm=\"r\""),
            Err(CredentialsError::Missing(_))
        ));
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let epoch = Instant::now();
        let key = NonceKey::new([7; 32], epoch);
        let lifetime = Duration::from_secs(300);
        let minted_at = epoch + Duration::from_secs(10);
        let nonce = key.mint(minted_at, 42);
        assert_eq!(nonce.len(), 64);
        assert_eq!(
            key.check(&nonce, minted_at + Duration::from_secs(299), lifetime),
            NonceCheck::Fresh {
                expires_at: minted_at + lifetime
            }
        );
        assert_eq!(
            key.check(&nonce, minted_at + lifetime, lifetime),
            NonceCheck::Stale
        );
        // Another process's key (or ours before a restart) does not accept it.
        let other = NonceKey::new([8; 32], epoch);
        assert_eq!(
            other.check(&nonce, minted_at, lifetime),
            NonceCheck::Foreign
        );
        // Back-dating: change the timestamp, keep the tag.
        let mut forged = nonce.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(key.check(&forged, minted_at, lifetime), NonceCheck::Foreign);
        for garbage in ["", "xyz", &nonce[..63], "zz".repeat(32).as_str()] {
            assert_eq!(key.check(garbage, minted_at, lifetime), NonceCheck::Foreign);
        }
        // From the future.
        assert_eq!(
            key.check(&nonce, minted_at - Duration::from_secs(1), lifetime),
            NonceCheck::Foreign
        );
    }

    #[test]
    fn algorithm_lists() {
        assert_eq!(
            parse_algorithms("sha-256, MD5,sha256").unwrap(),
            [Algorithm::Sha256, Algorithm::Md5]
        );
        assert!(parse_algorithms("sha1").is_err());
        assert!(parse_algorithms(" , ").is_err());
    }
}

//! The sandbox platform's tokens. Opaque ones (refresh tokens, one-time
//! tokens) are random hex; the session token (`co-auth`) has the vendor's shape: a
//! JWT (`header.payload.signature`, base64url) with the user and an `exp`
//! claim. Nothing verifies the signature; the sandbox finds sessions by the
//! whole token. The shape matters because callers' code meets it, and the
//! service tells an access token sent in place of a refresh token by it.

use time::OffsetDateTime;

/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// A random, URL- and cookie-safe token.
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session token for `email`, expiring at `expires`.
pub fn session_token(email: &str, expires: OffsetDateTime) -> String {
    let payload = serde_json::json!({
        "sub": email,
        "exp": expires.unix_timestamp(),
        "jti": random_token(),
    });
    let signature: [u8; 32] = rand::random();
    format!("{HEADER}.{}.{}", base64url(payload.to_string().as_bytes()), base64url(&signature))
}

/// Base64url without padding, as JWTs write their segments.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for index in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(group >> (18 - 6 * index) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_4648_vectors_without_padding() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
        {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(br#"{"alg":"HS256","typ":"JWT"}"#), HEADER);
    }

    #[test]
    fn a_session_token_has_three_segments_and_differs_each_time() {
        let expires = OffsetDateTime::now_utc();
        let token = session_token("a@b.co", expires);
        assert_eq!(token.split('.').count(), 3);
        assert_ne!(token, session_token("a@b.co", expires));
    }
}

//! Lowercase hex, for trace ids and for outcomes stored as text in Redis.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Bytes as lowercase hex (by table: this runs for every RPC's trace ids).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// Appends `bytes` as lowercase hex to `out`.
pub fn push(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// Bytes of a hex string; pairs that are not hex are skipped (only this
/// service's own `encode` output is ever decoded).
pub fn decode(text: &str) -> Vec<u8> {
    (0..text.len() / 2).filter_map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decoding_reverses_encoding() {
        assert_eq!(super::encode(&[0, 1, 171, 255]), "0001abff");
        assert_eq!(super::decode(&super::encode(&[0, 1, 254, 255])), vec![0, 1, 254, 255]);
    }
}

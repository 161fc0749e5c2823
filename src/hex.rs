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

/// Why a text is not hex. Decoded text comes from a store that can be damaged
/// or written by another version, so a bad digit is refused rather than
/// skipped: skipping would shift every later byte and yield plausible garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// An odd number of digits: the last byte is cut in half.
    OddLength,
    /// The byte at this offset is not a hex digit.
    InvalidDigit { offset: usize },
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HexError::OddLength => f.write_str("hex text has an odd number of digits"),
            HexError::InvalidDigit { offset } => write!(f, "hex text has a non-hex character at offset {offset}"),
        }
    }
}

impl std::error::Error for HexError {}

/// Bytes of a hex string (either case), or why it is not one.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    let value = |offset: usize| match digits[offset] {
        digit @ b'0'..=b'9' => Ok(digit - b'0'),
        digit @ b'a'..=b'f' => Ok(digit - b'a' + 10),
        digit @ b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(HexError::InvalidDigit { offset }),
    };
    (0..digits.len()).step_by(2).map(|offset| Ok((value(offset)? << 4) | value(offset + 1)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::{HexError, decode, encode};

    #[test]
    fn decoding_reverses_encoding() {
        assert_eq!(encode(&[0, 1, 171, 255]), "0001abff");
        assert_eq!(decode(&encode(&[0, 1, 254, 255])), Ok(vec![0, 1, 254, 255]));
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&every_byte)), Ok(every_byte));
        assert_eq!(decode(""), Ok(Vec::new()));
    }

    #[test]
    fn upper_case_digits_decode_like_lower_case_ones() {
        assert_eq!(decode("00ABcdEF"), Ok(vec![0x00, 0xab, 0xcd, 0xef]));
    }

    #[test]
    fn an_odd_number_of_digits_is_refused() {
        assert_eq!(decode("abc"), Err(HexError::OddLength));
        assert_eq!(decode("0"), Err(HexError::OddLength));
    }

    #[test]
    fn a_non_hex_character_is_refused_with_its_offset_instead_of_skipped() {
        assert_eq!(decode("zz00"), Err(HexError::InvalidDigit { offset: 0 }));
        assert_eq!(decode("00g1"), Err(HexError::InvalidDigit { offset: 2 }));
        assert_eq!(decode("000x"), Err(HexError::InvalidDigit { offset: 3 }));
        assert_eq!(decode("0 11"), Err(HexError::InvalidDigit { offset: 1 }));
        assert_eq!(decode("+1"), Err(HexError::InvalidDigit { offset: 0 }), "no sign, as from_str_radix would allow");
    }

    #[test]
    fn multi_byte_characters_are_refused_not_split() {
        // "é" is two bytes, so the length is even but the text is not hex.
        assert_eq!(decode("0é1"), Err(HexError::InvalidDigit { offset: 1 }));
    }
}

//! Which email addresses the vendor takes, judged as a Java/Spring backend
//! typically judges them (Bean Validation's `@Email` plus the dotted domain a
//! mail system needs), not as the gateway does: the two are meant to be able
//! to disagree, so that a gateway letting through what the vendor refuses is
//! caught against the sandbox.

/// An address a `VARCHAR(255)` column holds, as most account tables declare it.
const MAX_ADDRESS: usize = 254;
/// The longest local part mail transfer allows (RFC 5321), which `@Email` enforces.
const MAX_LOCAL_PART: usize = 64;
/// The longest DNS label.
const MAX_LABEL: usize = 63;

/// Whether the vendor would accept `email` as an account's address:
/// `local@domain.tld`, dot-separated atoms on the left, DNS labels on the
/// right with at least one dot, no whitespace, no quoted or bracketed forms.
pub(super) fn vendor_accepts_email(email: &str) -> bool {
    if email.len() > MAX_ADDRESS {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else { return false };
    is_dot_atom(local) && local.len() <= MAX_LOCAL_PART && is_dotted_host(domain)
}

/// `atom(.atom)*`: no leading, trailing or doubled dot.
fn is_dot_atom(local: &str) -> bool {
    local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atom_char))
}

/// The characters an unquoted local part may hold, Unicode letters included
/// (as `@Email` allows them), whitespace and control characters not.
fn is_atom_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
    } else {
        !c.is_whitespace() && !c.is_control()
    }
}

/// A host name with a dot: labels of letters, digits and inner hyphens.
fn is_dotted_host(domain: &str) -> bool {
    domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_accepted() {
        for email in [
            "test@match-trade.com",
            "first.last@example.co.uk",
            "user+tag@sub.example.org",
            "o'brien@example.ie",
            "x@b.co",
            "jürgen@müller.de",
        ] {
            assert!(vendor_accepts_email(email), "{email}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for email in [
            "",
            "plain",
            "@example.com",
            "user@",
            "user@localhost",
            "user@@example.com",
            "a@b@example.com",
            "with space@example.com",
            "user@exa mple.com",
            "tab\t@example.com",
            ".lead@example.com",
            "trail.@example.com",
            "dou..ble@example.com",
            "\"quoted\"@example.com",
            "(comment)user@example.com",
            "user@[127.0.0.1]",
            "user@-dash.com",
            "user@dash-.com",
            "user@example..com",
            "user@example.com.",
            "user@exa_mple.com",
        ] {
            assert!(!vendor_accepts_email(email), "{email:?}");
        }
    }

    #[test]
    fn lengths_are_bounded_like_the_vendor_columns() {
        let local = "a".repeat(MAX_LOCAL_PART);
        assert!(vendor_accepts_email(&format!("{local}@example.com")));
        assert!(!vendor_accepts_email(&format!("{local}a@example.com")));
        let label = "b".repeat(MAX_LABEL);
        assert!(vendor_accepts_email(&format!("a@{label}.com")));
        assert!(!vendor_accepts_email(&format!("a@{label}b.com")));
        let long_domain = vec!["c".repeat(60); 4].join(".");
        let at_limit = format!("{}@{long_domain}.co", "a".repeat(MAX_ADDRESS - long_domain.len() - 4));
        assert_eq!(at_limit.len(), MAX_ADDRESS);
        assert!(vendor_accepts_email(&at_limit));
        assert!(!vendor_accepts_email(&format!("a{at_limit}")));
    }
}

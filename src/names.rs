//! Validation of user-chosen names (VMs, users, checkpoint labels). Names become keys and
//! directory names, so they are checked here, at the edge, before anything else sees them.

use thiserror::Error;

/// Longest VM or user name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest checkpoint label.
pub const MAX_LABEL_LEN: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, name: String },
    #[error("{kind} name {name:?} may only contain lowercase letters, digits and '-'")]
    BadChar { kind: &'static str, name: String },
    #[error("{kind} name {name:?} must not start with '-'")]
    LeadingDash { kind: &'static str, name: String },
    #[error("label is longer than {MAX_LABEL_LEN} characters or contains control characters")]
    BadLabel,
}

/// A user's string for an error message: at most 40 characters, "…" when cut, so that an
/// enormous input never becomes an enormous message (or a gRPC header no client can read).
pub fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Checks a name against the rule: 1-63 characters of `[a-z0-9-]`, not starting with `-`.
/// `kind` ("VM", "user") names the thing in the error message.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            name: shorten(name),
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::BadChar {
            kind,
            name: name.to_string(),
        });
    }
    if name.starts_with('-') {
        return Err(NameError::LeadingDash {
            kind,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks a free-text checkpoint label: printable, at most 128 characters.
pub fn validate_label(label: &str) -> Result<(), NameError> {
    if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        return Err(NameError::BadLabel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in ["a", "my-vm", "vm-1", "0", "a-", &"x".repeat(63)] {
            assert_eq!(validate_name("VM", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_invalid_names_with_the_rule() {
        assert!(matches!(
            validate_name("VM", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_name("VM", &"x".repeat(64)),
            Err(NameError::TooLong { .. })
        ));
        for n in ["My-VM", "a_b", "a.b", "../etc", "a/b", "é", "a b"] {
            assert!(
                matches!(validate_name("VM", n), Err(NameError::BadChar { .. })),
                "{n}"
            );
        }
        assert!(matches!(
            validate_name("VM", "-x"),
            Err(NameError::LeadingDash { .. })
        ));
        let msg = validate_name("VM", "Bad").unwrap_err().to_string();
        assert!(msg.contains("lowercase letters, digits and '-'"), "{msg}");
    }

    #[test]
    fn labels() {
        assert_eq!(validate_label("before upgrade #2"), Ok(()));
        assert_eq!(validate_label("a\nb"), Err(NameError::BadLabel));
        assert_eq!(validate_label(&"x".repeat(129)), Err(NameError::BadLabel));
    }
}

//! The key file: one base64 key per line, the sealing key first, older keys
//! after it (still accepted for opening). Rotation: put a new line first,
//! reload, drop the old line after the longest session lifetime.

use std::path::Path;

use tower_sticky::token::{Key, KeyRing};

/// Reads a key file, naming the line that is wrong.
pub fn load(path: &Path) -> Result<KeyRing, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("key_file: cannot read {}: {e}", path.display()))?;
    KeyRing::from_lines(&text).map_err(|e| match e.line() {
        Some(line) => format!("key_file: {} line {line}: {}", path.display(), e.kind()),
        None => format!("key_file: {}: {}", path.display(), e.kind()),
    })
}

/// The key ring for a run: the file's, or a generated key with a warning
/// that sessions will neither survive a restart nor be shared by replicas.
pub fn load_or_generate(path: Option<&Path>) -> Result<KeyRing, String> {
    match path {
        Some(p) => load(p),
        None => {
            tracing::warn!(
                "no --key-file given: using a generated key, so sessions will neither survive a \
                 restart nor be shared by replicas (create one with `sticky-gateway keygen > keys`)"
            );
            Ok(KeyRing::generate())
        }
    }
}

/// A new random key as one line of text (what `sticky-gateway keygen` prints).
pub fn keygen() -> String {
    Key::generate().to_base64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("sticky-keys-{}", std::process::id()));
        std::fs::write(&dir, format!("# current\n{}\n{}\n", keygen(), keygen())).unwrap();
        assert_eq!(load(&dir).unwrap().keys().len(), 2);
        std::fs::write(&dir, format!("{}\nnot-a-key\n", keygen())).unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        std::fs::remove_file(&dir).unwrap();
    }
}

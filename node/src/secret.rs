//! Tokens and random identifiers, from the operating system's random source; and directories
//! and files that only their owner may read (data, logs, the token file).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable on every supported system");
    bytes
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

/// A fresh admin token: 128 bits, hex.
pub fn new_token() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the inputs differ, so a remote guesser learns
/// nothing from response times.
pub fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    // The whole length difference counts (a byte of it would miss multiples of 256).
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0 && !expected.is_empty()
}

/// Creates `dir` (and missing parents) readable by its owner only, and makes an existing one so.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// Opens `path` for appending, creating it readable by its owner only.
pub fn private_file(path: &Path, append: bool) -> anyhow::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes the token where the CLI on this machine finds it (only its owner can read it).
pub fn write_token_file(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut file = private_file(path, false)?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compare_exactly() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token("", ""), "an empty token never authorises");
        assert!(!same_token(&a[..31], &a));
        // Lengths that differ by a multiple of 256, with the longer one's tail all zero bytes.
        let padded = format!("{a}{}", "\0".repeat(256));
        assert!(!same_token(&padded, &a));
        assert!(!same_token(&a, &padded));
    }
}

//! Reading inputs and writing outputs. Files that may hold key material are written with mode
//! 0600 (an existing file is narrowed to 0600 before it is written).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::CliError;

/// Writes `bytes` to `path`, readable and writable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let err = CliError::file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(CliError::file(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.set_len(0))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(err)
}

/// The bytes of `path`, or of standard input for `-`.
pub(crate) fn read_input(path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let mut out = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut out)
            .map_err(CliError::file(path))?;
    } else {
        let mut f = std::fs::File::open(path).map_err(CliError::file(path))?;
        f.read_to_end(&mut out).map_err(CliError::file(path))?;
    }
    Ok(out)
}

/// Writes `bytes` to `path` (mode 0600), or to standard output for `-`.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(CliError::file(path))
    } else {
        write_private(path, bytes)
    }
}

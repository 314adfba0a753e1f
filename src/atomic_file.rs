//! Output files appear whole or not at all: contents go to a temporary file beside the target,
//! which is renamed over it only once complete, so a failed run never leaves a half-written file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Creates `path` with the bytes `write` produces, atomically; on any error nothing is left.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let temporary = path.with_file_name(format!(".{}.{}.partial", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = BufWriter::new(File::create(&temporary)?);
        write(&mut file)?;
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

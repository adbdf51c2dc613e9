//! The rejects file: one CSV row (`file,line,event_id,error`) per record
//! that was not stored, whether refused here (unreadable, invalid) or by
//! the server (`rejected[]` of its answer).
//!
//! Rows are appended only for the batches of the checkpoint's done prefix,
//! in batch order and, within a batch, by file and line; so with the
//! truncation on resume (`checkpoint.rs`) each reject is listed exactly
//! once however often the run was killed.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::input::Reject;

const HEADER: &[u8] = b"file,line,event_id,error\n";

#[derive(Debug)]
pub struct RejectsFile {
    path: PathBuf,
    file: File,
    len: u64,
}

impl RejectsFile {
    /// A new file with only the header (an existing one is replaced).
    pub fn create(path: &Path) -> std::io::Result<RejectsFile> {
        let mut file = File::create(path)?;
        file.write_all(HEADER)?;
        Ok(RejectsFile {
            path: path.to_owned(),
            file,
            len: HEADER.len() as u64,
        })
    }

    /// The file of an interrupted run, cut back to `len` bytes (what the
    /// checkpoint recorded): rows written after it belong to batches that
    /// are sent again.
    pub fn resume(path: &Path, len: u64) -> std::io::Result<RejectsFile> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(std::io::Error::other(format!(
                "{} has {actual} bytes but the checkpoint recorded {len}: it was changed since; delete the checkpoint to start over",
                path.display()
            )));
        }
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        Ok(RejectsFile {
            path: path.to_owned(),
            file,
            len,
        })
    }

    /// Appends the rows of `rejects` (sorted by file and line); `files`
    /// names the inputs by index.
    pub fn append(&mut self, rejects: &mut [Reject], files: &[String]) -> std::io::Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        rejects.sort_by_key(|r| r.origin);
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(rejects.len() * 96));
        for r in rejects.iter() {
            w.write_record([
                files[r.origin.file].as_str(),
                &r.origin.line.to_string(),
                r.event_id.as_deref().unwrap_or(""),
                &r.error,
            ])
            .map_err(std::io::Error::other)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.file.write_all(&bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes what was appended durable; the length a checkpoint may record.
    pub fn sync(&mut self) -> std::io::Result<u64> {
        self.file.sync_data()?;
        Ok(self.len)
    }

    /// The bytes appended so far (durable only after a sync).
    pub fn written(&self) -> u64 {
        self.len
    }

    /// A handle that syncs the same file from another thread: a sync made
    /// after [`RejectsFile::written`] was read makes that length durable.
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Origin;

    fn reject(file: usize, line: u64, id: Option<&str>, error: &str) -> Reject {
        Reject {
            origin: Origin { file, line },
            event_id: id.map(str::to_owned),
            error: error.into(),
        }
    }

    #[test]
    fn rows_are_sorted_quoted_and_cut_back_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.csv");
        let files = vec!["a.ndjson".to_owned(), "b, \"c\".csv".to_owned()];
        let mut r = RejectsFile::create(&path).unwrap();
        r.append(
            &mut [
                reject(1, 2, None, "record: bad"),
                reject(0, 9, Some("e9"), "channel: unknown value \"myspace\""),
            ],
            &files,
        )
        .unwrap();
        let len = r.sync().unwrap();
        r.append(&mut [reject(0, 10, Some("e10"), "x")], &files)
            .unwrap();
        drop(r);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "file,line,event_id,error\n\
             a.ndjson,9,e9,\"channel: unknown value \"\"myspace\"\"\"\n\
             \"b, \"\"c\"\".csv\",2,,record: bad\n\
             a.ndjson,10,e10,x\n"
        );
        let mut r = RejectsFile::resume(&path, len).unwrap();
        r.append(&mut [reject(0, 10, Some("e10"), "x")], &files)
            .unwrap();
        drop(r);
        let again = std::fs::read_to_string(&path).unwrap();
        assert_eq!(again, text);
        assert!(RejectsFile::resume(&path, 10_000).is_err());
    }
}

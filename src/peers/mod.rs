//! The outbound mailer's known-peers store: trust on first use, like ssh's
//! `known_hosts`, per MX host and per destination domain. One line per pin:
//!
//! ```text
//! # blackpony known peers: host|domain name fingerprint suite first-seen last-seen
//! host mx1.example.org SHA256:3q2+7w... RSA-BLOWFISH 2026-11-28 2026-11-28
//! domain example.org SHA256:3q2+7w... RSA-BLOWFISH 2026-11-28 2026-11-28
//! ```
//!
//! A `host` line pins the one key an MX host (or `[address]`) first showed
//! encrypted. A destination domain (sendmail's `$h`) has a `domain` line per
//! key seen for it; any such line means it was seen encrypted, so every MX
//! of it must show one of those keys: an attacker who blocks the pinned MX
//! gains nothing at the next one. Names are lowercased without a trailing
//! dot (`[1.2.3.4]` stays as is); fingerprint and suite are opaque printable
//! tokens; the dates are the UTC days the key was first seen and last used.
//! `#` and blank lines are kept on rewrite, so an administrator can annotate
//! pins. A file of the first format (host pins only, no kind column) is read
//! as is and rewritten in the current one by the first update.
//!
//! Many mailer processes run at once and any of them can die at any moment,
//! so every update:
//!
//! 1. takes an exclusive `flock` on `<path>.lock` (0600, never deleted:
//!    deleting it would let two processes lock two different files);
//! 2. re-reads the file under the lock, so no concurrent update is lost;
//! 3. writes `<path>.tmp.<pid>` (0600) and fsyncs it;
//! 4. renames it over `<path>` and fsyncs the directory;
//! 5. unlocks (by closing the lock file).
//!
//! Readers take a shared lock, so the file is always wholly the old or the
//! new version. Temp files are created only under the exclusive lock, so
//! one found under it is a killed writer's leftover, and is removed.
//!
//! A malformed line is an error naming the line, never skipped: dropping a
//! pin would silently downgrade that peer to "unknown". Unix only (file
//! modes, `flock`, directory fsync). `format` holds the text of the file
//! ([`parse`], [`serialize`]) and the errors.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

mod format;

use crate::clock::today;
use crate::keys::{beside, parent_dir};
use format::{check_token, normalize_host, read_lines, HEADER};
pub use format::{
    parse, serialize, Line, PeerRecord, PeersError, PinKind, MAX_FILE_BYTES, MAX_LINE_BYTES,
    MAX_TOKEN,
};

/// Mode of every file we create: pins are not secret, but who we talk to is.
const FILE_MODE: u32 = 0o600;

/// What [`KnownPeers::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The host was not known; it is now pinned.
    New,
    /// Same fingerprint as pinned; `last_seen` (and `suite`) updated.
    Unchanged,
    /// The pinned fingerprint was `old`; it has been replaced.
    KeyChanged { old: String },
}

/// What the store says of one delivery's destination and MX host: the input
/// of [`crate::policy::decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The MX host's pin.
    pub host: Option<PeerRecord>,
    /// Every key seen for the destination domain; empty if it was never
    /// seen encrypted.
    pub domain: Vec<PeerRecord>,
}

/// What [`KnownPeers::record_delivery`] did with one pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Not known before; now pinned to this key.
    New,
    /// Already pinned to this key; `last_seen` refreshed.
    Unchanged,
    /// Pinned to other keys, which stay; this key was not recorded.
    Kept,
    /// Not pinned before, and still not: the key contradicts the other pin
    /// (a domain's MX showing a key not of the domain, or the reverse).
    Untrusted,
}

/// What [`KnownPeers::forget`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Whether there was a host pin of that name.
    pub host: bool,
    /// How many keys of a domain of that name.
    pub domain_keys: usize,
}

impl Forgotten {
    pub fn any(&self) -> bool {
        self.host || self.domain_keys > 0
    }
}

/// The known-peers file at one path. Holds no state: every call reads the
/// file afresh, so many processes can share it.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    path: PathBuf,
}

impl KnownPeers {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownPeers { path: path.into() }
    }

    /// The file (the v2 certificate cache lives beside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin of host `host` (any case, trailing dot ignored). A missing
    /// file is an empty store.
    pub fn lookup(&self, host: &str) -> Result<Option<PeerRecord>, PeersError> {
        Ok(self.known(host, host)?.host)
    }

    /// The pins of destination `domain` and of MX host `host`, from one read.
    pub fn known(&self, domain: &str, host: &str) -> Result<Known, PeersError> {
        let domain = normalize_host(domain)?;
        let host = normalize_host(host)?;
        let mut known = Known::default();
        for r in self.list()? {
            match r.kind {
                PinKind::Host if r.name == host => known.host = Some(r),
                PinKind::Domain if r.name == domain => known.domain.push(r),
                _ => {}
            }
        }
        Ok(known)
    }

    /// Every pin (hosts and domains), in file order. A missing file is an
    /// empty store.
    pub fn list(&self) -> Result<Vec<PeerRecord>, PeersError> {
        let Some(_lock) = self.lock(false)? else {
            // No directory to hold the lock file: there is no store either.
            return Ok(Vec::new());
        };
        let lines = read_lines(&self.path)?.into_iter();
        Ok(lines
            .filter_map(|l| match l {
                Line::Peer(r) => Some(r),
                Line::Other(_) => None,
            })
            .collect())
    }

    /// Pins host `host` to `fingerprint` (replacing another key, with a new
    /// `first_seen`), or refreshes its `last_seen`: a deliberate re-pin.
    /// Deliveries use [`KnownPeers::record_delivery`], which never replaces.
    pub fn record(
        &self,
        host: &str,
        fingerprint: &str,
        suite: &str,
    ) -> Result<RecordOutcome, PeersError> {
        let host = normalize_host(host)?;
        check_token("fingerprint", fingerprint)?;
        check_token("suite", suite)?;
        let today = today();
        self.update(|lines| {
            let existing = lines.iter_mut().find_map(|l| match l {
                Line::Peer(r) if r.kind == PinKind::Host && r.name == host => Some(r),
                _ => None,
            });
            match existing {
                None => {
                    lines.push(new_pin(PinKind::Host, &host, fingerprint, suite, &today));
                    (RecordOutcome::New, true)
                }
                Some(r) if r.fingerprint == fingerprint => {
                    (RecordOutcome::Unchanged, refresh(r, suite, &today))
                }
                Some(r) => {
                    let old = std::mem::replace(&mut r.fingerprint, fingerprint.to_owned());
                    refresh(r, suite, &today);
                    r.first_seen = today.clone();
                    (RecordOutcome::KeyChanged { old }, true)
                }
            }
        })
    }

    /// After a message was accepted over a session encrypted with
    /// `fingerprint`: pins the host and the domain on first contact, and
    /// refreshes `last_seen` of the pins that hold this key, in one atomic
    /// update. A key other than the pinned one is never recorded (the
    /// policy let it through with a warning, under `may`): the old pins stay
    /// until `--forget`, so a one-time attacker cannot replace them.
    pub fn record_delivery(
        &self,
        domain: &str,
        host: &str,
        fingerprint: &str,
        suite: &str,
    ) -> Result<(Pinned, Pinned), PeersError> {
        let domain = normalize_host(domain)?;
        let host = normalize_host(host)?;
        check_token("fingerprint", fingerprint)?;
        check_token("suite", suite)?;
        let today = today();
        self.update(|lines| {
            // Which lines hold this key for (kind, name), and whether the
            // name has other keys.
            let state = |lines: &[Line], kind: PinKind, name: &str| {
                let pins = || {
                    lines.iter().enumerate().filter_map(|(i, l)| match l {
                        Line::Peer(r) if r.kind == kind && r.name == name => Some((i, r)),
                        _ => None,
                    })
                };
                let same = pins().find(|(_, r)| r.fingerprint == fingerprint);
                (
                    same.map(|(i, _)| i),
                    pins().any(|(_, r)| r.fingerprint != fingerprint),
                )
            };
            let both = [
                (PinKind::Domain, domain.as_str()),
                (PinKind::Host, host.as_str()),
            ]
            .map(|(kind, name)| (kind, name, state(lines, kind, name)));
            // A key that contradicts either pin is recorded nowhere: pinning
            // an attacker's key to the other name would turn the real key
            // into a "change" there.
            let conflict = both
                .iter()
                .any(|(_, _, (same, others))| same.is_none() && *others);
            let mut dirty = false;
            let outcome = both.map(|(kind, name, (same, others))| match same {
                Some(i) => {
                    if let Line::Peer(r) = &mut lines[i] {
                        dirty |= refresh(r, suite, &today);
                    }
                    Pinned::Unchanged
                }
                None if others => Pinned::Kept,
                None if conflict => Pinned::Untrusted,
                None => {
                    lines.push(new_pin(kind, name, fingerprint, suite, &today));
                    dirty = true;
                    Pinned::New
                }
            });
            let [domain_outcome, host_outcome] = outcome;
            ((domain_outcome, host_outcome), dirty)
        })
    }

    /// Moves the pins of host `host` and domain `domain` that hold `old` to
    /// `new` (first-seen restarts today): a rotation that `old` signed
    /// ([`crate::policy::follows_rotation`]). A domain that already has
    /// `new` just loses `old`. Returns whether anything moved.
    pub fn move_pin(
        &self,
        domain: &str,
        host: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, PeersError> {
        let (domain, host) = (normalize_host(domain)?, normalize_host(host)?);
        check_token("fingerprint", new)?;
        let today = today();
        self.update(|lines| {
            let ours = |r: &PeerRecord| match r.kind {
                PinKind::Host => r.name == host,
                PinKind::Domain => r.name == domain,
            };
            let has_new = lines.iter().any(|l| {
                matches!(l, Line::Peer(r) if r.kind == PinKind::Domain && ours(r) && r.fingerprint == new)
            });
            let before = lines.len();
            lines.retain(|l| {
                !matches!(l, Line::Peer(r) if has_new && r.kind == PinKind::Domain && ours(r) && r.fingerprint == old)
            });
            let mut moved = lines.len() != before;
            for l in lines.iter_mut() {
                if let Line::Peer(r) = l {
                    if ours(r) && r.fingerprint == old {
                        r.fingerprint = new.to_owned();
                        r.first_seen = today.clone();
                        r.last_seen = today.clone();
                        moved = true;
                    }
                }
            }
            (moved, moved)
        })
    }

    /// Removes every pin named `name`: the host pin of that name and all
    /// keys of the domain of that name (`example.org` is a domain,
    /// `mx1.example.org` a host; a name that is both loses both).
    pub fn forget(&self, name: &str) -> Result<Forgotten, PeersError> {
        let name = normalize_host(name)?;
        self.update(|lines| {
            let mut gone = Forgotten::default();
            lines.retain(|l| match l {
                Line::Peer(r) if r.name == name => {
                    match r.kind {
                        PinKind::Host => gone.host = true,
                        PinKind::Domain => gone.domain_keys += 1,
                    }
                    false
                }
                _ => true,
            });
            (gone, gone.any())
        })
    }

    /// Runs `change` on the current content under the exclusive lock; it
    /// returns its result and whether the file must be rewritten.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Line>) -> (T, bool)) -> Result<T, PeersError> {
        let Some(_lock) = self.lock(true)? else {
            let dir = parent_dir(&self.path);
            let e = io::Error::new(io::ErrorKind::NotFound, "directory does not exist");
            return Err(PeersError::Io(e, dir.to_path_buf()));
        };
        self.remove_stale_temps()?;
        let mut lines = read_lines(&self.path)?;
        let was_empty = lines.is_empty();
        let (result, dirty) = change(&mut lines);
        if dirty {
            if was_empty {
                lines.insert(0, Line::Other(HEADER.to_owned()));
            }
            self.replace(&serialize(&lines))?;
        }
        Ok(result)
        // `_lock` drops here, after the rename and directory fsync.
    }

    /// Opens `<path>.lock` and locks it, shared or exclusive. `None` when
    /// the directory does not exist. The lock is released when the returned
    /// file is closed (flock locks belong to the open file, so two threads of
    /// one process exclude each other too).
    // File::lock and File::lock_shared are stable since Rust 1.89: the
    // crate's rust-version (1.85 when this was written) must be raised.
    #[allow(clippy::incompatible_msrv)]
    fn lock(&self, exclusive: bool) -> Result<Option<File>, PeersError> {
        let path = beside(&self.path, ".lock");
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PeersError::Io(e, path)),
        };
        give_to_dir_owner(&file, &path)?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| PeersError::Io(e, path))?;
        Ok(Some(file))
    }

    /// `<path>.tmp.<pid>`: unique among processes, and the exclusive lock
    /// makes it unique among the threads of one process.
    fn temp_path(&self) -> PathBuf {
        beside(&self.path, &format!(".tmp.{}", std::process::id()))
    }

    /// Removes `<name>.tmp.<digits>` files. Only called under the exclusive
    /// lock, when no writer can be using one.
    fn remove_stale_temps(&self) -> Result<(), PeersError> {
        let Some(name) = self.path.file_name() else {
            return Ok(());
        };
        let prefix = format!("{}.tmp.", name.to_string_lossy());
        let dir = parent_dir(&self.path);
        let entries = fs::read_dir(dir).map_err(|e| PeersError::Io(e, dir.to_path_buf()))?;
        for entry in entries {
            let entry = entry.map_err(|e| PeersError::Io(e, dir.to_path_buf()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_temp = name
                .strip_prefix(&prefix)
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if is_temp {
                let path = entry.path();
                log::warn!("removing {} left by an interrupted update", path.display());
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }

    /// Atomically replaces the file with `content` (steps 3 and 4 above).
    fn replace(&self, content: &[u8]) -> Result<(), PeersError> {
        let tmp = self.temp_path();
        let written = write_temp(&tmp, content).and_then(|()| {
            fs::rename(&tmp, &self.path).map_err(|e| PeersError::Io(e, self.path.clone()))
        });
        if written.is_err() {
            // Best effort: the next writer removes it anyway.
            let _ = fs::remove_file(&tmp);
        }
        written?;
        // The rename is durable only once the directory entry is on disk.
        let dir = parent_dir(&self.path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PeersError::Io(e, dir.to_path_buf()))
    }
}

/// A pin first seen `today`.
fn new_pin(kind: PinKind, name: &str, fingerprint: &str, suite: &str, today: &str) -> Line {
    Line::Peer(PeerRecord {
        kind,
        name: name.to_owned(),
        fingerprint: fingerprint.to_owned(),
        suite: suite.to_owned(),
        first_seen: today.to_owned(),
        last_seen: today.to_owned(),
    })
}

/// Marks `r` used today with `suite`. Most deliveries only do this, so it
/// says whether anything changed: if not, the rewrite (and its two fsyncs)
/// is skipped.
fn refresh(r: &mut PeerRecord, suite: &str, today: &str) -> bool {
    let changed = r.suite != suite || r.last_seen != today;
    r.suite = suite.to_owned();
    r.last_seen = today.to_owned();
    changed
}

/// Removes `path`; one that is already gone is no error.
fn remove_if_present(path: &Path) -> Result<(), PeersError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PeersError::Io(e, path.to_path_buf())),
        _ => Ok(()),
    }
}

/// Creates `tmp` with mode 0600 (never reusing an existing file, whose mode
/// could be wider), writes `content` and fsyncs it.
fn write_temp(tmp: &Path, content: &[u8]) -> Result<(), PeersError> {
    let io_err = |e| PeersError::Io(e, tmp.to_path_buf());
    remove_if_present(tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(tmp)
        .map_err(io_err)?;
    give_to_dir_owner(&file, tmp)?;
    file.write_all(content).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Files of the store belong to the owner of its directory (the mailer's
/// user): when root runs `--forget` or `--list-peers`, a lock or store file
/// it creates must stay usable by the mailer, which does not run as root.
/// Only root can give a file away; anyone else creates it as the owner.
fn give_to_dir_owner(file: &File, path: &Path) -> Result<(), PeersError> {
    use std::os::unix::fs::MetadataExt;
    let io_err = |e| PeersError::Io(e, path.to_path_buf());
    let dir = fs::metadata(parent_dir(path)).map_err(io_err)?;
    let mine = file.metadata().map_err(io_err)?;
    if (mine.uid(), mine.gid()) != (dir.uid(), dir.gid()) && mine.uid() == 0 {
        std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid())).map_err(io_err)?;
    }
    Ok(())
}

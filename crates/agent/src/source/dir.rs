//! A watched directory of manifests as a source.
//!
//! The directory (not its subdirectories) is watched with inotify. A batch of
//! file events, debounced briefly, re-reads only the files named in it, and
//! only objects that changed or vanished become events ([`Index`]). Events
//! naming a symlink or directory (a mounted ConfigMap swapping its `..data`
//! link) or an overflowed event queue rescan the directory, re-reading the
//! files whose size, mtime or inode changed. Where inotify is unavailable,
//! the directory is rescanned every [`POLL_INTERVAL`].
//!
//! The watch asks only for changes (creations, writes, renames, deletions,
//! attributes): not for opens, which the agent's own reads would make one
//! event per file read, 10,000 wake-ups and an overflowed queue for a cold
//! sync of 10,000 files. The events are read by the source's own task from
//! the inotify descriptor, without a thread of their own; the kernel's queue
//! bounds them, and its overflow event makes the next batch rescan.
//!
//! Files are read one document at a time, and each document's changed
//! objects become events before the next document is read
//! ([`super::documents`]): one large file costs one document's memory, not
//! the file's, and the index keeps fingerprints, not objects. The initial
//! listing is `Init` for every kind, the objects as the files give them
//! (kinds interleaved; when files repeat an object the last one's comes
//! last), then `InitDone` for every kind.
//!
//! A file with a document that is not YAML keeps contributing what it last
//! did for the objects not read (a half-written file must not withdraw
//! Services); a file that vanishes withdraws its objects.
//!
//! [`Index`]: super::index::Index

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt as _};
use futures::stream::{self, Stream, StreamExt};
use inotify::{EventMask, EventStream, Inotify, WatchMask};
use kube::runtime::watcher::Event;
use kube_ipvs_controller::StreamConfig;
use tokio::time::Instant;

use super::documents::FileReader;
use super::manifest::{self, FileError, FileSkipReason, Indexes, Keys};
use super::SourceEvent;
use crate::error::Chain;

/// A batch ends when no file event came for this long...
const QUIET: Duration = Duration::from_millis(5);
/// ...or this long while a file is being written (modified, not yet closed).
const QUIET_WRITING: Duration = Duration::from_millis(200);
/// A batch never waits longer than this for its files to settle.
const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);
/// What the directory is watched for: changes to its entries, and the
/// directory itself going away.
const WATCHED: WatchMask = WatchMask::CREATE
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);
/// Bytes read from the inotify descriptor at once (about 100 events).
const EVENT_BUFFER: usize = 4096;

/// The events of the watched directory.
type Changes = EventStream<Vec<u8>>;
/// Rescan interval without inotify, and retry interval for an unreadable
/// directory.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Watches the manifests of `dir`: first `Init`..`InitDone` for each kind
/// with every object (once the directory could be read), then `Apply` and
/// `Delete` as files change. The stream-services ConfigMaps `streams` names
/// are a kind each, with that ConfigMap alone; other ConfigMaps make no
/// event. Files that cannot be used are reported as
/// [`SourceEvent::FileSkipped`]; the stream never ends.
pub fn dir_source(
    dir: PathBuf,
    streams: StreamConfig,
) -> impl Stream<Item = SourceEvent> + Send + 'static {
    stream::unfold(DirWatch::new(dir, streams), |mut watch| async move {
        loop {
            if let Some(event) = watch.pending.pop_front() {
                return Some((event, watch));
            }
            watch.step().await;
        }
    })
}

/// What identifies a version of a file without reading it.
/// A hash of a file's length, modification time and inode: a file whose
/// fingerprint did not change is not read again by a rescan.
type Fingerprint = u64;

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    (meta.len(), meta.modified().ok(), meta.dev(), meta.ino()).hash(&mut hasher);
    Some(hasher.finish())
}

/// The files named by one debounced batch of file events.
#[derive(Debug, Default)]
struct Batch {
    paths: BTreeSet<PathBuf>,
    writing: HashSet<PathBuf>,
    rescan: bool,
}

struct DirWatch {
    dir: PathBuf,
    /// The stream-services ConfigMaps to list and watch.
    streams: StreamConfig,
    started: bool,
    /// Whether the initial listing is under way.
    listing: bool,
    indexes: Indexes,
    fingerprints: HashMap<Arc<Path>, Fingerprint>,
    /// `None` while polling.
    watcher: Option<Changes>,
    /// Files to read.
    queue: VecDeque<PathBuf>,
    /// The file being read.
    reading: Option<Reading>,
    pending: VecDeque<SourceEvent>,
}

/// A file being read.
struct Reading {
    path: Arc<Path>,
    reader: FileReader,
    keys: Keys,
    /// Whether every document so far was YAML.
    complete: bool,
    print: Option<Fingerprint>,
}

impl DirWatch {
    fn new(dir: PathBuf, streams: StreamConfig) -> Self {
        Self {
            dir,
            started: false,
            listing: false,
            indexes: Indexes::new(streams.clone()),
            streams,
            fingerprints: HashMap::new(),
            watcher: None,
            queue: VecDeque::new(),
            reading: None,
            pending: VecDeque::new(),
        }
    }

    /// Does one round of work, queueing zero or more events.
    async fn step(&mut self) {
        if !self.started {
            self.start();
            if !self.started {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            return;
        }
        if self.reading.is_some() || !self.queue.is_empty() {
            self.read_some();
            return;
        }
        if self.listing {
            self.listing = false;
            self.pending
                .push_back(SourceEvent::Services(Event::InitDone));
            self.pending
                .push_back(SourceEvent::EndpointSlices(Event::InitDone));
            self.pending.push_back(SourceEvent::Node(Event::InitDone));
            for (kind, _) in self.streams.config_maps() {
                self.pending
                    .push_back(SourceEvent::StreamServices(kind, Event::InitDone));
            }
            return;
        }
        let first = match &mut self.watcher {
            Some(changes) => changes.next().await,
            None => {
                tokio::time::sleep(POLL_INTERVAL).await;
                None
            }
        };
        if first.is_none() && self.watcher.take().is_some() {
            tracing::warn!(dir = %self.dir.display(), "the file watch ended; polling the directory");
        }
        let mut batch = Batch {
            rescan: self.watcher.is_none(),
            ..Batch::default()
        };
        if let Some(first) = first {
            self.add(&mut batch, first);
            let began = Instant::now();
            loop {
                let quiet = if batch.writing.is_empty() {
                    QUIET
                } else {
                    QUIET_WRITING
                };
                let deadline = (Instant::now() + quiet).min(began + MAX_BATCH_DELAY);
                let Some(changes) = &mut self.watcher else {
                    break;
                };
                match tokio::time::timeout_at(deadline, changes.next()).await {
                    Ok(Some(change)) => self.add(&mut batch, change),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.apply(batch);
    }

    /// Watches the directory and loads it, queueing the initial events.
    fn start(&mut self) {
        if self.watcher.is_none() {
            let watcher = Inotify::init().and_then(|inotify| {
                inotify.watches().add(&self.dir, WATCHED)?;
                inotify.into_event_stream(vec![0; EVENT_BUFFER])
            });
            match watcher {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(error) if self.dir.is_dir() => {
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot watch the directory; polling it");
                }
                Err(_) => {}
            }
        }
        let paths = match manifest::manifest_paths(&self.dir) {
            Ok(paths) => paths,
            Err(error) => {
                // Reported as a skipped file, and logged where that is handled.
                let message = Chain(&error).to_string();
                self.skipped(FileError {
                    path: self.dir.clone(),
                    document: None,
                    reason: FileSkipReason::Read,
                    message,
                });
                return;
            }
        };
        self.pending.push_back(SourceEvent::Services(Event::Init));
        self.pending
            .push_back(SourceEvent::EndpointSlices(Event::Init));
        self.pending.push_back(SourceEvent::Node(Event::Init));
        for (kind, _) in self.streams.config_maps() {
            self.pending
                .push_back(SourceEvent::StreamServices(kind, Event::Init));
        }
        // Each file listed gets its fingerprint: room for them once, not
        // rehashed as they come.
        self.fingerprints.reserve(paths.len());
        self.queue.extend(paths);
        self.listing = true;
        self.started = true;
    }

    /// Adds one file event to a batch.
    fn add(&mut self, batch: &mut Batch, change: std::io::Result<inotify::EventOwned>) {
        let event = match change {
            Ok(event) => event,
            Err(error) => {
                // Reading the watch failed, and would again: poll instead.
                tracing::warn!(dir = %self.dir.display(), %error, "the file watch failed; polling the directory");
                self.watcher = None;
                batch.rescan = true;
                return;
            }
        };
        let Some(name) = event.name else {
            // The queue overflowed, or the directory itself went.
            batch.rescan = true;
            return;
        };
        let path = self.dir.join(name);
        if event.mask.contains(EventMask::ISDIR) || !manifest::is_manifest(&path) {
            // A link or directory may stand for manifests (`..data`).
            batch.rescan |= std::fs::symlink_metadata(&path)
                .map(|m| !m.is_file())
                .unwrap_or(false);
            return;
        }
        if event.mask.intersects(EventMask::CREATE | EventMask::MODIFY) {
            batch.writing.insert(path.clone());
        } else {
            batch.writing.remove(&path);
        }
        batch.paths.insert(path);
    }

    fn apply(&mut self, batch: Batch) {
        let mut paths = batch.paths;
        if batch.rescan {
            match manifest::manifest_paths(&self.dir) {
                Ok(present) => {
                    let present: BTreeSet<PathBuf> = present.into_iter().collect();
                    let known: Vec<PathBuf> =
                        self.fingerprints.keys().map(|p| p.to_path_buf()).collect();
                    paths.extend(known.into_iter().filter(|p| !present.contains(p)));
                    paths.extend(
                        present.into_iter().filter(|p| {
                            self.fingerprints.get(p.as_path()) != fingerprint(p).as_ref()
                        }),
                    );
                }
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), error = %Chain(&error), "cannot rescan the manifest directory")
                }
            }
        }
        self.queue.extend(paths);
    }

    /// Reads on until there are events to yield or nothing left to read.
    fn read_some(&mut self) {
        while self.pending.is_empty() {
            let Some(reading) = self.reading.as_mut() else {
                let Some(path) = self.queue.pop_front() else {
                    return;
                };
                self.open(path);
                continue;
            };
            match reading.reader.next(&reading.path) {
                Some(parsed) => {
                    reading.complete &= !parsed.syntax;
                    let events = self.indexes.put(
                        &reading.path,
                        &mut reading.keys,
                        parsed.manifest,
                        parsed.print,
                        self.listing,
                    );
                    for error in parsed.errors {
                        self.skipped(error);
                    }
                    self.pending.extend(events);
                }
                None => {
                    let Some(Reading {
                        path,
                        keys,
                        complete,
                        print,
                        ..
                    }) = self.reading.take()
                    else {
                        return;
                    };
                    self.finish(&path, keys, complete);
                    if complete {
                        match print {
                            Some(print) => self.fingerprints.insert(path, print),
                            None => self.fingerprints.remove(&path),
                        };
                    }
                }
            }
        }
    }

    /// Starts reading one file; one that is gone withdraws its objects.
    fn open(&mut self, path: PathBuf) {
        let print = fingerprint(&path);
        let path: Arc<Path> = path.into();
        match FileReader::open(&path) {
            Ok(Some(reader)) => {
                self.reading = Some(Reading {
                    keys: self.indexes.begin(&path),
                    path,
                    reader,
                    complete: true,
                    print,
                });
            }
            Ok(None) => {
                self.fingerprints.remove(&path);
                let keys = self.indexes.begin(&path);
                self.finish(&path, keys, true);
            }
            Err(error) => self.skipped(error),
        }
    }

    /// Ends a file's read: queues its deletions and the re-reads of the
    /// files whose version of an object now wins.
    fn finish(&mut self, path: &Arc<Path>, keys: Keys, complete: bool) {
        let (events, reread) = self.indexes.finish(path, keys, complete);
        if !events.is_empty() {
            tracing::debug!(file = %path.display(), events = events.len(), "manifest changed");
        }
        self.pending.extend(events);
        self.queue.extend(reread.iter().map(|p| p.to_path_buf()));
    }

    /// Reports a file not used; the consumer of the stream logs it.
    fn skipped(&mut self, error: FileError) {
        self.pending.push_back(SourceEvent::FileSkipped(error));
    }
}

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
//! A file that cannot be read or parsed at all keeps contributing what it
//! last did (a half-written file must not withdraw Services); a file that
//! vanishes withdraws its objects.
//!
//! [`Index`]: super::index::Index

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::{self, Stream};
use kube::runtime::watcher::Event;
use kube_ipvs_controller::StreamConfig;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::manifest::{self, FileError, FileRead, FileSkipReason, Indexes, Manifest};
use super::SourceEvent;
use crate::error::Chain;

/// A batch ends when no file event came for this long...
const QUIET: Duration = Duration::from_millis(5);
/// ...or this long while a file is being written (modified, not yet closed).
const QUIET_WRITING: Duration = Duration::from_millis(200);
/// A batch never waits longer than this for its files to settle.
const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);
/// File events queued between two batches. Beyond it events are dropped
/// and the next batch rescans the directory, as after inotify's own
/// overflow: memory stays bounded however fast files change.
const EVENT_QUEUE: usize = 4096;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: (u64, u64),
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: (meta.dev(), meta.ino()),
    })
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
    indexes: Indexes,
    fingerprints: HashMap<PathBuf, Fingerprint>,
    changes: mpsc::Receiver<notify::Result<notify::Event>>,
    changes_tx: mpsc::Sender<notify::Result<notify::Event>>,
    /// Set when an event did not fit in the queue: the next batch rescans.
    overflowed: Arc<AtomicBool>,
    /// `None` while polling.
    watcher: Option<RecommendedWatcher>,
    pending: VecDeque<SourceEvent>,
}

impl DirWatch {
    fn new(dir: PathBuf, streams: StreamConfig) -> Self {
        let (changes_tx, changes) = mpsc::channel(EVENT_QUEUE);
        Self {
            dir,
            started: false,
            indexes: Indexes::new(streams.clone()),
            streams,
            fingerprints: HashMap::new(),
            changes,
            changes_tx,
            overflowed: Arc::default(),
            watcher: None,
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
        let first = if self.watcher.is_some() {
            self.changes.recv().await
        } else {
            tokio::time::sleep(POLL_INTERVAL).await;
            None
        };
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
                match tokio::time::timeout_at(deadline, self.changes.recv()).await {
                    Ok(Some(change)) => self.add(&mut batch, change),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        batch.rescan |= self.overflowed.swap(false, Ordering::Relaxed);
        self.apply(batch);
    }

    /// Watches the directory and loads it, queueing the initial events.
    fn start(&mut self) {
        if self.watcher.is_none() {
            let tx = self.changes_tx.clone();
            let overflowed = self.overflowed.clone();
            let watcher = notify::recommended_watcher(move |event| {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event) {
                    overflowed.store(true, Ordering::Relaxed);
                }
            })
            .and_then(|mut w| w.watch(&self.dir, RecursiveMode::NonRecursive).map(|()| w));
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
        for path in paths {
            self.reread(&path);
        }
        // The per-file events are superseded by the listing below.
        self.pending
            .retain(|e| matches!(e, SourceEvent::FileSkipped(_)));
        let services = self
            .indexes
            .services
            .objects()
            .cloned()
            .map(Event::InitApply);
        self.pending
            .extend(init(services).map(SourceEvent::Services));
        let slices = self
            .indexes
            .endpoint_slices
            .objects()
            .cloned()
            .map(Event::InitApply);
        self.pending
            .extend(init(slices).map(SourceEvent::EndpointSlices));
        let nodes = self.indexes.nodes.objects().cloned().map(Event::InitApply);
        self.pending.extend(init(nodes).map(SourceEvent::Node));
        for (kind, r) in self.streams.config_maps() {
            let config_map = self.indexes.config_map(r).cloned().map(Event::InitApply);
            self.pending
                .extend(init(config_map.into_iter()).map(|e| SourceEvent::StreamServices(kind, e)));
        }
        self.started = true;
    }

    /// Adds one file event to a batch.
    fn add(&self, batch: &mut Batch, change: notify::Result<notify::Event>) {
        let event = match change {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "file watch error; rescanning");
                batch.rescan = true;
                return;
            }
        };
        if event.need_rescan() {
            batch.rescan = true;
        }
        for path in event.paths {
            if path.parent() != Some(self.dir.as_path()) || !manifest::is_manifest(&path) {
                // A link or directory may stand for manifests (`..data`).
                let odd = std::fs::symlink_metadata(&path)
                    .map(|m| !m.is_file())
                    .unwrap_or(false);
                batch.rescan |=
                    path == self.dir || (path.parent() == Some(self.dir.as_path()) && odd);
                continue;
            }
            match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    batch.writing.remove(&path);
                }
                // Our own reads open the files.
                EventKind::Access(_) => continue,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
                    batch.writing.insert(path.clone());
                }
                _ => {
                    batch.writing.remove(&path);
                }
            }
            batch.paths.insert(path);
        }
    }

    fn apply(&mut self, batch: Batch) {
        let mut paths = batch.paths;
        if batch.rescan {
            match manifest::manifest_paths(&self.dir) {
                Ok(present) => {
                    let present: BTreeSet<PathBuf> = present.into_iter().collect();
                    let known: Vec<PathBuf> = self.fingerprints.keys().cloned().collect();
                    paths.extend(known.into_iter().filter(|p| !present.contains(p)));
                    paths.extend(
                        present
                            .into_iter()
                            .filter(|p| self.fingerprints.get(p) != fingerprint(p).as_ref()),
                    );
                }
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), error = %Chain(&error), "cannot rescan the manifest directory")
                }
            }
        }
        for path in paths {
            self.reread(&path);
        }
    }

    /// Reads one file again and queues the events its change makes.
    fn reread(&mut self, path: &Path) {
        let print = fingerprint(path);
        let manifest = match manifest::read(path) {
            FileRead::Missing => {
                self.fingerprints.remove(path);
                Manifest::default()
            }
            FileRead::Failed(error) => return self.skipped(error),
            FileRead::Loaded(manifest, errors) => {
                errors.into_iter().for_each(|e| self.skipped(e));
                match print {
                    Some(print) => self.fingerprints.insert(path.to_owned(), print),
                    None => self.fingerprints.remove(path),
                };
                manifest
            }
        };
        let events = self.indexes.replace(path, manifest);
        if !events.is_empty() {
            tracing::debug!(file = %path.display(), events = events.len(), "manifest changed");
        }
        self.pending.extend(events);
    }

    /// Reports a file not used; the consumer of the stream logs it.
    fn skipped(&mut self, error: FileError) {
        self.pending.push_back(SourceEvent::FileSkipped(error));
    }
}

/// `Init`, the given `InitApply`s, `InitDone`.
fn init<K>(objects: impl Iterator<Item = Event<K>>) -> impl Iterator<Item = Event<K>> {
    std::iter::once(Event::Init)
        .chain(objects)
        .chain(std::iter::once(Event::InitDone))
}

//! The subcommands, one module each; `main.rs` parses the flags and calls
//! one of them.
//!
//! - [`run`]: the agent (and `run --once`).
//! - [`plan`]: the desired state from the sources, without root.
//! - [`dump`]: the kernel's virtual servers, named.
//! - [`cleanup`]: removes what the agent owns.

pub mod cleanup;
pub mod dump;
pub mod plan;
pub mod run;

use std::io::Write as _;

use anyhow::{bail, Context as _, Result};
use futures::stream::BoxStream;
use futures::StreamExt as _;

use crate::cli::{Output, SourceArgs};
use crate::output::{self, Document};
use crate::source::{self, SourceEvent};
use kube_ipvs_controller::StreamConfig;

/// The name of this node: `--hostname-override`, else the host name.
pub fn node_name(source: &SourceArgs) -> Result<String> {
    if let Some(name) = &source.hostname_override {
        return Ok(name.trim().to_lowercase());
    }
    let name =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    Ok(name.trim().to_lowercase())
}

/// The events of the configured source: a watched directory or the API
/// (watched with the selector of `proxy_name`, failed watches retried
/// within `retry_ceiling`), with the stream-services ConfigMaps `streams`
/// names.
pub async fn events(
    source: &SourceArgs,
    node: &str,
    proxy_name: Option<&str>,
    streams: &StreamConfig,
    retry_ceiling: std::time::Duration,
) -> Result<BoxStream<'static, SourceEvent>> {
    Ok(match &source.from_dir {
        Some(dir) => source::dir_source(dir.clone(), streams.clone()).boxed(),
        None => {
            let client = source::client_with(&source.into())
                .await
                .context("connecting to the Kubernetes API")?;
            source::kube_source(client, node, proxy_name, streams, retry_ceiling).boxed()
        }
    })
}

/// How many events a source driven by its own task reads ahead of the loop.
const READ_AHEAD: usize = 128;

/// Most events handed over at once: the events the source has ready go
/// together, one wake-up of the loop for up to this many.
const HANDOVER: usize = 32;

/// The source driven by a task of its own, its events handed to the loop
/// over a bounded channel: the watch is read, decoded and (for a directory)
/// debounced and parsed while the loop syncs, so a change that comes during
/// a part of a periodic resync is ready when the part ends. The task ends
/// when the source does or the loop drops the stream.
///
/// On the multi-threaded runtime the source then allocates on another
/// thread than the loop, and glibc gives each thread its own arena: the
/// image sets `MALLOC_ARENA_MAX=1` (the first sync's peak at 10,000 Services
/// on the host: 81 MiB with an arena per thread, 59 MiB with one).
///
/// The events the source has ready go over together, up to [`HANDOVER`]
/// at a time: one event per send woke the loop's thread for each of the
/// 20,000 objects of an initial list. An event with nothing ready behind
/// it goes alone, at once.
pub fn in_own_task(stream: BoxStream<'static, SourceEvent>) -> BoxStream<'static, SourceEvent> {
    // The channel holds chunks (its buffer and the sender's own slot): at
    // most READ_AHEAD events are read ahead, the next chunk read only once
    // there is room for it.
    let (mut sender, receiver) = futures::channel::mpsc::channel(READ_AHEAD / HANDOVER - 1);
    let mut chunks = stream.ready_chunks(HANDOVER);
    tokio::spawn(async move {
        // Room for a chunk, or the loop dropped the stream.
        while std::future::poll_fn(|cx| sender.poll_ready(cx))
            .await
            .is_ok()
        {
            let Some(chunk) = chunks.next().await else {
                break;
            };
            if sender.start_send(chunk).is_err() {
                break;
            }
        }
    });
    receiver.flat_map(futures::stream::iter).boxed()
}

/// What reads a source's events until its initial state is whole.
pub trait Initializing {
    /// Whether every kind has delivered its initial state.
    fn initialized(&self) -> bool;
    /// Takes one event.
    fn handle(&mut self, event: SourceEvent);
}

/// Feeds `target` the source's events until its initial state is whole.
pub async fn until_initialized(
    stream: &mut BoxStream<'static, SourceEvent>,
    target: &mut impl Initializing,
) -> Result<()> {
    while !target.initialized() {
        match stream.next().await {
            Some(event) => target.handle(event),
            None => bail!("the source ended before delivering its initial state"),
        }
    }
    Ok(())
}

/// Prints a document as a table or JSON.
pub fn print_document(doc: &Document, format: Output) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Output::Table => out.write_all(output::table(doc).as_bytes())?,
        // Written as it is serialized: at 10,000 Services the text is
        // 15 MB, which a string would hold on top of the document.
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, doc)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::watcher::Event;

    use super::in_own_task;
    use crate::source::SourceEvent;

    fn named(name: &str) -> SourceEvent {
        let mut service = Service::default();
        service.metadata.name = Some(name.to_owned());
        SourceEvent::Services(Event::Apply(service))
    }

    fn name(event: &SourceEvent) -> String {
        match event {
            SourceEvent::Services(Event::Apply(s)) => s.metadata.name.clone().unwrap_or_default(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Every event comes through in order, more than the channel holds,
    /// and the stream ends when the source does.
    #[tokio::test]
    async fn a_source_in_its_own_task_hands_over_every_event_in_order() {
        let events: Vec<_> = (0..1_000).map(|i| named(&format!("s{i}"))).collect();
        let forwarded: Vec<_> = in_own_task(futures::stream::iter(events).boxed())
            .map(|e| name(&e))
            .collect()
            .await;
        let expected: Vec<_> = (0..1_000).map(|i| format!("s{i}")).collect();
        assert_eq!(forwarded, expected);
    }

    /// An event with nothing ready behind it is not held back for a
    /// chunk: a watch's single change reaches the loop at once.
    #[tokio::test]
    async fn a_lone_event_is_handed_over_without_waiting_for_more() {
        let source = futures::stream::iter([named("alone")]).chain(futures::stream::pending());
        let mut stream = in_own_task(source.boxed());
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("the event was held back")
            .expect("the stream ended");
        assert_eq!(name(&event), "alone");
    }

    /// The source is read while nobody takes its events, up to the
    /// read-ahead, and dropped when the loop drops the stream.
    #[tokio::test]
    async fn a_source_in_its_own_task_reads_ahead_and_stops_with_the_loop() {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = read.clone();
        let source = futures::stream::iter(0..).map(move |i| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            named(&format!("s{i}"))
        });
        let stream = in_own_task(source.boxed());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let ahead = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (super::READ_AHEAD..=super::READ_AHEAD + 2).contains(&ahead),
            "{ahead}"
        );
        drop(stream);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let after = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            after <= ahead + 1,
            "{after} read after the stream was dropped"
        );
    }
}

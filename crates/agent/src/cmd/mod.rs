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

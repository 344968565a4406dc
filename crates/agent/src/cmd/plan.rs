//! `kube-ipvs plan`: what the agent would program on a node, from the
//! sources alone, without root and without touching the kernel.

use std::process::ExitCode;

use anyhow::Result;
use kube_ipvs_controller::{desired, Config, Intent, StreamConfig};

use super::{events, node_name, print_document, until_initialized, Initializing};
use crate::cli::PlanArgs;
use crate::output;
use crate::snapshot::{NodeAddresses, SnapshotWriter};
use crate::source::SourceEvent;

/// The snapshot writer, logging what the source could not deliver.
struct Reader(SnapshotWriter);

impl Initializing for Reader {
    fn initialized(&self) -> bool {
        self.0.initialized()
    }

    fn handle(&mut self, event: SourceEvent) {
        event.log_failure();
        self.0.apply(event);
    }
}

/// Maps the sources' initial state as the agent on the node would and
/// prints it. Off the node, NodePorts listen on the Node object's addresses.
pub async fn plan(args: PlanArgs) -> Result<ExitCode> {
    let node = node_name(&args.source)?;
    let config = Config {
        node_name: node.clone(),
        streams: StreamConfig::from(&args.streams),
        ..Config::from(&args.mapping)
    };
    let mut stream = events(
        &args.source,
        &node,
        config.service_proxy_name.as_deref(),
        &config.streams,
        // client-go's ceiling: plan has no sync period.
        std::time::Duration::from_secs(60),
    )
    .await?;
    let mut reader =
        Reader(SnapshotWriter::new(node, NodeAddresses::NodeObject).with_streams(&config.streams));
    until_initialized(&mut stream, &mut reader).await?;
    let snapshot = reader.0.into_snapshot();
    let desired = desired(&snapshot, &config);
    for skip in snapshot.skipped().chain(&desired.skipped) {
        eprintln!("skipped: {skip}");
    }
    // The mapping is done with the snapshot: its memory goes before the
    // output's comes.
    drop(snapshot);
    print_document(&output::from_intent(&Intent::new(desired)), args.output)?;
    Ok(ExitCode::SUCCESS)
}

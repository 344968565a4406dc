//! The Kubernetes API as a source: watches on Services, EndpointSlices, the
//! agent's Node and the stream-services ConfigMaps named by the flags,
//! merged into one stream.

use std::path::Path;
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use kube_ipvs_controller::{StreamConfig, StreamKind};
use serde::de::DeserializeOwned;

use super::trim::Trim;
use super::unread::{Unneeded, Unread};
use super::{Error, SourceEvent};

/// The selector kube-proxy watches Services and EndpointSlices with: objects
/// that name another service proxy, and the endpoints of headless Services,
/// are none of a node proxy's business, and the API server need not send them.
pub const PROXY_LABEL_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// The label selector for a proxy named `proxy_name` (`--service-proxy-name`):
/// only the objects labelled with that name; without one, kube-proxy's
/// [`PROXY_LABEL_SELECTOR`]. The EndpointSlice controller copies a Service's
/// labels to its slices, so one selector serves both watches.
pub fn proxy_label_selector(proxy_name: Option<&str>) -> String {
    match proxy_name {
        Some(name) => format!(
            "{}={name},!service.kubernetes.io/headless",
            kube_ipvs_controller::SERVICE_PROXY_NAME_LABEL
        ),
        None => PROXY_LABEL_SELECTOR.to_owned(),
    }
}

/// A client from the given kubeconfig, or else inferred: `$KUBECONFIG`,
/// `~/.kube/config`, then the in-cluster service account; kube-proxy's
/// default rate limits ([`super::client_with`] takes them all).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    super::client_with(&super::ClientSettings {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        ..super::ClientSettings::default()
    })
    .await
}

/// Watches Services and EndpointSlices cluster-wide (with
/// [`proxy_label_selector`]), the Node named `node_name` and each
/// stream-services ConfigMap `streams` names, with bookmarks.
///
/// A ConfigMap is watched in its namespace with the field selector
/// `metadata.name=NAME`: a Role whose rule lists it in `resourceNames`
/// allows such a list and watch, and nothing wider.
///
/// Errors never end the stream: each is reported as
/// [`SourceEvent::WatchError`], and the watch is retried with backoff; after
/// a failed resume (410 Gone, or an API down for long) it relists, which
/// shows as a fresh `Init`..`InitDone`.
///
/// A failed list or watch is retried as client-go's reflector retries
/// (from 800 ms, doubling, each wait jittered up to twice, reset after two
/// minutes of success), but the waits stop growing at `ceiling / 2`, so the
/// jittered wait stays within `ceiling` (`--ipvs-sync-period`): after an
/// API outage the agent is back on the API within one sync period, where
/// client-go's 30 s ceiling jittered to a minute would leave it.
pub fn kube_source(
    client: Client,
    node_name: &str,
    proxy_name: Option<&str>,
    streams: &StreamConfig,
    ceiling: Duration,
) -> impl Stream<Item = SourceEvent> + Send + 'static {
    let selected = watcher::Config::default().labels(&proxy_label_selector(proxy_name));
    let node = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let mut watches = vec![
        watch(
            Api::<Unread<Service>>::all(client.clone()),
            selected.clone(),
            SourceEvent::Services,
            ceiling,
        ),
        watch(
            Api::<Unread<EndpointSlice>>::all(client.clone()),
            selected,
            SourceEvent::EndpointSlices,
            ceiling,
        ),
        watch(
            Api::<Unread<Node>>::all(client.clone()),
            node,
            SourceEvent::Node,
            ceiling,
        ),
    ];
    for (kind, config_map) in streams.config_maps() {
        let named =
            watcher::Config::default().fields(&format!("metadata.name={}", config_map.name));
        let wrap: fn(Event<ConfigMap>) -> SourceEvent = match kind {
            StreamKind::Tcp => |e| SourceEvent::StreamServices(StreamKind::Tcp, e),
            StreamKind::Udp => |e| SourceEvent::StreamServices(StreamKind::Udp, e),
        };
        watches.push(watch(
            Api::<Unread<ConfigMap>>::namespaced(client.clone(), &config_map.namespace),
            named,
            wrap,
            ceiling,
        ));
    }
    stream::select_all(watches)
}

/// Watches one resource, its objects decoded without the fields the agent
/// never reads ([`Unread`]) and then trimmed ([`Trim`]: an annotation map
/// left empty is none).
fn watch<K>(
    api: Api<Unread<K>>,
    config: watcher::Config,
    wrap: fn(Event<K>) -> SourceEvent,
    ceiling: Duration,
) -> BoxStream<'static, SourceEvent>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Unneeded
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, config)
        .backoff(watch_backoff(ceiling))
        .map(move |result| match result {
            Ok(event) => wrap(read(event)),
            // Reported in the stream; its consumer logs it once.
            Err(error) => SourceEvent::WatchError {
                resource: K::KIND,
                kind: error_kind(&error),
                error: std::sync::Arc::new(error),
            },
        })
        .boxed()
}

/// An event's object, trimmed.
fn read<K: Trim>(event: Event<Unread<K>>) -> Event<K> {
    let object = |Unread(mut object): Unread<K>| {
        object.trim();
        object
    };
    match event {
        Event::Apply(o) => Event::Apply(object(o)),
        Event::Delete(o) => Event::Delete(object(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(object(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// The first wait after a failed list or watch (client-go's).
const FIRST_BACKOFF: Duration = Duration::from_millis(800);
/// Waits reset after this long without a failure (client-go's).
const BACKOFF_RESET: Duration = Duration::from_secs(120);

/// The retry waits of one watch (see [`kube_source`]).
fn watch_backoff(ceiling: Duration) -> ResetTimerBackoff<watcher::ExponentialBackoff> {
    let max = (ceiling / 2).max(FIRST_BACKOFF);
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), BACKOFF_RESET)
}

/// A metric label for a watcher error.
pub fn error_kind(error: &watcher::Error) -> &'static str {
    match error {
        watcher::Error::InitialListFailed(_) => "list",
        watcher::Error::WatchStartFailed(_) => "watch_start",
        watcher::Error::WatchError(status) if status.code == 410 => "gone",
        watcher::Error::WatchError(_) => "watch_error",
        watcher::Error::WatchFailed(_) => "watch_stream",
        watcher::Error::NoResourceVersion => "no_resource_version",
    }
}

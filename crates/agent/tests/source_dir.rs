//! The directory source: initial load, every kind of file change, broken
//! files, mirrored Endpoints, and per-file re-reads.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs::source::{dir_source, load_dir, SourceEvent};
use kube_ipvs_controller::{ConfigMapRef, ServiceRef, StreamConfig};

/// Safety net around awaits; every wait below ends on an event.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Consumer(BoxStream<'static, SourceEvent>);

impl Consumer {
    fn start(dir: &Path) -> Self {
        Consumer(dir_source(dir.to_owned(), StreamConfig::default()).boxed())
    }

    fn start_with(dir: &Path, streams: StreamConfig) -> Self {
        Consumer(dir_source(dir.to_owned(), streams).boxed())
    }

    async fn next(&mut self) -> SourceEvent {
        tokio::time::timeout(TIMEOUT, self.0.next())
            .await
            .expect("timed out waiting for an event")
            .expect("the source never ends")
    }

    /// The next `n` events, as short strings.
    async fn take(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(describe(&self.next().await));
        }
        out
    }

    /// Every event until each kind has finished its listing.
    async fn until_all_listed(&mut self) -> Vec<String> {
        let mut done = HashSet::new();
        let mut out = Vec::new();
        while done.len() < 3 {
            let event = self.next().await;
            if event.is_init_done() {
                done.insert(std::mem::discriminant(&event));
            }
            out.push(describe(&event));
        }
        out
    }
}

fn describe(event: &SourceEvent) -> String {
    fn one<K: ResourceExt>(kind: &str, e: &Event<K>) -> String {
        let name = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        match e {
            Event::Init => format!("{kind} init"),
            Event::InitApply(o) => format!("{kind} init-apply {}", name(o)),
            Event::InitDone => format!("{kind} init-done"),
            Event::Apply(o) => format!("{kind} apply {}", name(o)),
            Event::Delete(o) => format!("{kind} delete {}", name(o)),
        }
    }
    match event {
        SourceEvent::Services(e) => one("svc", e),
        SourceEvent::EndpointSlices(e) => one("slice", e),
        SourceEvent::Node(e) => one("node", e),
        SourceEvent::StreamServices(kind, e) => one(kind.as_str(), e),
        SourceEvent::WatchError { resource, kind, .. } => format!("watch-error {resource} {kind}"),
        SourceEvent::FileSkipped(f) => {
            let name = f.path.file_name().unwrap().to_string_lossy();
            format!("skipped {name} {:?} {}", f.document, f.reason)
        }
    }
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\nspec:\n  clusterIP: 10.96.0.1\n  ports:\n  - port: {port}\n    protocol: TCP\n"
    )
}

fn slice(name: &str, service: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: web\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [10.1.0.1]\n  conditions: {{ready: true}}\nports:\n- port: 8080\n  protocol: TCP\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

/// Writes a file elsewhere in the directory and renames it into place, as
/// editors and `kubectl`-like tools do.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn fixture(dir: &Path) {
    write(
        dir,
        "a.yaml",
        &[service("a", 80), slice("a-1", "a")].join("---\n"),
    );
    write(
        dir,
        "b.json",
        r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}}]}"#,
    );
    write(
        dir,
        "c.yml",
        "apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: c1, namespace: web}\n  spec: {clusterIP: 10.96.0.3}\n- metadata: {name: c2}\n  spec: {clusterIP: 10.96.0.4}\n",
    );
    write(
        dir,
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n",
    );
    write(
        dir,
        "bad-doc.yaml",
        &[
            service("good", 80),
            "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: nope}\n"
                .to_owned(),
        ]
        .join("---\n"),
    );
    write(dir, "notes.txt", &service("txt", 80));
    write(dir, ".hidden.yaml", &service("hidden", 80));
    write(
        dir,
        "endpoints.yaml",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy, namespace: web}\nsubsets:\n- addresses: [{ip: 10.2.0.1}, {ip: 10.2.0.2}]\n  notReadyAddresses: [{ip: 10.2.0.3}]\n  ports: [{port: 9090, protocol: TCP}]\n",
    );
}

#[tokio::test]
async fn loads_every_manifest_kind_and_reports_broken_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let mut consumer = Consumer::start(dir.path());
    let events = consumer.until_all_listed().await;
    let skipped: Vec<_> = events
        .iter()
        .filter(|e| e.starts_with("skipped"))
        .cloned()
        .collect();
    assert_eq!(
        skipped,
        [
            "skipped bad-doc.yaml Some(1) parse",
            "skipped broken.yaml None parse"
        ]
    );
    let listed: Vec<_> = events
        .iter()
        .filter(|e| !e.starts_with("skipped"))
        .map(String::as_str)
        .collect();
    // Every kind's Init, the objects file by file in path order (a.yaml,
    // b.json, bad-doc.yaml, c.yml, endpoints.yaml), then every InitDone.
    assert_eq!(
        listed,
        [
            "svc init",
            "slice init",
            "node init",
            "svc init-apply web/a",
            "slice init-apply web/a-1",
            "node init-apply /node-1",
            "svc init-apply web/good",
            "svc init-apply web/c1",
            "svc init-apply default/c2",
            "slice init-apply web/legacy-0-ipv4",
            "svc init-done",
            "slice init-done",
            "node init-done",
        ]
    );
    let once = load_dir(dir.path()).unwrap();
    assert_eq!(once.services.len(), 4);
    assert_eq!(once.nodes.len(), 1);
    assert_eq!(once.errors.len(), 2);
    let mirrored = once
        .endpoint_slices
        .iter()
        .find(|s| s.name_any() == "legacy-0-ipv4")
        .unwrap();
    let labels = mirrored.labels();
    assert_eq!(labels["kubernetes.io/service-name"], "legacy");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    let endpoints = mirrored.endpoints.clone().unwrap_or_default();
    let ready: Vec<_> = endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().and_then(|c| c.ready),
            )
        })
        .collect();
    assert_eq!(
        ready,
        [
            ("10.2.0.1", Some(true)),
            ("10.2.0.2", Some(true)),
            ("10.2.0.3", Some(false))
        ]
    );
}

#[tokio::test]
async fn each_kind_of_file_change_makes_the_right_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.yaml",
        &[service("a", 80), slice("a-1", "a")].join("---\n"),
    );
    let mut consumer = Consumer::start(d);
    consumer.until_all_listed().await;

    // Create.
    write(
        d,
        "b.yaml",
        &[service("b", 80), service("b2", 80)].join("---\n"),
    );
    assert_eq!(
        consumer.take(2).await,
        ["svc apply web/b", "svc apply web/b2"]
    );

    // Edit in place: one object changed, one gone, one untouched.
    write(d, "b.yaml", &service("b", 81));
    assert_eq!(
        consumer.take(2).await,
        ["svc apply web/b", "svc delete web/b2"]
    );

    // Replace by write-and-rename.
    replace(
        d,
        "a.yaml",
        &[service("a", 443), slice("a-1", "a"), slice("a-2", "a")].join("---\n"),
    );
    assert_eq!(
        consumer.take(2).await,
        ["svc apply web/a", "slice apply web/a-2"]
    );

    // A broken version is reported and withdraws nothing; the fix applies.
    write(d, "a.yaml", "kind: [");
    assert_eq!(consumer.take(1).await, ["skipped a.yaml None parse"]);
    write(
        d,
        "a.yaml",
        &[service("a", 443), slice("a-1", "a")].join("---\n"),
    );
    assert_eq!(consumer.take(1).await, ["slice delete web/a-2"]);

    // Delete.
    fs::remove_file(d.join("a.yaml")).unwrap();
    assert_eq!(
        consumer.take(2).await,
        ["svc delete web/a", "slice delete web/a-1"]
    );

    // A rename away from a manifest name deletes; back, applies again.
    fs::rename(d.join("b.yaml"), d.join("b.yaml.disabled")).unwrap();
    assert_eq!(consumer.take(1).await, ["svc delete web/b"]);
    fs::rename(d.join("b.yaml.disabled"), d.join("b.yaml")).unwrap();
    assert_eq!(consumer.take(1).await, ["svc apply web/b"]);
}

#[tokio::test]
async fn a_swapped_configmap_style_link_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("..v1")).unwrap();
    write(&d.join("..v1"), "svc.yaml", &service("s", 80));
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/svc.yaml", d.join("svc.yaml")).unwrap();
    let mut consumer = Consumer::start(d);
    assert!(consumer
        .until_all_listed()
        .await
        .contains(&"svc init-apply web/s".to_owned()));

    // The kubelet's atomic update: a new directory, a new link renamed over.
    fs::create_dir(d.join("..v2")).unwrap();
    write(&d.join("..v2"), "svc.yaml", &service("s", 8080));
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    assert_eq!(consumer.take(1).await, ["svc apply web/s"]);
}

#[tokio::test]
async fn a_change_to_one_of_many_files_makes_events_for_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = |f: usize, changed: Option<usize>| {
        (0..50)
            .map(|s| {
                service(
                    &format!("s-{f}-{s}"),
                    if Some(s) == changed { 8080 } else { 80 },
                )
            })
            .chain((0..50).map(|s| slice(&format!("s-{f}-{s}-1"), &format!("s-{f}-{s}"))))
            .collect::<Vec<_>>()
            .join("---\n")
    };
    for f in 0..100 {
        write(d, &format!("f{f:03}.yaml"), &file(f, None));
    }
    let mut consumer = Consumer::start(d);
    let listed = consumer.until_all_listed().await;
    assert_eq!(
        listed.iter().filter(|e| e.contains("init-apply")).count(),
        10_000
    );

    let started = Instant::now();
    replace(d, "f042.yaml", &file(42, Some(7)));
    assert_eq!(consumer.take(1).await, ["svc apply web/s-42-7"]);
    let latency = started.elapsed();
    // Nothing else came of it: the next event is the sentinel's.
    write(d, "sentinel.yaml", &service("sentinel", 80));
    assert_eq!(consumer.take(1).await, ["svc apply web/sentinel"]);
    eprintln!("file change to event: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "one file is re-read, not the directory: {latency:?}"
    );
}

fn config_map(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: ingress-nginx\ndata:\n{data}")
}

#[tokio::test]
async fn the_stream_services_config_maps_are_a_kind_each_and_no_other_config_map_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "tcp.yaml",
        &[
            config_map("tcp-services", "  \"10000\": default/a:80\n"),
            config_map("other", "  x: \"one\"\n"),
        ]
        .join("---\n"),
    );
    let streams = StreamConfig {
        tcp_services: Some(ConfigMapRef::new("ingress-nginx", "tcp-services")),
        udp_services: Some(ConfigMapRef::new("ingress-nginx", "udp-services")),
        publish_service: Some(ServiceRef::new("ingress-nginx", "controller")),
    };
    let mut consumer = Consumer::start_with(d, streams);
    // Every kind's Init, the one ConfigMap that counts, every InitDone;
    // udp-services has no ConfigMap in the directory.
    let listed = consumer.take(11).await;
    assert_eq!(
        listed,
        [
            "svc init",
            "slice init",
            "node init",
            "tcp-services init",
            "udp-services init",
            "tcp-services init-apply ingress-nginx/tcp-services",
            "svc init-done",
            "slice init-done",
            "node init-done",
            "tcp-services init-done",
            "udp-services init-done",
        ]
    );

    // Another ConfigMap changes: nothing. Ours changes: applied.
    replace(
        d,
        "tcp.yaml",
        &[
            config_map("tcp-services", "  \"10000\": default/a:80\n"),
            config_map("other", "  x: \"two\"\n"),
        ]
        .join("---\n"),
    );
    write(
        d,
        "udp.yaml",
        &config_map("udp-services", "  \"53\": kube-system/kube-dns:53\n"),
    );
    assert_eq!(
        consumer.take(1).await,
        ["udp-services apply ingress-nginx/udp-services"]
    );
    replace(
        d,
        "tcp.yaml",
        &config_map("tcp-services", "  \"10000\": default/b:80\n"),
    );
    assert_eq!(
        consumer.take(1).await,
        ["tcp-services apply ingress-nginx/tcp-services"]
    );
    fs::remove_file(d.join("tcp.yaml")).unwrap();
    assert_eq!(
        consumer.take(1).await,
        ["tcp-services delete ingress-nginx/tcp-services"]
    );
    let once = load_dir(d).unwrap();
    assert_eq!(once.config_maps.len(), 1);
}

#[tokio::test]
async fn an_edit_of_one_large_file_makes_events_for_the_changed_objects_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = |changed: Option<usize>| {
        (0..1_000)
            .flat_map(|s| {
                let port = if Some(s) == changed { 8080 } else { 80 };
                [
                    service(&format!("s-{s}"), port),
                    slice(&format!("s-{s}-1"), &format!("s-{s}")),
                ]
            })
            .collect::<Vec<_>>()
            .join("---\n")
    };
    write(d, "all.yaml", &file(None));
    let mut consumer = Consumer::start(d);
    let listed = consumer.until_all_listed().await;
    assert_eq!(
        listed.iter().filter(|e| e.contains("init-apply")).count(),
        2_000
    );
    replace(d, "all.yaml", &file(Some(500)));
    assert_eq!(consumer.take(1).await, ["svc apply web/s-500"]);
    write(d, "sentinel.yaml", &service("sentinel", 80));
    assert_eq!(consumer.take(1).await, ["svc apply web/sentinel"]);
}

#[tokio::test]
async fn an_object_two_files_define_falls_back_to_the_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.yaml", &service("x", 81));
    write(d, "b.yaml", &service("x", 82));
    let mut consumer = Consumer::start(d);
    consumer.until_all_listed().await;
    // b wins; without it, a's version applies, and without a, it is gone.
    replace(d, "b.yaml", &service("other", 80));
    assert_eq!(
        consumer.take(2).await,
        ["svc apply web/other", "svc apply web/x"]
    );
    fs::remove_file(d.join("a.yaml")).unwrap();
    assert_eq!(consumer.take(1).await, ["svc delete web/x"]);
}

/// This thread's CPU time (user and system) in clock ticks.
fn thread_cpu_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A watched directory costs nothing while it does not change. The
/// listing's own open of the directory must not count as a change: taken
/// for one, it rescanned the directory, whose listing opened it again,
/// without end (a whole core at 10,000 files, found by `hack/bench-sync`'s
/// idle measurement).
#[tokio::test(flavor = "current_thread")]
async fn a_directory_that_does_not_change_costs_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..300 {
        write(
            dir.path(),
            &format!("svc-{i}.yaml"),
            &service(&format!("svc-{i}"), 80),
        );
    }
    let mut source = Consumer::start(dir.path());
    source.until_all_listed().await;
    // Let the listing's own file events arrive and pass.
    let _ = tokio::time::timeout(Duration::from_millis(500), source.0.next()).await;
    let before = thread_cpu_ticks();
    let event = tokio::time::timeout(Duration::from_secs(2), source.0.next()).await;
    let spent = thread_cpu_ticks() - before;
    assert!(event.is_err(), "no event from an unchanged directory");
    // Ticks are hundredths of a second: under a tenth of the two seconds.
    assert!(spent < 20, "{spent} ticks of CPU in 2 s standing still");
}

use super::*;
use k8s_openapi::api::core::v1::{Node as K8sNode, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The subset reader's answer, checked against the general parser's; and
/// what deserializes from its tree checked against what deserializes from
/// that value.
fn agreed(text: &str) -> Option<Value> {
    let fast = block_subset(text);
    if let Some(value) = &fast {
        assert_eq!(
            general(text).as_ref(),
            Ok(value),
            "the readers disagree on:\n{text}"
        );
        same_typed::<Value>(value, text);
        same_typed::<Service>(value, text);
        same_typed::<EndpointSlice>(value, text);
        same_typed::<K8sNode>(value, text);
    }
    fast
}

/// A `K` from the document's node is the one from its value, and either
/// both are or neither is.
fn same_typed<K>(value: &Value, text: &str)
where
    K: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let arena = Bump::new();
    let node = block_subset_node(text, &arena).expect("read as a value, so as a node");
    assert_eq!(
        K::deserialize(node).ok(),
        serde_json::from_value::<K>(value.clone()).ok(),
        "{} from the node and from the value differ:\n{text}",
        std::any::type_name::<K>()
    );
}

const SERVICE: &str = "\
---
# generated
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop   # the team's
  labels:
    app.kubernetes.io/name: web
    tier: ''
  annotations:
    \"example.com/quoted key\": \"a \\\"b\\\" c\\n\"
    note: 'it''s 10:30'
    url: http://example.com:8080/x#y
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs:
  - 10.96.0.10
  - fd00::a
  externalTrafficPolicy: Local
  healthCheckNodePort: 30011
  ipFamilies: [IPv4, IPv6]
  selector: {app: web, tier: front}
  sessionAffinity: None
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 8080
      nodePort: 30080

    -   name: https
        port: 443
        targetPort: https
  loadBalancerSourceRanges: []
status:
  loadBalancer:
    ingress:
    - ip: 192.0.2.1
      ipMode: VIP
      ports: [{port: 80, protocol: TCP}, {port: -1, protocol: UDP}]
  conditions:
";

const SLICE: &str = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-5-abcde
  namespace: ns-5
  labels:
    kubernetes.io/service-name: svc-5
addressType: IPv4
ports:
  - name: http
    protocol: TCP
    port: 8080
endpoints:
  - addresses: [10.0.0.50]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: node-10
  - addresses:
      - 10.0.0.51
    conditions:
      ready: false
    zone: ~
    hints: null
";

/// As `kubectl get -o yaml` writes an applied Service: the last applied
/// configuration as a literal block, managed fields.
const KUBECTL: &str = "\
apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\"}}
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:ports:
          .: {}
          k:{\"port\":80,\"protocol\":\"TCP\"}:
            .: {}
            f:port: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: \"2025-01-01T00:00:00Z\"
  name: web
  namespace: default
spec:
  clusterIP: 10.96.0.10
";

/// As PyYAML writes the same: long strings folded over lines.
const PYYAML: &str = "\
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"labels\":{\"app\":\"svc-00000\"}}}

      '
    note: \"a long sentence that PyYAML folds
      over two lines\"
  name: web
";

#[test]
fn reads_manifests_as_the_general_parser_does() {
    for text in [SERVICE, SLICE, KUBECTL, PYYAML] {
        assert!(agreed(text).is_some(), "not read by the subset:\n{text}");
    }
    let applied = block_subset(KUBECTL).unwrap();
    assert_eq!(
        applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\"}}\n"
    );
    let folded = block_subset(PYYAML).unwrap();
    assert_eq!(
        folded["metadata"]["annotations"]["note"],
        "a long sentence that PyYAML folds over two lines"
    );
    let service = block_subset(SERVICE).unwrap();
    assert_eq!(service["spec"]["ports"][1]["port"], 443);
    assert_eq!(service["status"]["conditions"], Value::Null);
    assert_eq!(
        service["metadata"]["annotations"]["example.com/quoted key"],
        "a \"b\" c\n"
    );
}

#[test]
fn leaves_the_rest_of_yaml_to_the_general_parser() {
    let others = [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: >-\n  text\n",
        "a: yes\n",
        "a: On\n",
        "a: 1.5\n",
        "a: 0x1f\n",
        "a: 0755\n",
        "a: 2001-12-14\n",
        "a: .inf\n",
        "a: 1_000\n",
        "a: +1\n",
        "a:\tb\n",
        "a: b\r\n",
        "a: 1\na: 2\n",
        "a: {b: 1, b: 2}\n",
        "a: word\n  continued\n",
        "a: \"open\\\n  close\"\n",
        "a: 'open\nclose'\n",
        "a: |2\n   text\n",
        "a: |\n  text",
        "a: |\n\n   \n  text\n",
        "? a\n: b\n",
        "<<: {a: 1}\n",
        "- a\n- b\n",
        "plain scalar\n",
        "a: b: c\n",
        "a: [b, c\n",
        "a: [b,]\n",
        "a: \"\\x41\"\n",
        "80: port\n",
        "true: x\n",
        "%YAML 1.2\n---\na: 1\n",
        "--- a: 1\n",
        "---\n# c\n---\na: 1\n",
        "a: 1\n---\nb: 2\n",
        "  ---\na: 1\n",
    ];
    // Implicit keys are at most 1,024 characters.
    let long = "k".repeat(1100);
    // Nesting deeper than the reader's limit, in blocks and in flow.
    let deep = 1000;
    let long_keys = [
        format!("{long}: 1\n"),
        format!("a: {{{long}: 1}}\n"),
        format!("a:\n- {long}: 1\n"),
        format!("a:\n  {}1\n", "- ".repeat(deep)),
        format!("a: {}1{}\n", "[".repeat(deep), "]".repeat(deep)),
        (0..deep)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect(),
    ];
    let check = move || {
        for text in others
            .into_iter()
            .chain(long_keys.iter().map(String::as_str))
        {
            assert_eq!(agreed(text), None, "read by the subset:\n{text}");
            // Still read, by the general parser, wherever it is YAML.
            assert_eq!(document(text), general(text));
        }
    };
    // The general parser recurses per level: an unoptimized build needs
    // more than a test thread's stack for the deep documents.
    let checking = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(check);
    if let Err(panic) = checking.expect("a thread").join() {
        std::panic::resume_unwind(panic);
    }
}

/// Random documents from pieces that are in the subset and pieces that are
/// not, in random nesting: wherever the subset reader answers, its value is
/// the general parser's; and it answers for a good share of them.
#[test]
fn agrees_with_the_general_parser_on_random_documents() {
    // Scalars and keys in the subset, then others: about one piece in
    // ten is from the second half of each.
    const SCALARS: [&[&str]; 2] = [
        &[
            "a",
            "web",
            "TCP",
            "10.0.0.1",
            "1.2.3",
            "fd00::1",
            "0",
            "-7",
            "80",
            "65536",
            "123456789012345678",
            "true",
            "false",
            "null",
            "~",
            "'q'",
            "''",
            "\"d\"",
            "\"e\\\"s\\\\\"",
            "'it''s'",
            "a b",
            "a, b",
            "a#b",
            "a #c",
            "http://h:1/p",
            "-a",
            "_x",
            "/p",
            "é",
            "[]",
            "{}",
            "[a, 1, true]",
            "{k: v, n: 2}",
            "[{a: 1}, [b]]",
            "{a: [1, 2]}",
            "[a b]",
            ".",
            ".a",
            "./x",
            "00000000-0000-4000-8000-000000000001",
            "10.128.0.0/24",
            "8080-8090",
            "10m",
            "1Gi",
            "3d9f-2",
            "k:{\"p\":1}",
        ],
        &[
            "1234567890123456789",
            "yes",
            "No",
            "TRUE",
            "Null",
            "1.5",
            "1e3",
            "0o17",
            "012",
            "-0",
            ".5",
            "x: y",
            "-",
            "--",
            "=",
            "{a: }",
            "[a,]",
            "&x a",
            "*x",
            "!t a",
            "|",
            ">",
            "@a",
            "`a",
            "%a",
            "?",
            "? a",
            "a:",
            "[a: b]",
            "{a}",
            "\"a\":1",
            ".inf",
            ".NaN",
            ".5",
            "...",
            "..a",
            "2001:db8::1",
            "12:30",
            "2001-12-14",
            "1e-5",
            "0b101",
            "1_0",
            "1.5e3",
            "0x1F",
            "2001-12-14t21:59:43.10-05:00",
        ],
    ];
    const KEYS: [&[&str]; 2] = [
        &[
            "a",
            "b",
            "name",
            "app.kubernetes.io/name",
            "'q k'",
            "\"d k\"",
            "a b",
            "x-y",
            "a#b",
            "''",
            ".",
            "f:spec",
            "k:{\"port\":80,\"protocol\":\"TCP\"}",
            // Fields of the objects read typed from the tree.
            "metadata",
            "labels",
            "namespace",
            "spec",
            "ports",
            "port",
            "endpoints",
            "addresses",
        ],
        &["80", "true", "yes", "<<", "", "-a"],
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    fn pick(pools: [&[&'static str]; 2], next: &mut dyn FnMut(usize) -> usize) -> &'static str {
        let pool = pools[usize::from(next(10) == 0)];
        pool[next(pool.len())]
    }
    fn block(out: &mut String, indent: usize, depth: usize, next: &mut dyn FnMut(usize) -> usize) {
        let pad = " ".repeat(indent);
        let sequence = next(3) == 0;
        for _ in 0..1 + next(3) {
            out.push_str(&pad);
            if sequence {
                out.push_str("- ");
            } else {
                out.push_str(pick(KEYS, next));
                out.push(':');
                out.push_str(if next(20) == 0 { "" } else { " " });
            }
            match next(if depth < 3 { 6 } else { 10 }) {
                0 | 1 if depth < 3 => {
                    // A nested block on the next lines (for a key, a
                    // sequence may stay at its indent).
                    out.push('\n');
                    let deeper = if !sequence && next(3) == 0 {
                        0
                    } else {
                        2 + next(2)
                    };
                    block(out, indent + deeper, depth + 1, next);
                }
                2 if depth < 3 && sequence => {
                    // A compact mapping or sequence in the item.
                    let mut inner = String::new();
                    block(&mut inner, 0, depth + 1, next);
                    let column = " ".repeat(indent + 2);
                    out.push_str(&inner.replace('\n', &format!("\n{column}")));
                    out.truncate(out.trim_end_matches(' ').len());
                }
                3 => out.push('\n'),
                4 if next(2) == 0 => {
                    multi_line(out, indent, next);
                }
                _ => {
                    out.push_str(pick(SCALARS, next));
                    if next(8) == 0 {
                        out.push_str(" # note");
                    }
                    out.push('\n');
                }
            }
            if next(12) == 0 {
                out.push_str(&" ".repeat(next(6)));
                out.push_str(["# c\n", "\n", "x\n", "- x\n"][next(4)]);
            }
        }
    }
    /// A literal block scalar or a quoted scalar over several lines, some
    /// of them outside the subset.
    fn multi_line(out: &mut String, indent: usize, next: &mut dyn FnMut(usize) -> usize) {
        let column = indent + 1 + next(3);
        let lines = 1 + next(4);
        if next(2) == 0 {
            out.push_str(["|", "|-", "|+", "| # c", "|2", ">", "|x"][next(7)]);
            out.push('\n');
            for _ in 0..lines {
                match next(6) {
                    0 => out.push_str(&" ".repeat(next(column + 3))),
                    1 => out.push_str(&format!("{}  more", " ".repeat(column))),
                    2 => out.push_str(&format!("{}# text", " ".repeat(column))),
                    3 if next(4) == 0 => out.push_str(&format!("{}x", " ".repeat(indent))),
                    _ => out.push_str(&format!("{}text {}", " ".repeat(column), next(9))),
                }
                out.push('\n');
            }
        } else {
            let quote = ['\'', '"'][next(2)];
            out.push(quote);
            out.push_str(["a", "", "a ", "it''s", "\\\"", "x #y"][next(6)]);
            for _ in 0..lines {
                out.push('\n');
                match next(5) {
                    0 => {}
                    1 => out.push_str(&" ".repeat(next(column + 2))),
                    2 if next(3) == 0 => out.push_str(&format!("{}b", " ".repeat(indent))),
                    _ => out.push_str(&format!("{}b {} ", " ".repeat(column), next(9))),
                }
            }
            out.push_str(&format!("\n{}c{quote}", " ".repeat(column)));
            out.push_str(["", " # c", " x", "x"][next(4)]);
            out.push('\n');
        }
    }
    let (mut read, mut total, mut literal, mut folded) = (0, 0, 0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        if next(4) == 0 {
            text.push_str("---\n");
        }
        block(&mut text, 0, 0, &mut next);
        total += 1;
        if agreed(&text).is_some() {
            read += 1;
            literal += usize::from(text.contains("|\n") || text.contains("|-\n"));
            folded += usize::from(text.contains("c'") || text.contains("c\""));
        }
    }
    assert!(read * 5 > total, "the subset read only {read} of {total}");
    // Scalars over several lines were read too.
    assert!(
        literal > 50 && folded > 50,
        "literal {literal}, folded {folded}"
    );
}

/// A long run of comment lines is read by both readers (the general
/// parser's comment support refused more than 96 of them while looking
/// ahead; it is off). The text is what the fuzz target found.
#[test]
fn long_runs_of_comments_are_read() {
    let text = include_str!("comments.yaml");
    let value = block_subset(text).expect("in the subset");
    assert_eq!(general(text).as_ref(), Ok(&value));
}

/// A document read while another's tree is still in use (the thread's
/// arena taken) is read in an arena of its own, the same.
#[test]
fn a_document_read_within_another_is_read_the_same() {
    let (outer, inner) = (SERVICE, SLICE);
    let (a, b) = with_block_subset_node(outer, |node| {
        let b = with_block_subset_node(inner, |node| node.map(Node::into_value));
        (node.map(Node::into_value), b)
    });
    assert_eq!(a, general(outer).ok());
    assert_eq!(b, general(inner).ok());
}

//! When each draining real server began draining, kept in a small file
//! (`--drain-state-file`, `/run/kube-ipvs/draining` by default) so a drain
//! that began before a restart ends when it would have without the restart.
//!
//! The kernel keeps the drained real server at weight 0 across a restart,
//! but not when it was set so; without the file, a restarted agent would
//! start the `--ipvs-graceful-period` over, and a crash-looping agent would
//! never finish a drain. `/run` is a tmpfs: a reboot, which empties the IPVS
//! table too, forgets the file with it.
//!
//! Format: one line per draining real server, `<virtual address> <virtual
//! port> <real address> <real port> <unix seconds>` (only TCP real servers
//! drain). Written to a temporary file and renamed over the old one, and
//! only when the set of drains changed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube_ipvs_controller::Draining;
use kube_ipvs_netlink::{Protocol, RealServerKey, VirtualServerKey};

/// The start of each drain, by wall clock.
type Starts = BTreeMap<(VirtualServerKey, RealServerKey), u64>;

/// Reads and writes the drain state file.
#[derive(Debug)]
pub struct DrainStore {
    path: PathBuf,
    /// What the file holds, to skip writing the same again.
    written: Option<Starts>,
}

impl DrainStore {
    /// A store at `path` (its directory is created when first written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DrainStore {
            path: path.into(),
            written: None,
        }
    }

    /// The drains the file records, their starts moved onto the monotonic
    /// clock. A missing file is no drains; an unreadable line is skipped.
    pub fn load(&mut self) -> io::Result<Draining> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let starts = parse(&text);
        let now = Instant::now();
        let wall = unix_secs(SystemTime::now());
        let draining = starts
            .iter()
            .map(|(id, since)| {
                let ago = Duration::from_secs(wall.saturating_sub(*since));
                (*id, now.checked_sub(ago).unwrap_or(now))
            })
            .collect();
        self.written = Some(starts);
        Ok(draining)
    }

    /// Records `draining` (whose starts are on the monotonic clock), unless
    /// the file already holds it.
    pub fn store(&mut self, draining: &Draining) -> io::Result<()> {
        let now = Instant::now();
        let wall = unix_secs(SystemTime::now());
        let starts: Starts = draining
            .iter()
            .map(|(id, since)| {
                let ago = now.saturating_duration_since(*since).as_secs();
                (*id, wall.saturating_sub(ago))
            })
            .collect();
        // A start moved through the clocks may be off by a second; compare
        // the keys, which is what changes when a drain begins or ends.
        if self
            .written
            .as_ref()
            .is_some_and(|w| w.keys().eq(starts.keys()))
        {
            return Ok(());
        }
        write_atomically(&self.path, &render(&starts))?;
        self.written = Some(starts);
        Ok(())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn render(starts: &Starts) -> String {
    let mut out = String::new();
    for ((vs, rs), since) in starts {
        let VirtualServerKey::Inet { address, port, .. } = vs else {
            continue;
        };
        out.push_str(&format!(
            "{address} {port} {} {} {since}\n",
            rs.address, rs.port
        ));
    }
    out
}

fn parse(text: &str) -> Starts {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let address: IpAddr = f.next()?.parse().ok()?;
            let port: u16 = f.next()?.parse().ok()?;
            let rs = RealServerKey {
                address: f.next()?.parse().ok()?,
                port: f.next()?.parse().ok()?,
            };
            let since: u64 = f.next()?.parse().ok()?;
            let vs = VirtualServerKey::Inet {
                protocol: Protocol::Tcp,
                address,
                port,
            };
            Some(((vs, rs), since))
        })
        .collect()
}

fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(vip: &str, rs: &str) -> (VirtualServerKey, RealServerKey) {
        (
            VirtualServerKey::Inet {
                protocol: Protocol::Tcp,
                address: vip.parse().unwrap(),
                port: 80,
            },
            RealServerKey {
                address: rs.parse().unwrap(),
                port: 8080,
            },
        )
    }

    /// A drain begun 20 s before a restart has 20 s behind it after it.
    #[test]
    fn a_drain_keeps_its_start_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/draining");
        let mut store = DrainStore::new(&path);
        assert!(store.load().unwrap().is_empty(), "no file is no drains");
        let now = Instant::now();
        let begun = now - Duration::from_secs(20);
        let draining: Draining = [
            (id("10.96.0.10", "10.244.1.2"), begun),
            (id("fd00::10", "fd00:1::2"), now),
        ]
        .into();
        store.store(&draining).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("fd00::10 80 fd00:1::2 8080 "), "{text}");

        let restored = DrainStore::new(&path).load().unwrap();
        assert_eq!(
            restored.keys().collect::<Vec<_>>(),
            draining.keys().collect::<Vec<_>>()
        );
        let behind = Instant::now().duration_since(restored[&id("10.96.0.10", "10.244.1.2")]);
        assert!(
            (19..=22).contains(&behind.as_secs()),
            "the drain began {behind:?} ago"
        );
    }

    #[test]
    fn bad_lines_are_skipped() {
        let starts = parse("garbage\n10.96.0.1 80 10.244.0.1 8080 100\n1.2.3.4 x 5 6 7\n");
        assert_eq!(starts.len(), 1);
    }
}

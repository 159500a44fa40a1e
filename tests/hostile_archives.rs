//! Hostile archives as a test suite (issue 10, item 10): every malformed or malicious
//! snapshot that `support/hostile.rs` generates goes through each door a snapshot can
//! come in by, on a real node:
//!
//! - REST collection snapshot upload, `POST /collections/{c}/snapshots/upload`;
//! - recovery from a URL, `PUT /collections/{c}/snapshots/recover`, the bytes served by a
//!   one-shot HTTP server on loopback;
//! - REST shard snapshot upload, `POST /collections/{c}/shards/{s}/snapshots/upload`;
//! - start-up, `--snapshot <path>:<collection> --force-snapshot` (a subset: it restarts
//!   the node for every case);
//! - the peer port's `Shards/InstallSnapshot`, a raw gRPC stream as a hostile peer would
//!   send it (on a node where no transfer is pending, which must refuse it unread).
//!
//! What correct means, checked after every case (see [`Case`] for each case's own):
//! - the answer is a 4xx (a refused gRPC status that is not Internal/Unknown; a start-up
//!   that exits or ignores the snapshot), never a 5xx, and it does not show the node's
//!   storage path; an [`Expect::RefusedOrHarmless`] case may also be accepted (200);
//! - the watched collections keep their points: `sibling` always, `target` too (the base
//!   snapshot is `target`'s own data, so even an accepted case leaves the same points),
//!   and after an accepted case `target` still takes writes;
//! - no file outside `target`'s directory changed, appeared or disappeared in the node's
//!   directory (sentinels beside the storage dir and inside `sibling` included; only the
//!   log and the consensus store may change): nothing outside touched, no temp leftovers;
//! - the node's peak RSS (VmHWM, reset before each case) grew by at most 48 MiB;
//! - at the end, a kill -9 and restart keeps every point and sentinel.
//!
//! Every case runs and is reported before a door's test fails, so one run lists every
//! failing case with its reason.

#[path = "support/hostile.rs"]
mod hostile;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use hostile::{kind, Archive, Body, Built, Entry, Seal, BIG, LISTING};
use serde_json::{json, Value};
use support::{cluster, vectors, TestNode};

/// Peak RSS growth allowed for one case.
const MEMORY_BUDGET: u64 = 48 << 20;
const TARGET: &str = "target";
const SIBLING: &str = "sibling";
const DIM: usize = 4;
const OUTSIDE_SENTINEL: &str = "outside-sentinel.txt";
const SIBLING_SENTINEL: &str = "sibling-sentinel.txt";
/// A bound on every wait of the suite (a hung door fails instead of hanging).
const WAIT: Duration = Duration::from_secs(90);

/// What a correct server does with a case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// The untouched base: accepted (proves the generator's sealing is right).
    Accepted,
    /// A 4xx before anything is swapped in.
    Refused,
    /// A 4xx, or accepted with no harm (no 5xx, data intact, collection usable).
    RefusedOrHarmless,
}

/// Which snapshot a door takes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    Collection,
    Shard,
}

/// What a case is built from.
struct Base {
    archive: Archive,
    layout: Layout,
    /// An absolute path outside the storage dir (the outside sentinel).
    outside: String,
    /// A relative name from `target`'s shard dir into `sibling`'s WAL.
    sibling_wal: String,
}

impl Base {
    /// Where the shard's files sit in the archive.
    fn prefix(&self) -> &'static str {
        match self.layout {
            Layout::Collection => "0/",
            Layout::Shard => "",
        }
    }

    fn shard_manifest(&self) -> String {
        format!("{}manifest.json", self.prefix())
    }

    /// A segment file of the shard with data in it (the setup checkpoints every point).
    fn data_entry(&self) -> String {
        let segments = format!("{}segments/", self.prefix());
        self.archive
            .entries
            .iter()
            .find(|e| {
                e.name.starts_with(&segments) && e.kind == kind::REGULAR && !e.body.is_empty()
            })
            .map(|e| e.name.clone())
            .expect("a segment file with data in the base snapshot")
    }
}

/// One hostile archive and what a correct server does with it.
struct Case {
    name: &'static str,
    expect: Expect,
    /// Builds the archive; `None` when the case does not apply to this layout.
    make: fn(&Base) -> Option<Built>,
}

/// Clones the base, lets `edit` mutate it (false: not applicable), seals and builds.
fn mutate(base: &Base, seal: Seal, edit: impl FnOnce(&mut Archive) -> bool) -> Option<Built> {
    let mut archive = base.archive.clone();
    if !edit(&mut archive) {
        return None;
    }
    archive.seal(seal);
    Some(archive.build())
}

/// Edits the first segment of the shard manifest.
fn edit_segment(base: &Base, edit: impl FnOnce(&mut Value)) -> Option<Built> {
    mutate(base, Seal::Honest, |a| {
        a.edit_json(&base.shard_manifest(), |m| {
            edit(&mut m["segments"][0]);
        })
    })
}

/// A JSON object `{"<key>": "aaaa…"}` of [`BIG`] bytes, generated.
fn big_json(key: &str) -> Body {
    Body::Big {
        prefix: format!("{{\"{key}\":\"").into_bytes(),
        fill: b'a',
        len: BIG,
        suffix: b"\"}".to_vec(),
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "control: the base, resealed",
            expect: Expect::Accepted,
            make: |b| mutate(b, Seal::Honest, |_| true),
        },
        Case {
            name: "shard manifest: index file is an absolute path outside the storage",
            expect: Expect::Refused,
            make: |b| edit_segment(b, |s| s["indexes"] = json!({"": b.outside})),
        },
        Case {
            name: "shard manifest: index file is `../../sibling/0/wal/<file>`",
            expect: Expect::Refused,
            make: |b| edit_segment(b, |s| s["indexes"] = json!({"": b.sibling_wal})),
        },
        Case {
            name: "shard manifest: points file is `../../sibling/0/wal/<file>`",
            expect: Expect::Refused,
            make: |b| edit_segment(b, |s| s["points"] = json!([b.sibling_wal])),
        },
        Case {
            name: "shard manifest: points file is an absolute path",
            expect: Expect::Refused,
            make: |b| edit_segment(b, |s| s["points"] = json!([b.outside])),
        },
        Case {
            name: "shard manifest: deleted file climbs out of the storage with `..`",
            expect: Expect::Refused,
            make: |b| {
                edit_segment(b, |s| {
                    s["deleted"] = json!(format!("../../../../{OUTSIDE_SENTINEL}"))
                })
            },
        },
        Case {
            name: "shard manifest: points file nested two levels under segments/",
            expect: Expect::Refused,
            make: |b| {
                let manifest: Value =
                    serde_json::from_slice(b.archive.get(&b.shard_manifest())?.body.bytes())
                        .ok()?;
                let old = manifest["segments"][0]["points"][0].as_str()?.to_string();
                let nested = old.replace("segments/", "segments/sub/");
                mutate(b, Seal::Honest, |a| {
                    let Some(entry) = a.get_mut(&format!("{}{old}", b.prefix())) else {
                        return false;
                    };
                    entry.name = format!("{}{nested}", b.prefix());
                    a.edit_json(&b.shard_manifest(), |m| {
                        m["segments"][0]["points"] = json!([nested])
                    })
                })
            },
        },
        Case {
            name: "shard manifest: one file listed by two segments",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json(&b.shard_manifest(), |m| {
                        let mut twin = m["segments"][0].clone();
                        twin["id"] = json!(m["next_segment"].as_u64().unwrap_or(1) + 5);
                        twin["sealed"] = json!(true);
                        m["segments"].as_array_mut().unwrap().insert(0, twin);
                    })
                })
            },
        },
        Case {
            name: "shard manifest: not JSON",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.set_body(&b.shard_manifest(), Body::Bytes(b"segments: [".to_vec()))
                })
            },
        },
        Case {
            name: "shard manifest: 96 MiB",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.set_body(&b.shard_manifest(), big_json("pad"))
                })
            },
        },
        Case {
            name: "config.json: 96 MiB",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.set_body("config.json", big_json("pad"))
                })
            },
        },
        Case {
            name: "shoal-manifest.json: 96 MiB",
            expect: Expect::Refused,
            make: |b| mutate(b, Seal::Bare, |a| a.set_body(LISTING, big_json("files"))),
        },
        Case {
            name: "GNU long name of 96 MiB",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Bare, |a| {
                    let name = Body::Big {
                        prefix: Vec::new(),
                        fill: b'n',
                        len: BIG,
                        suffix: vec![0],
                    };
                    a.insert_before_listing(Entry::of(kind::GNU_LONG_NAME, "././@LongLink", name));
                    a.insert_before_listing(Entry::file(&format!("{}x", b.prefix()), "x"));
                    true
                })
            },
        },
        Case {
            name: "PAX record of 96 MiB",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Bare, |a| {
                    let len = hostile::pax_len_of(4 + BIG);
                    let record = Body::Big {
                        prefix: format!("{len} path=").into_bytes(),
                        fill: b'p',
                        len,
                        suffix: b"\n".to_vec(),
                    };
                    a.insert_before_listing(Entry::of(kind::PAX, "././@PaxHeader", record));
                    a.insert_before_listing(Entry::file(&format!("{}x", b.prefix()), "x"));
                    true
                })
            },
        },
        Case {
            name: "symlink entry to a file outside",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let name = format!("{}segments/evil", b.prefix());
                    a.insert_before_listing(Entry::link(kind::SYMLINK, &name, &b.outside));
                    true
                })
            },
        },
        Case {
            name: "hard link entry to a file outside",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let name = format!("{}segments/evil", b.prefix());
                    a.insert_before_listing(Entry::link(kind::HARDLINK, &name, &b.outside));
                    true
                })
            },
        },
        Case {
            name: "FIFO entry",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let name = format!("{}fifo", b.prefix());
                    a.insert_before_listing(Entry::of(kind::FIFO, &name, Body::Bytes(Vec::new())));
                    true
                })
            },
        },
        Case {
            name: "character device entry",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let name = format!("{}null", b.prefix());
                    a.insert_before_listing(Entry::of(kind::CHAR, &name, Body::Bytes(Vec::new())));
                    true
                })
            },
        },
        Case {
            name: "entry path with `../`",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.insert_before_listing(Entry::file("../../escaped-entry", "x"));
                    true
                })
            },
        },
        Case {
            name: "absolute entry path",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let path = Path::new(&b.outside).with_file_name("absolute-entry");
                    a.insert_before_listing(Entry::file(&path.to_string_lossy(), "x"));
                    true
                })
            },
        },
        Case {
            name: "an entry twice",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let twin = a.get(&b.shard_manifest()).cloned();
                    twin.map(|t| a.insert_before_listing(t)).is_some()
                })
            },
        },
        Case {
            name: "a file entry, then a child under it",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.insert_before_listing(Entry::file(&format!("{}blocker", b.prefix()), "x"));
                    a.insert_before_listing(Entry::file(
                        &format!("{}blocker/child", b.prefix()),
                        "y",
                    ));
                    true
                })
            },
        },
        Case {
            name: "20k unlisted tiny entries",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Bare, |a| {
                    for i in 0..20_000 {
                        a.insert_before_listing(Entry::file(
                            &format!("{}junk/{i}", b.prefix()),
                            "j",
                        ));
                    }
                    true
                })
            },
        },
        Case {
            name: "digest lie: a segment byte flipped, listing unchanged",
            expect: Expect::Refused,
            make: |b| {
                let wal = b.data_entry();
                mutate(b, Seal::Bare, |a| {
                    let entry = a.get_mut(&wal).unwrap();
                    let mut bytes = entry.body.bytes().to_vec();
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x55;
                    entry.body = Body::Bytes(bytes);
                    true
                })
            },
        },
        Case {
            name: "size lie in the listing",
            expect: Expect::Refused,
            make: |b| {
                let wal = b.data_entry();
                mutate(b, Seal::Bare, |a| {
                    a.edit_json(LISTING, |l| {
                        let size = l["files"][&wal]["size"].as_u64().unwrap();
                        l["files"][&wal]["size"] = json!(size + 1);
                    })
                })
            },
        },
        Case {
            name: "size lie in a tar header",
            expect: Expect::Refused,
            make: |b| {
                let wal = b.data_entry();
                mutate(b, Seal::Bare, |a| {
                    let entry = a.get_mut(&wal).unwrap();
                    entry.header_size = Some(entry.body.len() + 1024);
                    true
                })
            },
        },
        Case {
            name: "a listed file is missing",
            expect: Expect::Refused,
            make: |b| {
                let wal = b.data_entry();
                mutate(b, Seal::Bare, |a| a.remove(&wal))
            },
        },
        Case {
            name: "deep nesting (3000 levels)",
            expect: Expect::RefusedOrHarmless,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    let name = format!("{}{}leaf", b.prefix(), "d/".repeat(3000));
                    a.insert_before_listing(Entry::file(&name, "deep"));
                    true
                })
            },
        },
        Case {
            name: "truncated in the middle",
            expect: Expect::Refused,
            make: |b| {
                let built = mutate(b, Seal::Honest, |_| true)?;
                let half = built.len() / 2;
                Some(built.truncate(half))
            },
        },
        Case {
            name: "empty",
            expect: Expect::Refused,
            make: |_| Some(Built::raw(Vec::new())),
        },
        Case {
            name: "garbage",
            expect: Expect::Refused,
            make: |_| Some(Built::raw(hostile::garbage(64 << 10, 7))),
        },
        Case {
            name: "config lie: dim 8 for dim-4 data",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json("config.json", |c| c["params"]["vectors"]["size"] = json!(8))
                })
            },
        },
        Case {
            name: "config lie: named vector `other` for unnamed data",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json("config.json", |c| {
                        let unnamed = c["params"]["vectors"].clone();
                        c["params"]["vectors"] = json!({ "other": unnamed });
                    })
                })
            },
        },
        Case {
            name: "config lie: distance Euclid for Dot data",
            expect: Expect::RefusedOrHarmless,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json("config.json", |c| {
                        c["params"]["vectors"]["distance"] = json!("Euclid")
                    })
                })
            },
        },
        Case {
            name: "kind lie: the other kind in shoal.json",
            expect: Expect::Refused,
            make: |b| {
                let other = match b.layout {
                    Layout::Collection => "shard",
                    Layout::Shard => "collection",
                };
                mutate(b, Seal::Honest, |a| {
                    a.edit_json("shoal.json", |i| i["kind"] = json!(other))
                })
            },
        },
        Case {
            name: "format lie: format 99 in shoal.json",
            expect: Expect::Refused,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json("shoal.json", |i| i["format"] = json!(99))
                })
            },
        },
        // Last: on today's main it leaves a node that cannot start again.
        Case {
            name: "shard manifest: counters at u64::MAX",
            expect: Expect::RefusedOrHarmless,
            make: |b| {
                mutate(b, Seal::Honest, |a| {
                    a.edit_json(&b.shard_manifest(), |m| {
                        for key in ["last_seq", "wal_start", "next_file", "next_segment"] {
                            m[key] = json!(u64::MAX);
                        }
                        m["segments"][0]["id"] = json!(u64::MAX);
                    })
                })
            },
        },
    ]
}

/// The cases the start-up door runs (each restarts the node twice).
const STARTUP_CASES: &[&str] = &[
    "control: the base, resealed",
    "shard manifest: index file is `../../sibling/0/wal/<file>`",
    "shard manifest: points file is an absolute path",
    "shoal-manifest.json: 96 MiB",
    "symlink entry to a file outside",
    "entry path with `../`",
    "config lie: dim 8 for dim-4 data",
    "truncated in the middle",
];

// ---------------------------------------------------------------------------------------
// The node under attack and what is watched on it.

/// A node with `target` and `sibling` (points in segments and in the WAL), the
/// sentinels planted, and the base snapshots downloaded.
struct Arena {
    node: TestNode,
    /// Points of each watched collection.
    want: BTreeMap<&'static str, BTreeMap<String, Value>>,
    collection_base: Vec<u8>,
    shard_base: Vec<u8>,
    /// `sibling`'s own snapshot, to repair it after a damaging case.
    sibling_base: Vec<u8>,
    failures: Vec<String>,
    /// The node's command line for restarts.
    args: Vec<String>,
}

fn upsert(node: &TestNode, name: &str, ids: std::ops::Range<usize>, seed: u64) {
    let vs = vectors(ids.len(), DIM, seed);
    let points: Vec<Value> = ids
        .zip(vs)
        .map(|(id, v)| json!({"id": id, "vector": v, "payload": {"c": name, "i": id}}))
        .collect();
    node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({ "points": points }),
    ));
}

impl Arena {
    fn new(mut node: TestNode, args: &[String]) -> Arena {
        for name in [TARGET, SIBLING] {
            node.create_collection(
                name,
                json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 1}),
            );
        }
        upsert(&node, TARGET, 1..101, 1);
        upsert(&node, SIBLING, 1..151, 2);
        // A clean stop writes segments; what comes after stays in the WAL.
        node.stop();
        node.launch(args);
        upsert(&node, TARGET, 101..201, 3);
        upsert(&node, SIBLING, 151..301, 4);
        std::fs::write(node.dir().join(OUTSIDE_SENTINEL), "outside").unwrap();
        std::fs::write(
            node.storage_path()
                .join("collections")
                .join(SIBLING)
                .join(SIBLING_SENTINEL),
            "sibling",
        )
        .unwrap();
        // Settle: a clean stop checkpoints what is in the WALs, so that the restarts the
        // suite makes (start-up door, after an accepted case) change no watched file.
        node.stop();
        node.launch(args);
        let desc = node.ok(node.post(&format!("/collections/{TARGET}/snapshots"), &json!({})));
        let file = desc["name"].as_str().expect("snapshot name");
        let collection_base = node.download(&format!("/collections/{TARGET}/snapshots/{file}"));
        let shard_base = node.download(&format!("/collections/{TARGET}/shards/0/snapshot"));
        let desc = node.ok(node.post(&format!("/collections/{SIBLING}/snapshots"), &json!({})));
        let file = desc["name"].as_str().expect("snapshot name");
        let sibling_base = node.download(&format!("/collections/{SIBLING}/snapshots/{file}"));
        let mut want = BTreeMap::new();
        want.insert(TARGET, node.points(TARGET));
        want.insert(SIBLING, node.points(SIBLING));
        assert_eq!(want[TARGET].len(), 200);
        assert_eq!(want[SIBLING].len(), 300);
        Arena {
            node,
            want,
            collection_base,
            shard_base,
            sibling_base,
            failures: Vec::new(),
            args: args.to_vec(),
        }
    }

    fn base(&self, layout: Layout) -> Base {
        let bytes = match layout {
            Layout::Collection => &self.collection_base,
            Layout::Shard => &self.shard_base,
        };
        let wal_dir = self
            .node
            .storage_path()
            .join("collections")
            .join(SIBLING)
            .join("0")
            .join("wal");
        let mut wal: Vec<String> = std::fs::read_dir(&wal_dir)
            .expect("sibling's WAL dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        wal.sort();
        let wal = wal.first().expect("a sibling WAL file").clone();
        Base {
            archive: Archive::parse(bytes),
            layout,
            outside: self.node.dir().join(OUTSIDE_SENTINEL).display().to_string(),
            sibling_wal: format!("../../{SIBLING}/0/wal/{wal}"),
        }
    }

    /// Runs every applicable case through `door`, recording what went wrong. A door that
    /// never `installs` must refuse even the control case.
    fn run(
        &mut self,
        layout: Layout,
        only: Option<&[&str]>,
        installs: bool,
        door: &mut dyn FnMut(&mut TestNode, &str, Built) -> Answer,
    ) {
        let base = self.base(layout);
        for mut case in cases() {
            if !installs && case.expect == Expect::Accepted {
                case.expect = Expect::Refused;
            }
            if only.is_some_and(|names| !names.contains(&case.name)) {
                continue;
            }
            let Some(built) = (case.make)(&base) else {
                continue;
            };
            let before = Watch::take(&self.node);
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                door(&mut self.node, case.name, built)
            }));
            let problems = match outcome {
                Ok(answer) => self.judge(&case, &answer, &before),
                Err(panic) => vec![format!("the door panicked: {}", panic_text(&panic))],
            };
            // For the reader of the output only; nothing is judged on time.
            eprintln!(
                "case `{}`: {:?}, {} problem(s)",
                case.name,
                started.elapsed(),
                problems.len()
            );
            if !problems.is_empty() {
                self.failures
                    .push(format!("{} — {}", case.name, problems.join("; ")));
            }
            if !self.repair() {
                self.failures.push(format!(
                    "{} — the node could not be repaired; stopped here",
                    case.name
                ));
                return;
            }
        }
    }

    /// The sentinel files and their content.
    fn sentinels(&self) -> [(std::path::PathBuf, &'static str); 2] {
        [
            (self.node.dir().join(OUTSIDE_SENTINEL), "outside"),
            (
                self.node
                    .storage_path()
                    .join("collections")
                    .join(SIBLING)
                    .join(SIBLING_SENTINEL),
                "sibling",
            ),
        ]
    }

    /// Puts the watched collections back as they were (from their base snapshots) after
    /// a case that damaged them, so that the next case is judged on its own; false if
    /// the node cannot be brought back.
    fn repair(&mut self) -> bool {
        if !self.node.is_running() {
            let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.node.restart_after_kill9()
            }));
            if restarted.is_err() {
                self.failures.push(format!(
                    "the node does not start again: {}",
                    last_error(&self.node)
                ));
                return false;
            }
        }
        // A case that destroyed a sentinel was recorded; put it back for the next.
        for (path, text) in self.sentinels() {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
                std::fs::write(&path, text).unwrap();
            }
        }
        let bases = [
            (TARGET, self.collection_base.clone()),
            (SIBLING, self.sibling_base.clone()),
        ];
        for (name, bytes) in bases {
            let intact = self.node.get(&format!("/collections/{name}")).0 == 200
                && self.node.points(name) == self.want[name];
            if intact {
                continue;
            }
            if self.node.get(&format!("/collections/{name}")).0 == 404 {
                let (status, body) = self.node.put(
                    &format!("/collections/{name}"),
                    &json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 1}),
                );
                if status != 200 {
                    self.failures
                        .push(format!("re-creating `{name}` failed: {status} {body}"));
                    return false;
                }
            }
            let path = format!("/collections/{name}/snapshots/upload?wait=true");
            let (status, body) = self.node.upload(&path, bytes);
            if status != 200 || self.node.points(name) != self.want[name] {
                self.failures.push(format!(
                    "repairing `{name}` failed: {status} {}",
                    short(&body.to_string())
                ));
                return false;
            }
        }
        true
    }

    /// Every check of a case's outcome (empty: correct).
    fn judge(&mut self, case: &Case, answer: &Answer, before: &Watch) -> Vec<String> {
        let mut problems = Vec::new();
        let storage = self.node.storage_path().display().to_string();
        if answer.text.contains(&storage) {
            problems.push(format!(
                "the answer shows the storage path: {}",
                answer.text
            ));
        }
        let ok = match case.expect {
            Expect::Accepted => answer.accepted,
            Expect::Refused => answer.refused,
            Expect::RefusedOrHarmless => answer.refused || answer.accepted,
        };
        if !ok {
            problems.push(format!("expected {:?}, got {}", case.expect, answer.text));
        }
        if self.node.is_running() {
            problems.extend(memory_problem(&self.node, before));
        }
        if self.node.is_running() && answer.accepted && case.expect != Expect::Accepted {
            // What an accepted archive planted shows at the next checkpoint (a clean
            // stop) or open: restart before looking.
            let args = self.args.clone();
            let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.node.restart_with_args(&args)
            }));
            if restarted.is_err() {
                problems.push(format!(
                    "after accepting it the node does not start again: {}",
                    last_error(&self.node)
                ));
            }
        }
        if self.node.is_running() {
            let after = Watch::take(&self.node);
            problems.extend(before.compare(&after));
            for (name, want) in &self.want {
                let (status, _) = self.node.get(&format!("/collections/{name}"));
                if status != 200 {
                    problems.push(format!("`{name}` answers {status}"));
                    continue;
                }
                let got = self.node.points(name);
                if &got != want {
                    problems.push(format!(
                        "`{name}` changed: {} points, {} as before",
                        got.len(),
                        got.iter()
                            .filter(|(id, p)| want.get(*id) == Some(p))
                            .count()
                    ));
                }
            }
            if answer.accepted {
                problems.extend(still_writable(&self.node));
            }
        }
        problems
    }

    /// Kill -9, restart, and every point and sentinel is still there; then fails the
    /// test with every recorded failure.
    fn finish(mut self, door: &str) {
        let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.node.restart_after_kill9()
        }));
        if restarted.is_err() {
            self.failures.push(format!(
                "the node does not start again after kill -9: {}",
                last_error(&self.node)
            ));
        }
        for (name, want) in &self.want {
            if !self.node.is_running() {
                break;
            }
            let got = self.node.points(name);
            if &got != want {
                self.failures.push(format!(
                    "after kill -9 and restart, `{name}` has {} points ({} as before)",
                    got.len(),
                    got.iter()
                        .filter(|(id, p)| want.get(*id) == Some(p))
                        .count()
                ));
            }
        }
        for (path, text) in self.sentinels() {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
                self.failures.push(format!(
                    "after kill -9 and restart, {} changed",
                    path.display()
                ));
            }
        }
        assert!(
            self.failures.is_empty(),
            "{door}: {} failing case(s):\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

/// After an accepted case, `target` still takes a write (and it is undone).
fn still_writable(node: &TestNode) -> Vec<String> {
    let probe = json!({"points": [{"id": 999_999, "vector": vec![0.5; DIM]}]});
    let (status, body) = node.put(&format!("/collections/{TARGET}/points?wait=true"), &probe);
    if status != 200 {
        return vec![format!(
            "`{TARGET}` refuses a write after the case: {status} {body}"
        )];
    }
    let (status, body) = node.post(
        &format!("/collections/{TARGET}/points/delete?wait=true"),
        &json!({"points": [999_999]}),
    );
    if status != 200 {
        return vec![format!(
            "`{TARGET}` refuses a delete after the case: {status} {body}"
        )];
    }
    Vec::new()
}

/// The last error line of the node's log (for the report).
fn last_error(node: &TestNode) -> String {
    let log = node.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.starts_with("shoal:"))
        .unwrap_or("no error line in the log");
    short(line)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    text.chars().take(400).collect()
}

/// What a door answered.
struct Answer {
    refused: bool,
    accepted: bool,
    /// For the report: the status and message.
    text: String,
}

impl Answer {
    fn http(status: u16, body: &Value, big: bool) -> Answer {
        let text = format!("{status} {}", short(&body.to_string()));
        Answer {
            // A big upload may see the connection closed after an early 4xx.
            refused: (400..500).contains(&status) || (big && status == 0),
            accepted: status == 200,
            text,
        }
    }
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The watched state of a node: its file tree (outside `target`'s directory and the
/// files that change by themselves) and its memory.
struct Watch {
    files: BTreeMap<String, String>,
    /// The process and its RSS when VmHWM was reset.
    rss: Option<(u32, u64)>,
}

impl Watch {
    fn take(node: &TestNode) -> Watch {
        let mut files = BTreeMap::new();
        walk(node.dir(), node.dir(), &mut files);
        let rss = node.pid().and_then(|pid| {
            // Resets VmHWM to the current RSS (our own child process).
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").ok()?;
            Some((pid, status_kib(pid, "VmRSS:")?))
        });
        Watch { files, rss }
    }

    fn compare(&self, after: &Watch) -> Vec<String> {
        let mut problems = Vec::new();
        let changed: Vec<&String> = self
            .files
            .iter()
            .filter(|(k, v)| match after.files.get(*k) {
                Some(now) => now != *v,
                // The server's own temp dirs (left by an earlier case) may go away.
                None => !is_server_temp(k),
            })
            .map(|(k, _)| k)
            .chain(after.files.keys().filter(|k| !self.files.contains_key(*k)))
            .collect();
        if !changed.is_empty() {
            let shown: Vec<&str> = changed.iter().take(5).map(|s| s.as_str()).collect();
            problems.push(format!(
                "{} path(s) outside `{TARGET}` changed, appeared or vanished: {shown:?}",
                changed.len()
            ));
        }
        problems
    }
}

/// A path inside one of the server's temporary directories (a recovery's unpack dir, a
/// collection being deleted) or the storage's temp dir.
fn is_server_temp(rel: &str) -> bool {
    rel.split('/')
        .any(|part| part.starts_with(".recovery-") || part.starts_with(".deleted-"))
        || rel.starts_with("storage/tmp/")
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Peak RSS growth since `before` was taken (VmHWM was reset then).
fn memory_problem(node: &TestNode, before: &Watch) -> Option<String> {
    let (pid, rss) = before.rss?;
    if node.pid() != Some(pid) {
        return None; // restarted (the start-up door): its peak is not this case's
    }
    let peak = status_kib(pid, "VmHWM:")?;
    let growth = peak.saturating_sub(rss);
    (growth > MEMORY_BUDGET).then(|| format!("peak RSS grew by {} MiB", growth >> 20))
}

/// Records every file (size and sha256) and directory under `dir`, skipping what
/// changes by itself: the log, the consensus store and `target`'s directory.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "node.log"
            || rel.starts_with("storage/raft")
            || rel == format!("storage/collections/{TARGET}")
            || out.len() > 200_000
        {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.insert(rel, "dir".into());
            walk(root, &path, out);
        } else {
            let digest = std::fs::read(&path)
                .map(|b| Body::Bytes(b).sha256())
                .unwrap_or_else(|e| format!("unreadable: {e}"));
            out.insert(rel, format!("{} {digest}", meta.len()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The doors.

/// A multipart upload streamed from the built archive (big ones never in memory).
fn upload(node: &TestNode, path: &str, built: Built) -> Answer {
    let big = built.is_big();
    let len = built.len();
    let part = reqwest::blocking::multipart::Part::reader_with_length(built.into_reader(), len)
        .file_name("hostile.snapshot");
    let form = reqwest::blocking::multipart::Form::new().part("snapshot", part);
    let client = reqwest::blocking::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap();
    match client.post(node.url(path)).multipart(form).send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Answer::http(status, &body, big)
        }
        Err(err) => Answer::http(0, &Value::String(format!("upload failed: {err}")), big),
    }
}

/// Serves `built` once on a loopback port; returns the URL and the server's thread.
fn serve_once(built: Built) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return,
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let len = built.len();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
        // The node may stop reading once it has refused: a write error ends the serving.
        let _ = std::io::copy(&mut built.into_reader(), &mut stream);
    });
    (format!("http://127.0.0.1:{port}/hostile.snapshot"), handle)
}

fn recover_from_url(node: &TestNode, built: Built) -> Answer {
    let big = built.is_big();
    let (url, server) = serve_once(built);
    let (status, body) = node.put(
        &format!("/collections/{TARGET}/snapshots/recover?wait=true"),
        &json!({ "location": url }),
    );
    // The server thread ends by itself once the node closed the connection, the bytes
    // are out, or (never connected) its accept wait ran out.
    drop(server);
    Answer::http(status, &body, big)
}

/// Streams `built` to the node's peer port as `Shards/InstallSnapshot` for `target`'s
/// shard 0, in 1 MiB chunks, the last flagged.
fn install_over_peer_port(node: &TestNode, built: Built) -> Answer {
    use shoal::transport::proto::shards_client::ShardsClient;
    use shoal::transport::proto::SnapshotChunk;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = cluster::peer_uri(node);
    let result = runtime.block_on(async move {
        let mut client = ShardsClient::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        // Generated chunk by chunk: a big archive is never in memory.
        let stream = futures::stream::unfold(
            (built.into_reader(), true, false),
            |(mut reader, first, done)| async move {
                if done {
                    return None;
                }
                let mut data = vec![0u8; 1 << 20];
                let mut filled = 0;
                while filled < data.len() {
                    match reader.read(&mut data[filled..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => filled += n,
                    }
                }
                let last = filled < data.len();
                data.truncate(filled);
                let chunk = SnapshotChunk {
                    collection: if first {
                        TARGET.to_string()
                    } else {
                        String::new()
                    },
                    shard_id: 0,
                    min_applied_index: 0,
                    data: data.into(),
                    last,
                    crc32_files: false,
                };
                Some((chunk, (reader, false, last)))
            },
        );
        tokio::time::timeout(WAIT, client.install_snapshot(stream))
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map(|r| r.into_inner().points)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    });
    match result {
        Ok(points) => Answer {
            refused: false,
            accepted: true,
            text: format!("OK ({points} points)"),
        },
        Err(text) => Answer {
            refused: !["Internal", "Unknown", "Unavailable", "DeadlineExceeded"]
                .iter()
                .any(|code| text.starts_with(code))
                && text != "no answer in time",
            accepted: false,
            text: short(&text),
        },
    }
}

/// Restores `target` from `built` at start-up with force; the node either refuses to
/// start (any exit) or starts; then it is restarted without flags for the checks.
fn restore_at_startup(node: &mut TestNode, scratch: &Path, name: &str, built: Built) -> Answer {
    let stem: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let file = scratch.join(format!("{stem}.snapshot"));
    let mut out = std::fs::File::create(&file).unwrap();
    std::io::copy(&mut built.into_reader(), &mut out).unwrap();
    drop(out);
    let arg = format!("{}:{TARGET}", file.display());
    node.spawn_no_wait(&["--snapshot", &arg, "--force-snapshot"]);
    let deadline = Instant::now() + WAIT;
    let http = reqwest::blocking::Client::new();
    let started = loop {
        if !node.is_running() {
            break false;
        }
        let ready = http
            .get(node.url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break true;
        }
        if Instant::now() > deadline {
            node.kill9();
            return Answer {
                refused: false,
                accepted: false,
                text: "neither started nor exited in time".into(),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_file(&file);
    node.restart_with_args(&[]);
    Answer {
        // A start-up has no status: exiting is refusing; starting is accepting, and the
        // checks decide whether it did harm.
        refused: !started,
        accepted: started,
        text: if started {
            "started".into()
        } else {
            "exited".into()
        },
    }
}

// ---------------------------------------------------------------------------------------
// One test per door, each with its own node.

#[test]
fn hostile_archives_via_rest_upload() {
    let mut arena = Arena::new(TestNode::start(), &[]);
    arena.run(Layout::Collection, None, true, &mut |node, _, built| {
        upload(
            node,
            &format!("/collections/{TARGET}/snapshots/upload?wait=true"),
            built,
        )
    });
    arena.finish("REST upload");
}

#[test]
fn hostile_archives_via_url_recovery() {
    let mut arena = Arena::new(TestNode::start(), &[]);
    arena.run(Layout::Collection, None, true, &mut |node, _, built| {
        recover_from_url(node, built)
    });
    arena.finish("URL recovery");
}

#[test]
fn hostile_archives_via_shard_upload() {
    let mut arena = Arena::new(TestNode::start(), &[]);
    arena.run(Layout::Shard, None, true, &mut |node, _, built| {
        upload(
            node,
            &format!("/collections/{TARGET}/shards/0/snapshots/upload?wait=true"),
            built,
        )
    });
    arena.finish("shard upload");
}

#[test]
fn hostile_archives_via_startup_flags() {
    let mut arena = Arena::new(TestNode::start(), &[]);
    let scratch = tempfile::tempdir().unwrap();
    arena.run(
        Layout::Collection,
        Some(STARTUP_CASES),
        true,
        &mut |node, name, built| restore_at_startup(node, scratch.path(), name, built),
    );
    arena.finish("start-up --snapshot --force-snapshot");
}

#[test]
fn hostile_archives_via_peer_install() {
    let node = cluster::first_peer();
    let args = vec!["--uri".to_string(), cluster::peer_uri(&node)];
    let mut arena = Arena::new(node, &args);
    arena.run(Layout::Shard, None, false, &mut |node, _, built| {
        install_over_peer_port(node, built)
    });
    arena.finish("peer InstallSnapshot");
}

/// The generator itself, without a node: what it builds is the tar it claims to be.
#[test]
fn the_generator_writes_what_it_says() {
    // PAX records count their own length.
    for len in [0usize, 1, 5, 90, 94, 95, 96, 994, 995, 996, 9_994] {
        let record = hostile::pax_record("path", &vec![b'v'; len]);
        let stated: usize = String::from_utf8_lossy(&record)
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(stated, record.len(), "value of {len} bytes");
    }
    // A generated body reads as its stated length and digest, through both readers.
    let body = Body::Big {
        prefix: b"{\"a\":\"".to_vec(),
        fill: b'x',
        len: (3 << 20) + 7,
        suffix: b"\"}".to_vec(),
    };
    let mut archive = Archive::default();
    archive
        .entries
        .push(Entry::of(kind::REGULAR, "big.json", body.clone()));
    let built = archive.build();
    let mut owned = Vec::new();
    built.clone().into_reader().read_to_end(&mut owned).unwrap();
    assert_eq!(owned, built.to_vec());
    assert_eq!(owned.len() as u64, built.len());
    let parsed = Archive::parse(&owned);
    assert_eq!(parsed.entries[0].body.sha256(), body.sha256());

    // GNU long names, directories and an honest listing: shoal's own reader accepts it and
    // unpacks every file where its name says. A PAX header is refused (shoal never writes
    // one), even in an otherwise honest archive.
    let mut archive = Archive::default();
    let long = format!("0/{}/file", "n".repeat(150));
    archive
        .entries
        .push(Entry::of(kind::DIR, "0", Body::Bytes(Vec::new())));
    archive.entries.push(Entry::file(&long, "long"));
    archive.seal(Seal::Honest);
    let dir = tempfile::tempdir().unwrap();
    shoal::snapshot::archive::unpack_verified(archive.build().to_vec().as_slice(), dir.path())
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), b"long");
    let mut with_pax = archive.clone();
    // Too long for the header: only the PAX record names it right.
    let pax_name = format!("0/{}/pax-named", "p".repeat(120));
    let mut pax = Entry::file(&pax_name, "pax");
    pax.style = hostile::NameStyle::Pax;
    with_pax.entries.push(pax);
    with_pax.seal(Seal::Honest);
    let dir = tempfile::tempdir().unwrap();
    let bytes = with_pax.build().to_vec();
    assert!(shoal::snapshot::archive::unpack_verified(bytes.as_slice(), dir.path()).is_err());

    // The same archive sealed bare after a change fails shoal's check; truncated, too.
    let mut bare = archive.clone();
    assert!(bare.set_body(&long, Body::Bytes(b"LONG".to_vec())));
    bare.seal(Seal::Bare);
    let dir = tempfile::tempdir().unwrap();
    let bytes = bare.build().to_vec();
    assert!(shoal::snapshot::archive::unpack_verified(bytes.as_slice(), dir.path()).is_err());
    let cut = archive.build().truncate(1000).to_vec();
    assert_eq!(cut.len(), 1000);
    let dir = tempfile::tempdir().unwrap();
    assert!(shoal::snapshot::archive::unpack_verified(cut.as_slice(), dir.path()).is_err());

    // An index, when the original has one, lists every entry but the listing and itself
    // with its size, and the listing covers the index; shoal's reader accepts it.
    let mut indexed = Archive::default();
    indexed.entries.push(Entry::file(hostile::INDEX, "{}"));
    indexed.entries.push(Entry::file("a", "123"));
    indexed.had_index = true;
    indexed.seal(Seal::Honest);
    assert_eq!(indexed.entries[0].name, hostile::INDEX);
    let index: Value = serde_json::from_slice(indexed.entries[0].body.bytes()).unwrap();
    assert_eq!(index["format"], 1);
    assert_eq!(index["files"]["a"], 3);
    assert!(index["files"].get(LISTING).is_none(), "{index}");
    assert!(index["files"].get(hostile::INDEX).is_none(), "{index}");
    let dir = tempfile::tempdir().unwrap();
    shoal::snapshot::archive::unpack_verified(indexed.build().to_vec().as_slice(), dir.path())
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"123");
}

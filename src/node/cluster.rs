//! This peer's place in the cluster: starting as the first peer or joining through a
//! bootstrap peer, answering other peers' joins, promoting caught-up learners, removing
//! peers, and the status `GET /cluster` shows.
//!
//! # Joining
//!
//! With `cluster.enabled`, a new storage either founds a cluster (`--uri`, no
//! `--bootstrap`: a one-voter group that records its URI in the log) or joins one
//! (`--bootstrap URI`): it calls `Join` on the bootstrap peer, which proposes it as a Raft
//! *learner* through consensus (any member can, raft-rs forwards proposals to the leader)
//! and answers with the founding voter and the address book. The joiner stores a membership
//! of that one voter plus the addresses, starts with an empty log, and is caught up by the
//! leader with entries or a Raft snapshot. The leader's promoter (here) turns one caught-up
//! learner at a time into a voter.
//!
//! A storage that already belongs to a group ignores `--bootstrap`: the peer rejoins with its
//! stored id, log and addresses. If its `--uri` changed, it announces the new one through
//! consensus.
//!
//! # Proposals
//!
//! [`Node::propose`] waits (bounded) until some leader is known before it proposes, so an
//! operation sent during an election is not refused needlessly; a peer cut off from the
//! majority answers 503 (no leader) or 408 (the proposal went to a leader that cannot commit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{blocking, Node};
use crate::consensus::log_store::LogStore;
use crate::consensus::op::ClusterOp;
use crate::consensus::{Consensus, MembershipChange, Role};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::transport::join::{join, JoinAnswer, JoinConfig};
use crate::transport::{normalize_uri, GrpcTransport, PeerSecurity, TransportConfig};
use crate::types::PeerId;

/// Raft's election timeout is 20 ticks: a proposal waits for a leader at most two of them.
const LEADER_WAIT_TICKS: u64 = 40;
/// The promoter looks at the learners every this many ticks.
const PROMOTE_EVERY_TICKS: u64 = 5;
/// Pause between two tries of a membership change that met another one in progress.
const MEMBERSHIP_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The `--uri` and `--bootstrap` flags.
#[derive(Debug, Clone, Default)]
pub struct ClusterArgs {
    pub uri: Option<String>,
    pub bootstrap: Option<String>,
}

/// What a clustered node keeps about its membership.
pub(crate) struct Membership {
    pub transport: Arc<GrpcTransport>,
    /// The cluster's founding voter, told to joining peers.
    pub first_peer: PeerId,
    /// One join answered at a time on this peer.
    join_lock: tokio::sync::Mutex<()>,
}

/// The outcome of [`prepare`]: how to start consensus, and what to do once it runs.
pub(crate) struct Prepared {
    pub membership: Membership,
    /// This peer's URI as consensus should record it.
    pub this_uri: Option<String>,
    /// The storage belonged to a group before this start (a restart).
    pub restarted: bool,
}

/// Readies the storage of a clustered node before consensus starts: founds, joins, or
/// rejoins (see the module doc). `None` when clustering is disabled.
pub(crate) async fn prepare(
    settings: &Settings,
    args: &ClusterArgs,
    security: &PeerSecurity,
) -> Result<Option<Prepared>> {
    if !settings.cluster.enabled {
        if args.uri.is_some() || args.bootstrap.is_some() {
            return Err(Error::BadInput(
                "--uri and --bootstrap need cluster.enabled=true (QDRANT__CLUSTER__ENABLED=true)"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let uri = args
        .uri
        .as_deref()
        .map(normalize_uri)
        .transpose()
        .map_err(|e| Error::BadInput(format!("--uri: {e}")))?;
    let bootstrap = args
        .bootstrap
        .as_deref()
        .map(normalize_uri)
        .transpose()
        .map_err(|e| Error::BadInput(format!("--bootstrap: {e}")))?;
    if let Some(uri) = &uri {
        check_scheme("--uri", uri, settings.cluster.p2p.enable_tls)?;
    }
    if let Some(bootstrap) = &bootstrap {
        check_scheme("--bootstrap", bootstrap, settings.cluster.p2p.enable_tls)?;
    }

    let storage_path = settings.storage.storage_path.clone();
    let mut store = blocking(move || LogStore::open(&storage_path)).await?;
    let peer_id = store.peer_id();
    let restarted = store.is_initialized();
    let mut this_uri = uri.clone();
    if restarted {
        if let Some(bootstrap) = &bootstrap {
            tracing::info!(%bootstrap, peer_id, "this peer already belongs to a cluster; --bootstrap ignored");
        }
    } else if let Some(bootstrap) = bootstrap {
        if uri.as_ref() == Some(&bootstrap) {
            return Err(Error::BadInput(format!(
                "--bootstrap {bootstrap} is this peer's own --uri; give the URI of a member of the cluster to join"
            )));
        }
        let config = JoinConfig {
            total_timeout: Duration::from_secs(settings.cluster.consensus.bootstrap_timeout_sec),
            // The bootstrap peer answers once the change is applied; allow for an election.
            call_timeout: Duration::from_millis(settings.cluster.grpc_timeout_ms)
                .max(Duration::from_secs(15)),
            connect_timeout: Duration::from_millis(settings.cluster.connection_timeout_ms),
            security: security.clone(),
        };
        tracing::info!(%bootstrap, peer_id, "joining the cluster");
        let answer = join(
            &bootstrap,
            peer_id,
            uri.as_deref(),
            settings.cluster.p2p.port,
            &config,
        )
        .await?;
        store = seed_joined_store(store, peer_id, answer.clone()).await?;
        tracing::info!(first_peer = answer.first_peer_id, uri = %answer.uri, peers = answer.peers.len(), "joined the cluster as a learner; catching up");
        this_uri = Some(answer.uri);
    } else if uri.is_none() {
        return Err(Error::BadInput(
            "this peer starts a new cluster (its storage is new and no --bootstrap was given): \
             --uri is required so that other peers can reach it, e.g. --uri http://<this host>:<cluster.p2p.port>"
                .into(),
        ));
    }
    let first_peer = blocking(move || store.first_voter()).await?;

    let transport = GrpcTransport::new(
        tokio::runtime::Handle::current(),
        TransportConfig {
            queue_size: settings.cluster.consensus.max_message_queue_size,
            call_timeout: Duration::from_millis(settings.cluster.grpc_timeout_ms),
            connect_timeout: Duration::from_millis(settings.cluster.connection_timeout_ms),
            security: security.clone(),
        },
    );
    Ok(Some(Prepared {
        membership: Membership {
            transport: Arc::new(transport),
            first_peer,
            join_lock: tokio::sync::Mutex::new(()),
        },
        this_uri,
        restarted,
    }))
}

/// A peer URI's scheme must match the peer port's: `https://` with `cluster.p2p.enable_tls`,
/// `http://` without (the other peers would not reach this one, or this one them).
fn check_scheme(flag: &str, uri: &str, tls: bool) -> Result<()> {
    let https = uri.starts_with("https://");
    if https == tls {
        return Ok(());
    }
    let (want, why) = if tls {
        ("https://", "cluster.p2p.enable_tls is on")
    } else {
        ("http://", "cluster.p2p.enable_tls is off")
    };
    Err(Error::BadInput(format!(
        "{flag} {uri} must start with {want} because {why}"
    )))
}

/// Stores what the cluster told a joining peer: a membership of the founding voter and the
/// address book.
async fn seed_joined_store(
    mut store: LogStore,
    peer_id: PeerId,
    answer: JoinAnswer,
) -> Result<LogStore> {
    if answer.first_peer_id == 0 || answer.first_peer_id == peer_id {
        return Err(Error::service(format!(
            "the bootstrap peer named {} as the cluster's first peer; cannot start from that",
            answer.first_peer_id
        )));
    }
    blocking(move || {
        store.bootstrap_with_peers(vec![answer.first_peer_id], &answer.peers)?;
        Ok(store)
    })
    .await
}

/// Starts what a clustered node runs beside consensus: the learner promoter, the recovery
/// of Dead replicas and, after a restart with a changed `--uri`, its announcement.
pub(crate) fn start_background(node: &Arc<Node>, restarted: bool, this_uri: Option<String>) {
    let tick = Duration::from_millis(node.settings.cluster.consensus.tick_period_ms);
    tokio::spawn(promote_learners(
        node.consensus.clone(),
        tick * PROMOTE_EVERY_TICKS as u32,
    ));
    tokio::spawn(super::recovery::run(node.clone()));
    let check_every = Duration::from_secs(node.settings.cluster.consistency_check_interval_sec);
    tokio::spawn(super::consistency::run(node.clone(), check_every));
    if let (true, Some(uri)) = (restarted, this_uri) {
        let me = node.consensus.peer_id();
        if node.consensus.peers().get(&me) != Some(&uri) {
            tokio::spawn(announce_uri(node.clone(), uri));
        }
    }
}

/// On the leader: promotes one learner at a time to voter once it has every committed
/// entry and the leader has nothing uncommitted (so the new voter is not needed to commit
/// anything it lacks). Ends when consensus stops.
async fn promote_learners(consensus: Consensus, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let info = consensus.raft_info();
        if !info.running {
            return;
        }
        if info.role != Role::Leader
            || info.pending_membership_change
            || info.last_index != info.commit
        {
            continue;
        }
        let caught_up = info
            .learners
            .iter()
            .find(|learner| info.matched.get(learner).is_some_and(|m| *m >= info.commit));
        let Some(&peer) = caught_up else { continue };
        match consensus
            .change_membership(MembershipChange::AddVoter { peer, uri: None })
            .await
        {
            Ok(()) => tracing::info!(peer, "promoted a caught-up learner to voter"),
            Err(err) => tracing::debug!(peer, %err, "promoting a learner failed; will retry"),
        }
    }
}

/// Records this peer's new URI in the log (a restart with a changed `--uri`).
async fn announce_uri(node: Arc<Node>, uri: String) {
    let me = node.consensus.peer_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = node.consensus.raft_info();
        if !info.running {
            return;
        }
        let change = if info.learners.contains(&me) {
            MembershipChange::AddLearner {
                peer: me,
                uri: Some(uri.clone()),
            }
        } else {
            MembershipChange::AddVoter {
                peer: me,
                uri: Some(uri.clone()),
            }
        };
        match node.wait_for_leader().await {
            Ok(()) => match node.consensus.change_membership(change).await {
                Ok(()) => {
                    tracing::info!(%uri, "announced this peer's new URI to the cluster");
                    return;
                }
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(%err, "announcing this peer's URI failed; retrying")
                }
                Err(err) => {
                    tracing::error!(%uri, %err, "could not announce this peer's new URI");
                    return;
                }
            },
            Err(_) if Instant::now() < deadline => {}
            Err(err) => {
                tracing::error!(%uri, %err, "could not announce this peer's new URI");
                return;
            }
        }
        tokio::time::sleep(MEMBERSHIP_RETRY_PAUSE).await;
    }
}

/// `GET /cluster`, in Qdrant's shape.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClusterStatus {
    Disabled,
    Enabled(ClusterInfo),
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub peer_id: PeerId,
    pub peers: BTreeMap<PeerId, PeerInfo>,
    pub raft_info: RaftStatus,
    pub consensus_thread_status: ConsensusThreadStatus,
    /// Peer URI → failed deliveries since the last successful one.
    pub message_send_failures: BTreeMap<String, MessageSendErrors>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub uri: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RaftStatus {
    pub term: u64,
    pub commit: u64,
    pub pending_operations: usize,
    pub leader: Option<PeerId>,
    pub role: Option<&'static str>,
    pub is_voter: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "consensus_thread_status", rename_all = "snake_case")]
pub enum ConsensusThreadStatus {
    Working { last_update: String },
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageSendErrors {
    pub count: usize,
    pub latest_error: Option<String>,
    pub latest_error_timestamp: Option<String>,
}

impl Node {
    fn membership(&self) -> Result<&Membership> {
        self.membership
            .as_ref()
            .ok_or_else(|| Error::BadRequest("Distributed mode disabled.".into()))
    }

    /// Proposes a metadata operation once a leader is known; returns when it is applied here.
    pub(crate) async fn propose(&self, op: ClusterOp) -> Result<()> {
        self.wait_for_leader().await?;
        self.consensus.propose(op).await
    }

    /// Waits (bounded by two election timeouts) until this peer knows a leader.
    async fn wait_for_leader(&self) -> Result<()> {
        let tick = Duration::from_millis(self.settings.cluster.consensus.tick_period_ms);
        let deadline = Instant::now() + tick * LEADER_WAIT_TICKS as u32;
        loop {
            let info = self.consensus.raft_info();
            if !info.running {
                return Err(Error::Unavailable("consensus is not running".into()));
            }
            if info.leader.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "no consensus leader: this peer cannot reach a majority of the cluster's voters; retry later"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds a joining peer as a learner (the `Join` call of the peer service) and answers
    /// with the founding voter and every known address. Idempotent for a peer that joins
    /// again with the same id and URI; refuses an id or URI that belongs to another peer.
    pub async fn add_peer(&self, peer: PeerId, uri: &str) -> Result<JoinAnswer> {
        let membership = self.membership()?;
        if peer == 0 {
            return Err(Error::BadInput("peer id 0 is not a valid peer id".into()));
        }
        let uri = normalize_uri(uri)?;
        let _one_at_a_time = membership.join_lock.lock().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let peers = self.consensus.peers();
            let info = self.consensus.raft_info();
            let member = info.voters.contains(&peer) || info.learners.contains(&peer);
            match peers.get(&peer) {
                Some(known) if *known == uri && member => break,
                Some(known) if *known != uri => {
                    return Err(Error::AlreadyExists(format!(
                        "peer id {peer} already belongs to the peer at {known}; \
                         each peer needs its own storage directory (never copy one between peers)"
                    )))
                }
                _ => {}
            }
            if let Some((other, _)) = peers.iter().find(|(id, u)| **u == uri && **id != peer) {
                return Err(Error::AlreadyExists(format!(
                    "{uri} is already the address of peer {other}; remove that peer first \
                     (DELETE /cluster/peer/{other}) or give this peer another --uri"
                )));
            }
            let change = if info.voters.contains(&peer) {
                MembershipChange::AddVoter {
                    peer,
                    uri: Some(uri.clone()),
                }
            } else {
                MembershipChange::AddLearner {
                    peer,
                    uri: Some(uri.clone()),
                }
            };
            let result = match self.wait_for_leader().await {
                Ok(()) => self.consensus.change_membership(change).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => {
                    tracing::info!(peer, %uri, "added a joining peer as a learner");
                    break;
                }
                Err(Error::Conflict(_) | Error::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(MEMBERSHIP_RETRY_PAUSE).await;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(JoinAnswer {
            first_peer_id: membership.first_peer,
            peers: self.consensus.peers(),
            uri,
        })
    }

    /// `DELETE /cluster/peer/{id}`: removes a peer from the cluster. A peer that holds
    /// shards is kept unless `force` (its shards are then unreachable until moved).
    pub async fn remove_peer(&self, peer: PeerId, force: bool) -> Result<()> {
        self.membership()?;
        let info = self.consensus.raft_info();
        if !info.voters.contains(&peer) && !info.learners.contains(&peer) {
            return Err(Error::NotFound(format!(
                "Peer {peer} is not a member of the cluster"
            )));
        }
        let has_shards = self.consensus.state().collections.values().any(|c| {
            c.shards
                .values()
                .any(|replicas| replicas.contains_key(&peer))
        });
        if has_shards && !force {
            return Err(Error::BadRequest(format!(
                "Cannot remove peer {peer} as there are shards on it"
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.wait_for_leader().await?;
            match self
                .consensus
                .change_membership(MembershipChange::Remove { peer })
                .await
            {
                Err(Error::Conflict(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(MEMBERSHIP_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// `GET /cluster`.
    pub fn cluster_status(&self) -> ClusterStatus {
        let Some(membership) = &self.membership else {
            return ClusterStatus::Disabled;
        };
        let info = self.consensus.raft_info();
        let me = self.consensus.peer_id();
        let addresses = self.consensus.peers();
        let peers = addresses
            .clone()
            .into_iter()
            .map(|(id, uri)| (id, PeerInfo { uri }))
            .collect();
        let role = match info.role {
            Role::Follower => "Follower",
            Role::PreCandidate => "PreCandidate",
            Role::Candidate => "Candidate",
            Role::Leader => "Leader",
        };
        let consensus_thread_status = match (info.running, info.updated_at) {
            (true, Some(at)) => ConsensusThreadStatus::Working {
                last_update: timestamp(at),
            },
            _ => ConsensusThreadStatus::Stopped,
        };
        let message_send_failures = membership
            .transport
            .failures()
            .into_iter()
            // Failures of peers that were removed since are history.
            .filter(|(uri, _)| addresses.values().any(|known| known == uri))
            .map(|(uri, failures)| {
                let errors = MessageSendErrors {
                    count: failures.count,
                    latest_error: Some(failures.latest_error),
                    latest_error_timestamp: Some(timestamp(failures.latest_error_at)),
                };
                (uri, errors)
            })
            .collect();
        ClusterStatus::Enabled(ClusterInfo {
            peer_id: me,
            peers,
            raft_info: RaftStatus {
                term: info.term,
                commit: info.commit,
                pending_operations: info.pending_proposals,
                leader: info.leader,
                role: Some(role),
                is_voter: info.voters.contains(&me),
            },
            consensus_thread_status,
            message_send_failures,
        })
    }
}

fn timestamp(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

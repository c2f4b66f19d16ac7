//! The spend journal: every settlement and release, written durably before its notice
//! is answered, and read back at start so a restart neither forgets spend nor charges
//! a notice twice.
//!
//! Storage is SQLite in WAL mode with `synchronous = FULL`: a commit returns only once
//! the write-ahead log is on disk, and operators can inspect the file with `sqlite3`
//! (the schema is below). One writer thread owns the connection. The control thread
//! applies a notice in memory, hands its record over ([`Journal::append`]) and answers
//! the exchange when the record's commit is durable ([`Ack`]). Group commit is natural:
//! records that arrive while a commit is in flight go in the next one (up to
//! [`MAX_JOURNAL_BATCH`]), so one `fsync` covers many notices under load and a lone
//! notice waits for one `fsync`. Nothing here is on the bid path.
//!
//! When a commit fails (disk full, I/O error, a read-only remount) the records stay in
//! memory, their notices are answered 503 (the exchange retries; the retry is a
//! duplicate in memory and is answered once the record is durable), the writer retries
//! every [`RETRY_INTERVAL_MS`], and [`Journal::is_failing`] is raised for the metrics and
//! the log. At most [`MAX_UNWRITTEN_NOTICES`] wait; past that notices are refused before
//! they are applied. A crash while records wait loses only records whose notices were
//! never acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::money::bid_id::BidId;

pub use crate::limits::{MAX_JOURNAL_BATCH, MAX_UNWRITTEN_NOTICES};

/// After a failed commit the writer tries again this often (sooner if a notice comes).
pub const RETRY_INTERVAL_MS: u64 = 500;
/// How often the writer deletes records older than the retention.
const PRUNE_INTERVAL_MS: u64 = 3_600_000;
/// Rows of a table one prune step deletes: a step sits between two commits, so it
/// stays short (milliseconds) however far behind pruning is.
const PRUNE_STEP_ROWS: usize = 10_000;
/// Milliseconds in a (UTC) budget day.
pub const DAY_MS: u64 = 86_400_000;
/// The schema version this code writes (`PRAGMA user_version`). 2 added
/// `campaign_totals`, 3 `leases`, 4 `notices.user_key`, 5 `spend_by_quarter` and
/// `wins_by_quarter`.
const SCHEMA_VERSION: i64 = 5;
/// Spend is read back summed per campaign and quarter hour of bid time: every zone's
/// midnights and hours fall on quarter hours, so any period's spend is a sum of them.
pub const RECOVERY_BUCKET_MS: u64 = 900_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notices (
    bid_id          TEXT    PRIMARY KEY,  -- 26-character bid id
    campaign        TEXT    NOT NULL,     -- campaign id as configured
    outcome         TEXT    NOT NULL CHECK (outcome IN ('settled', 'released')),
    charged_micros  INTEGER NOT NULL CHECK (charged_micros >= 0),
    clearing_micros INTEGER NOT NULL,     -- per impression, as the exchange reported
    bid_ms          INTEGER NOT NULL,     -- when the bid was made (its period)
    at_ms           INTEGER NOT NULL,     -- when the notice was applied
    user_key        INTEGER               -- the user a capped campaign's win counts against
) WITHOUT ROWID;
-- Recovery reads spend from the sums below, not by bid time: one index fewer to write.
DROP INDEX IF EXISTS notices_by_bid_time;
CREATE INDEX IF NOT EXISTS notices_by_notice_time ON notices (at_ms);
-- Everything ever charged per campaign (lifetime budgets): kept when old notices are
-- pruned, updated in the same transaction as the notices it sums.
CREATE TABLE IF NOT EXISTS campaign_totals (
    campaign        TEXT    PRIMARY KEY,
    charged_micros  INTEGER NOT NULL CHECK (charged_micros >= 0),
    settled         INTEGER NOT NULL
) WITHOUT ROWID;
-- Spend per campaign and quarter hour of bid time, and wins per capped campaign, user
-- and quarter hour: what a restart reads back instead of the day's notices, so
-- recovery costs campaigns x 96 rows however many notices the day had. Updated in the
-- same transaction as the notices they sum; pruned with them.
CREATE TABLE IF NOT EXISTS spend_by_quarter (
    quarter_ms      INTEGER NOT NULL,     -- start of the quarter hour of bid time
    campaign        TEXT    NOT NULL,
    charged_micros  INTEGER NOT NULL CHECK (charged_micros >= 0),
    settled         INTEGER NOT NULL,
    PRIMARY KEY (quarter_ms, campaign)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wins_by_quarter (
    quarter_ms  INTEGER NOT NULL,
    campaign    TEXT    NOT NULL,
    user_key    INTEGER NOT NULL,
    wins        INTEGER NOT NULL,
    PRIMARY KEY (quarter_ms, campaign, user_key)
) WITHOUT ROWID;
-- What the bidder did to a campaign: the spend-rate breaker tripping, an operator
-- resuming it. The last breaker event of a campaign is its state after a restart.
CREATE TABLE IF NOT EXISTS events (
    at_ms     INTEGER NOT NULL,
    campaign  TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    detail    TEXT    NOT NULL
);
-- What each campaign's bids may hold in flight (see money/lease.rs): written before a
-- larger lease is used, so after a crash it bounds what bids still out could spend.
CREATE TABLE IF NOT EXISTS leases (
    campaign  TEXT    PRIMARY KEY,
    micros    INTEGER NOT NULL CHECK (micros >= 0),
    at_ms     INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Gives a ledger older than version 4 the column frequency caps are read back from.
const ADD_USER_KEY: &str = "ALTER TABLE notices ADD COLUMN user_key INTEGER;";

/// Fills `campaign_totals` from the notices of a version 1 ledger.
const MIGRATE_FROM_1: &str = "
INSERT INTO campaign_totals (campaign, charged_micros, settled)
SELECT campaign, SUM(charged_micros), COUNT(*) FROM notices WHERE outcome = 'settled'
GROUP BY campaign;
";

/// Fills the quarter-hour sums from the notices of a ledger older than version 5
/// (900000 is [`RECOVERY_BUCKET_MS`], checked below).
const _: () = assert!(RECOVERY_BUCKET_MS == 900_000, "MIGRATE_TO_5 spells it out");
const MIGRATE_TO_5: &str = "
INSERT OR IGNORE INTO spend_by_quarter (quarter_ms, campaign, charged_micros, settled)
SELECT bid_ms / 900000 * 900000, campaign, SUM(charged_micros), COUNT(*) FROM notices
WHERE outcome = 'settled' GROUP BY 1, 2;
INSERT OR IGNORE INTO wins_by_quarter (quarter_ms, campaign, user_key, wins)
SELECT bid_ms / 900000 * 900000, campaign, user_key, COUNT(*) FROM notices
WHERE outcome = 'settled' AND user_key IS NOT NULL GROUP BY 1, 2, 3;
";

/// Where the journal lives and how long it keeps records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The SQLite file; its folder must exist and be writable (`-wal` and `-shm` files
    /// appear beside it).
    pub path: PathBuf,
    /// Records whose notice is older than this many days are deleted.
    pub retention_days: u32,
}

/// What a notice did to the money, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Settled {
        charged_micros: i64,
        clearing_micros: i64,
    },
    Released,
}

/// One record: a bid's settlement or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub bid_id: BidId,
    pub campaign: String,
    pub outcome: Outcome,
    /// When the notice was applied, ms since the Unix epoch.
    pub at_ms: u64,
    /// The user a win counts against (campaigns with a frequency cap).
    pub user_key: Option<u64>,
}

/// Why the journal did not open or did not take a record.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("spend ledger {}: {what}: {source}; fix: {fix}", path.display())]
    Open {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
        fix: &'static str,
    },
    #[error(
        "spend ledger {} is damaged ({detail}); fix: stop, keep the file with its -wal and -shm for inspection (sqlite3 FILE .recover), \
         and start on a restored copy; starting on an empty ledger forgets this period's spend", path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("spend ledger {}: schema version {found} is newer than this bidder's {SCHEMA_VERSION}; fix: run the newer bidder", path.display())]
    Newer { path: PathBuf, found: i64 },
    #[error("spend ledger {}: write-ahead logging is unavailable (journal mode {mode}); fix: put it on a local file system", path.display())]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "spend ledger: starting its writer thread: {0}; fix: raise the process's thread limit"
    )]
    Spawn(std::io::Error),
    #[error("spend ledger: {MAX_UNWRITTEN_NOTICES} notices wait for storage; retry later")]
    Full,
}

/// Resolves when the record is durable (`true`) or its commit failed (`false`; the
/// record stays queued and is written when storage returns).
pub type Ack = oneshot::Receiver<bool>;

/// What the journal holds for the current periods, read at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Charged per campaign id and [`RECOVERY_BUCKET_MS`] of bid time (the bucket's
    /// start), for bids made since the `since_ms` the journal was opened with.
    pub spent_by_quarter_hour: HashMap<String, Vec<(u64, i64)>>,
    /// Charged per campaign id over every record ever written (lifetime budgets).
    pub lifetime_micros: HashMap<String, i64>,
    /// Bids settled or released since the duplicate window start, with when.
    pub resolved: Vec<(BidId, u64)>,
    /// Campaigns the breaker paused and no operator resumed.
    pub tripped: Vec<String>,
    /// The last lease recorded per campaign id: what its bids could hold when the
    /// process stopped.
    pub leases: HashMap<String, i64>,
    /// Wins per campaign id, user and [`RECOVERY_BUCKET_MS`] of bid time (its start),
    /// for bids made since `since_ms` (frequency caps).
    pub impressions: Vec<(String, u64, u64, u32)>,
    /// Settlements summed into `spent_by_quarter_hour`.
    pub records: u64,
    pub elapsed: Duration,
}

impl Recovered {
    /// What `campaign` was charged for bids made from `since_ms` (a quarter hour, as
    /// every period start is) on.
    pub fn spent_since(&self, campaign: &str, since_ms: u64) -> i64 {
        debug_assert_eq!(
            since_ms % RECOVERY_BUCKET_MS,
            0,
            "periods start on quarter hours"
        );
        self.spent_by_quarter_hour
            .get(campaign)
            .map_or(0, |buckets| {
                buckets
                    .iter()
                    .filter(|&&(start, _)| start >= since_ms)
                    .map(|&(_, micros)| micros)
                    .sum()
            })
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub commits: AtomicU64,
    pub records: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Sum of commit durations, µs (with `commits`, the mean `fsync` cost).
    pub commit_us: AtomicU64,
}

/// A record to write, or (`None`) a barrier: acknowledged once everything queued
/// before it is durable.
struct Job {
    record: Option<Record>,
    ack: oneshot::Sender<bool>,
}

/// What the journal writes: a notice's effect on the money, or an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Notice(Entry),
    Event(Event),
    Lease {
        campaign: String,
        micros: i64,
        at_ms: u64,
    },
}

/// Something the bidder did to a campaign on its own or at an operator's word, kept
/// beside the money it concerns (`events` table) and read back at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub campaign: String,
    pub kind: EventKind,
    /// One human-readable line: the figures behind the event, or who asked.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The spend-rate breaker paused the campaign.
    BreakerTripped,
    /// An operator resumed it.
    BreakerResumed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BreakerTripped => "breaker_tripped",
            EventKind::BreakerResumed => "breaker_resumed",
        }
    }
}

struct Shared {
    failing: AtomicBool,
    /// Appended and not yet durable.
    unwritten: AtomicUsize,
    /// Jobs queued and jobs durable, counted from 1 in queue order: a job whose
    /// sequence number is at most `durable` is on disk (commits keep queue order).
    queued: AtomicU64,
    durable: AtomicU64,
    stats: JournalStats,
}

/// The journal's handle, owned by the control thread. Dropping it writes what is
/// queued and joins the writer.
pub struct Journal {
    tx: Option<mpsc::SyncSender<Job>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Journal {
    /// Opens (or creates) the journal, checks it and reads back the spend of bids made
    /// since `since_ms` (the earliest current period start), the lifetime totals, and
    /// the resolved bids since `resolved_since_ms`. Old records are pruned by the writer
    /// afterwards, in steps between commits, so a long-stopped bidder starts as fast.
    pub fn open(
        config: &JournalConfig,
        clock: Clock,
        since_ms: u64,
        resolved_since_ms: u64,
    ) -> Result<(Journal, Recovered), JournalError> {
        let path = config.path.clone();
        let conn = open_checked(&path)?;
        let retention_ms = u64::from(config.retention_days.max(1)) * DAY_MS;
        let recovered = recover(&conn, since_ms, resolved_since_ms).map_err(|e| {
            let other = open_err(
                &path,
                "reading the records back",
                "check the file is a bidder ledger",
            );
            corrupt_or(&path, e, other)
        })?;
        let shared = Arc::new(Shared {
            failing: AtomicBool::new(false),
            unwritten: AtomicUsize::new(0),
            queued: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            stats: JournalStats::default(),
        });
        let (tx, rx) = mpsc::sync_channel(MAX_UNWRITTEN_NOTICES);
        let writer = {
            let shared = Arc::clone(&shared);
            let path = path.clone();
            std::thread::Builder::new()
                .name("ledger-journal".into())
                .spawn(move || write_loop(conn, rx, &shared, &path, clock, retention_ms))
                .map_err(JournalError::Spawn)?
        };
        Ok((
            Journal {
                tx: Some(tx),
                shared,
                writer: Some(writer),
                path,
            },
            recovered,
        ))
    }

    /// Queues a record for the next commit. `Err(Full)` when too many wait for storage:
    /// the caller must not apply the notice (it answers 503 and the exchange retries).
    pub fn append(&self, entry: Entry) -> Result<Ack, JournalError> {
        self.queue(Some(Record::Notice(entry)))
    }

    /// Queues an audit event for the next commit, like a notice's record.
    pub fn record_event(&self, event: Event) -> Result<Ack, JournalError> {
        self.queue(Some(Record::Event(event)))
    }

    /// Queues a campaign's new lease; returns its sequence number (durable once
    /// [`Journal::durable_seq`] reaches it).
    pub fn record_lease(
        &self,
        campaign: &str,
        micros: i64,
        at_ms: u64,
    ) -> Result<u64, JournalError> {
        let record = Record::Lease {
            campaign: campaign.to_owned(),
            micros,
            at_ms,
        };
        self.queue(Some(record))?;
        Ok(self.last_seq())
    }

    /// The sequence number of the last record queued.
    pub fn last_seq(&self) -> u64 {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Every record whose sequence number is at most this is durable.
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// An [`Ack`] that resolves once every record appended before it is durable (for a
    /// duplicate notice whose first record may still be waiting); it writes nothing.
    pub fn barrier(&self) -> Result<Ack, JournalError> {
        self.queue(None)
    }

    fn queue(&self, record: Option<Record>) -> Result<Ack, JournalError> {
        if !self.has_room() {
            return Err(JournalError::Full);
        }
        let (ack, done) = oneshot::channel();
        self.shared.unwritten.fetch_add(1, Ordering::AcqRel);
        let job = Job { record, ack };
        let tx = self.tx.as_ref().expect("the sender lives until drop");
        // One producer (the control thread): numbers follow the channel's order.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if tx.try_send(job).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.shared.unwritten.fetch_sub(1, Ordering::AcqRel);
            return Err(JournalError::Full);
        }
        Ok(done)
    }

    /// Whether one more notice may be applied (checked before applying it).
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// How many more records the queue takes now.
    pub fn room(&self) -> usize {
        MAX_UNWRITTEN_NOTICES.saturating_sub(self.shared.unwritten.load(Ordering::Acquire))
    }

    /// The last commit failed and records wait for storage.
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Acquire)
    }

    /// Records appended and not yet durable.
    pub fn unwritten(&self) -> usize {
        self.shared.unwritten.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> &JournalStats {
        &self.shared.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn open_err<'p>(
    path: &'p Path,
    what: &'static str,
    fix: &'static str,
) -> impl FnOnce(rusqlite::Error) -> JournalError + 'p {
    move |source| JournalError::Open {
        path: path.to_path_buf(),
        what,
        source,
        fix,
    }
}

/// A read that reached a damaged page means a corrupt ledger; anything else is `other`.
fn corrupt_or(
    path: &Path,
    e: rusqlite::Error,
    other: impl FnOnce(rusqlite::Error) -> JournalError,
) -> JournalError {
    if is_damage(&e) {
        JournalError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    } else {
        other(e)
    }
}

/// Whether SQLite found the file damaged (at start or when a write reached the page).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// The tables read back whole at start, checked page by page before they are read.
/// `notices` is not (a saturated day of it would take minutes to check): only the
/// paths to its first and last records are read, which catches a damaged root; damage
/// deeper surfaces when a read or write reaches it (refused at start, or the ledger
/// fails closed and says so).
const CHECKED_TABLES: [&str; 5] = [
    "campaign_totals",
    "spend_by_quarter",
    "wins_by_quarter",
    "events",
    "leases",
];

/// Opens the file, turns on WAL and full sync, checks integrity and the schema.
fn open_checked(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err(
        path,
        "opening",
        "make sure the folder exists and the bidder's user may write it",
    ))?;
    let corrupt = |e: rusqlite::Error| JournalError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    // A file that is not a database fails here, before anything is written to it.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(corrupt)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(open_err(
            path,
            "setting full sync",
            "use a local file system",
        ))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(corrupt)?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::Newer {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let schema_err = |e: rusqlite::Error| {
        let other = open_err(
            path,
            "creating the schema",
            "make sure the disk has room and the file is writable",
        );
        corrupt_or(path, e, other)
    };
    conn.execute_batch(SCHEMA).map_err(schema_err)?;
    for table in CHECKED_TABLES {
        let check: String = conn
            .query_row(&format!("PRAGMA quick_check({table})"), [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("table {table}: {check}"),
            });
        }
    }
    for probe in [
        "SELECT bid_id FROM notices ORDER BY bid_id LIMIT 1",
        "SELECT bid_id FROM notices ORDER BY bid_id DESC LIMIT 1",
    ] {
        conn.query_row(probe, [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })
            .map_err(corrupt)?;
    }
    // Migrations: one-time; the last reads every notice of an older ledger.
    match version {
        1 => conn.execute_batch(MIGRATE_FROM_1),
        _ => Ok(()),
    }
    .and_then(|()| match has_user_key(&conn)? {
        false => conn.execute_batch(ADD_USER_KEY),
        true => Ok(()),
    })
    .and_then(|()| match version {
        1..=4 => conn.execute_batch(MIGRATE_TO_5),
        _ => Ok(()),
    })
    .and_then(|()| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
    .map_err(schema_err)?;
    Ok(conn)
}

/// Whether `notices` has the `user_key` column (version 4 on).
fn has_user_key(conn: &Connection) -> rusqlite::Result<bool> {
    let mut columns = conn.prepare("SELECT name FROM pragma_table_info('notices')")?;
    let names = columns.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        if name? == "user_key" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A row of a campaign id and three counts (the grouped recovery queries).
fn text_and_three_integers(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// Deletes up to [`PRUNE_STEP_ROWS`] of each table's records older than the retention
/// (notices by notice time, sums by bid time) in one transaction. Returns the most
/// deleted from one table: a full step means more are due.
fn prune_step(conn: &mut Connection, now_ms: u64, retention_ms: u64) -> rusqlite::Result<usize> {
    let before = i64::try_from(now_ms.saturating_sub(retention_ms)).unwrap_or(i64::MAX);
    let step = PRUNE_STEP_ROWS as i64;
    let tx = conn.transaction()?;
    let deleted = [
        "DELETE FROM notices WHERE bid_id IN \
         (SELECT bid_id FROM notices WHERE at_ms < ?1 LIMIT ?2)",
        "DELETE FROM spend_by_quarter WHERE (quarter_ms, campaign) IN \
         (SELECT quarter_ms, campaign FROM spend_by_quarter WHERE quarter_ms < ?1 LIMIT ?2)",
        "DELETE FROM wins_by_quarter WHERE (quarter_ms, campaign, user_key) IN \
         (SELECT quarter_ms, campaign, user_key FROM wins_by_quarter WHERE quarter_ms < ?1 LIMIT ?2)",
    ]
    .into_iter()
    .map(|sql| tx.execute(sql, params![before, step]))
    .try_fold(0, |most, deleted| deleted.map(|d| most.max(d)))?;
    tx.commit()?;
    Ok(deleted)
}

fn recover(
    conn: &Connection,
    since_ms: u64,
    resolved_since_ms: u64,
) -> rusqlite::Result<Recovered> {
    let started = Instant::now();
    let mut recovered = Recovered::default();
    let since = i64::try_from(since_ms).unwrap_or(i64::MAX);
    let mut spent = conn.prepare(
        "SELECT campaign, quarter_ms, charged_micros, settled FROM spend_by_quarter \
         WHERE quarter_ms >= ?1",
    )?;
    let rows = spent.query_map(params![since], text_and_three_integers)?;
    for row in rows {
        let (campaign, quarter_ms, micros, count) = row?;
        recovered
            .spent_by_quarter_hour
            .entry(campaign)
            .or_default()
            .push((u64::try_from(quarter_ms).unwrap_or(0), micros));
        recovered.records += u64::try_from(count).unwrap_or(0);
    }
    let mut events = conn.prepare(
        "SELECT campaign, kind FROM events \
         WHERE kind IN ('breaker_tripped', 'breaker_resumed') ORDER BY rowid",
    )?;
    let mut last: HashMap<String, String> = HashMap::new();
    let rows = events.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (campaign, kind) = row?;
        last.insert(campaign, kind);
    }
    recovered.tripped = last
        .into_iter()
        .filter(|(_, kind)| kind == EventKind::BreakerTripped.as_str())
        .map(|(campaign, _)| campaign)
        .collect();
    let mut totals = conn.prepare("SELECT campaign, charged_micros FROM campaign_totals")?;
    let rows = totals.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (campaign, micros) = row?;
        recovered.lifetime_micros.insert(campaign, micros);
    }
    let mut impressions = conn.prepare(
        "SELECT campaign, user_key, quarter_ms, wins FROM wins_by_quarter WHERE quarter_ms >= ?1",
    )?;
    let rows = impressions.query_map(params![since], text_and_three_integers)?;
    for row in rows {
        let (campaign, user, quarter_ms, count) = row?;
        recovered.impressions.push((
            campaign,
            user as u64,
            u64::try_from(quarter_ms).unwrap_or(0),
            u32::try_from(count).unwrap_or(u32::MAX),
        ));
    }
    let mut leases = conn.prepare("SELECT campaign, micros FROM leases")?;
    let rows = leases.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (campaign, micros) = row?;
        recovered.leases.insert(campaign, micros);
    }
    let since = i64::try_from(resolved_since_ms).unwrap_or(i64::MAX);
    let mut resolved = conn.prepare("SELECT bid_id, at_ms FROM notices WHERE at_ms >= ?1")?;
    let rows = resolved.query_map(params![since], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (text, at_ms) = row?;
        // A row we cannot read back would be a bug or a hand edit; skipping it only
        // loses duplicate detection for that bid, never money.
        if let Ok(bid_id) = text.parse::<BidId>() {
            recovered
                .resolved
                .push((bid_id, u64::try_from(at_ms).unwrap_or(0)));
        }
    }
    recovered.elapsed = started.elapsed();
    Ok(recovered)
}

/// Writes `entries` in one transaction; a bid already written is left as it was (the
/// first notice of a bid is the one that counted).
fn commit<'e>(
    conn: &mut Connection,
    records: impl Iterator<Item = &'e Record>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO notices \
             (bid_id, campaign, outcome, charged_micros, clearing_micros, bid_ms, at_ms, user_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut total = tx.prepare_cached(
            "INSERT INTO campaign_totals (campaign, charged_micros, settled) VALUES (?1, ?2, ?3) \
             ON CONFLICT (campaign) DO UPDATE SET charged_micros = \
             charged_micros + excluded.charged_micros, settled = settled + excluded.settled",
        )?;
        let mut quarter = tx.prepare_cached(
            "INSERT INTO spend_by_quarter (quarter_ms, campaign, charged_micros, settled) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (quarter_ms, campaign) DO UPDATE SET \
             charged_micros = charged_micros + excluded.charged_micros, \
             settled = settled + excluded.settled",
        )?;
        // The batch's settlements summed per quarter hour and campaign: one update of
        // each sum per commit, however many notices the commit carries.
        let mut sums: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
        let mut wins = tx.prepare_cached(
            "INSERT INTO wins_by_quarter (quarter_ms, campaign, user_key, wins) \
             VALUES (?1, ?2, ?3, 1) ON CONFLICT (quarter_ms, campaign, user_key) DO UPDATE SET \
             wins = wins + 1",
        )?;
        let mut event = tx.prepare_cached(
            "INSERT INTO events (at_ms, campaign, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut lease = tx.prepare_cached(
            "INSERT INTO leases (campaign, micros, at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (campaign) DO UPDATE SET micros = excluded.micros, at_ms = excluded.at_ms",
        )?;
        for record in records {
            let e = match record {
                Record::Notice(e) => e,
                Record::Lease {
                    campaign,
                    micros,
                    at_ms,
                } => {
                    lease.execute(params![
                        campaign,
                        micros,
                        i64::try_from(*at_ms).unwrap_or(i64::MAX)
                    ])?;
                    continue;
                }
                Record::Event(ev) => {
                    event.execute(params![
                        i64::try_from(ev.at_ms).unwrap_or(i64::MAX),
                        ev.campaign,
                        ev.kind.as_str(),
                        ev.detail,
                    ])?;
                    continue;
                }
            };
            let (outcome, charged, clearing) = match e.outcome {
                Outcome::Settled {
                    charged_micros,
                    clearing_micros,
                } => ("settled", charged_micros, clearing_micros),
                Outcome::Released => ("released", 0, 0),
            };
            let bid_ms = e.bid_id.timestamp_ms();
            // The hash's bits as SQLite's signed integer.
            let user_key = e.user_key.map(|k| k as i64);
            let inserted = insert.execute(params![
                e.bid_id.to_text().as_str(),
                e.campaign,
                outcome,
                charged,
                clearing,
                i64::try_from(bid_ms).unwrap_or(i64::MAX),
                i64::try_from(e.at_ms).unwrap_or(i64::MAX),
                user_key,
            ])?;
            // Only a bid's first record counts toward its campaign's sums.
            if inserted == 1 && outcome == "settled" {
                let quarter_ms = bid_ms - bid_ms % RECOVERY_BUCKET_MS;
                let quarter_ms = i64::try_from(quarter_ms).unwrap_or(i64::MAX);
                let sum = sums.entry((quarter_ms, e.campaign.as_str())).or_default();
                *sum = (sum.0 + charged, sum.1 + 1);
                if let Some(user_key) = user_key {
                    wins.execute(params![quarter_ms, e.campaign, user_key])?;
                }
            }
        }
        for (&(quarter_ms, campaign), &(micros, settled)) in &sums {
            total.execute(params![campaign, micros, settled])?;
            quarter.execute(params![quarter_ms, campaign, micros, settled])?;
        }
    }
    tx.commit()
}

/// The writer thread: takes what is queued, commits it, acknowledges, repeats; keeps
/// failed records and retries them first.
fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    shared: &Shared,
    path: &Path,
    clock: Clock,
    retention_ms: u64,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_JOURNAL_BATCH);
    let mut unwritten: Vec<Record> = Vec::new();
    let mut last_prune = Instant::now();
    // Prune at start, then hourly; step after step while old records remain.
    let mut prune_more = true;
    let mut closed = false;
    // Jobs of failed commits (records and barriers): durable with the next commit.
    let mut carried: u64 = 0;
    while !(closed && unwritten.is_empty()) {
        if prune_more || last_prune.elapsed() >= Duration::from_millis(PRUNE_INTERVAL_MS) {
            last_prune = Instant::now();
            prune_more = match prune_step(&mut conn, clock.now_unix_ms(), retention_ms) {
                Ok(deleted) => deleted == PRUNE_STEP_ROWS,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "spend ledger: deleting records past the retention failed; tried again in an hour");
                    false
                }
            };
        }
        let first = if closed {
            None
        } else if unwritten.is_empty() && !prune_more {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(mpsc::RecvError) => break,
            }
        } else {
            let wait_ms = if prune_more { 0 } else { RETRY_INTERVAL_MS };
            match rx.recv_timeout(Duration::from_millis(wait_ms)) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closed = true;
                    None
                }
            }
        };
        batch.extend(first);
        while batch.len() < MAX_JOURNAL_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if batch.is_empty() && unwritten.is_empty() {
            continue; // a prune step's turn
        }
        let started = Instant::now();
        let entries = unwritten
            .iter()
            .chain(batch.iter().filter_map(|j| j.record.as_ref()));
        match commit(&mut conn, entries) {
            Ok(()) => {
                let written = unwritten.len() + batch.len();
                let barriers = batch.iter().filter(|j| j.record.is_none()).count();
                let stats = &shared.stats;
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .records
                    .fetch_add((written - barriers) as u64, Ordering::Relaxed);
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.commit_us.fetch_add(us, Ordering::Relaxed);
                unwritten.clear();
                shared.unwritten.fetch_sub(written, Ordering::AcqRel);
                shared
                    .durable
                    .fetch_add(carried + batch.len() as u64, Ordering::AcqRel);
                carried = 0;
                if shared.failing.swap(false, Ordering::AcqRel) {
                    info!(path = %path.display(), "spend ledger writes again: held notices are durable, bidding resumes");
                }
                for job in batch.drain(..) {
                    let _ = job.ack.send(true);
                }
            }
            Err(e) => {
                shared.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                carried += batch.len() as u64;
                if !shared.failing.swap(true, Ordering::AcqRel) {
                    if is_damage(&e) {
                        error!(
                            path = %path.display(),
                            error = %e,
                            "spend ledger is damaged: every campaign stops bidding (no-bid reason ledger_unavailable), notices are answered 503; fix: stop, keep the file with its -wal and -shm (sqlite3 FILE .recover) and start on a restored copy"
                        );
                    } else {
                        error!(
                            path = %path.display(),
                            error = %e,
                            "spend ledger cannot be written: every campaign stops bidding (no-bid reason ledger_unavailable), notices are answered 503 and held in memory until it can"
                        );
                    }
                }
                for job in batch.drain(..) {
                    let _ = job.ack.send(false);
                    match job.record {
                        Some(record) => unwritten.push(record),
                        // A barrier has nothing to keep: its notice's retry asks again.
                        None => {
                            shared.unwritten.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
                if closed {
                    error!(
                        path = %path.display(),
                        lost = unwritten.len(),
                        "stopping with notices the ledger could not write (none was acknowledged)"
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::DrivenClock;
    use crate::money::bid_id::BidIdGen;

    const NOW_MS: u64 = testkit::MONDAY_10_30_MS;

    fn config(dir: &testkit::TempDir) -> JournalConfig {
        JournalConfig {
            path: dir.0.join("ledger.sqlite"),
            retention_days: 35,
        }
    }

    fn settled(bid_id: BidId, campaign: &str, micros: i64) -> Entry {
        Entry {
            bid_id,
            campaign: campaign.into(),
            outcome: Outcome::Settled {
                charged_micros: micros,
                clearing_micros: micros,
            },
            at_ms: NOW_MS,
            user_key: None,
        }
    }

    fn wait(ack: Ack) -> bool {
        ack.blocking_recv()
            .expect("the writer answers every record")
    }

    #[test]
    fn the_last_lease_comes_back_and_sequence_numbers_say_what_is_durable() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        {
            let (journal, recovered) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert!(recovered.leases.is_empty());
            assert_eq!((journal.last_seq(), journal.durable_seq()), (0, 0));
            let first = journal.record_lease("c1", 10_000, NOW_MS).unwrap();
            let raised = journal.record_lease("c1", 40_000, NOW_MS + 1).unwrap();
            let other = journal.record_lease("c2", 5_000, NOW_MS + 2).unwrap();
            assert_eq!((first, raised, other), (1, 2, 3));
            assert!(wait(journal.barrier().unwrap()));
            assert!(
                journal.durable_seq() >= other,
                "everything before the barrier"
            );
        }
        let (_journal, recovered) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        assert_eq!(recovered.leases.get("c1"), Some(&40_000));
        assert_eq!(recovered.leases.get("c2"), Some(&5_000));
    }

    #[test]
    fn settlements_come_back_after_a_reopen_and_count_once() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        let (a, b, c) = (
            ids.next_id(NOW_MS),
            ids.next_id(NOW_MS),
            ids.next_id(NOW_MS),
        );
        {
            let (journal, recovered) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert!(recovered.spent_by_quarter_hour.is_empty());
            let acks = [
                journal.append(settled(a, "c1", 1_500)).unwrap(),
                journal.append(settled(b, "c1", 2_100)).unwrap(),
                journal.append(settled(a, "c1", 9_999)).unwrap(), // a duplicate: ignored
                journal
                    .append(Entry {
                        outcome: Outcome::Released,
                        ..settled(c, "c2", 0)
                    })
                    .unwrap(),
            ];
            assert!(acks.into_iter().all(wait));
            assert_eq!(journal.unwritten(), 0);
            assert!(journal.stats().commits.load(Ordering::Relaxed) >= 1);
        }
        let (_journal, recovered) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        assert_eq!(recovered.spent_since("c1", 0), 3_600);
        assert_eq!(recovered.spent_since("c2", 0), 0);
        assert_eq!(recovered.lifetime_micros.get("c1"), Some(&3_600));
        assert_eq!(recovered.lifetime_micros.get("c2"), None);
        let mut resolved: Vec<BidId> = recovered.resolved.iter().map(|(id, _)| *id).collect();
        resolved.sort();
        assert_eq!(resolved, vec![a, b, c]);
    }

    #[test]
    fn spend_comes_back_by_period_of_bid_time_and_lifetime_keeps_everything() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        let day_start = NOW_MS - NOW_MS % DAY_MS;
        let yesterday = ids.next_id(NOW_MS - DAY_MS);
        let this_morning = ids.next_id(day_start + 1);
        let now = ids.next_id(NOW_MS);
        {
            let (journal, _) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert!(wait(journal.append(settled(yesterday, "c1", 700)).unwrap()));
            assert!(wait(
                journal.append(settled(this_morning, "c1", 200)).unwrap()
            ));
            assert!(wait(journal.append(settled(now, "c1", 100)).unwrap()));
        }
        let (_j, recovered) = Journal::open(&config(&dir), clock, day_start, 0).unwrap();
        assert_eq!(recovered.spent_since("c1", day_start), 300);
        let hour_start = NOW_MS - NOW_MS % 3_600_000;
        assert_eq!(recovered.spent_since("c1", hour_start), 100);
        assert_eq!(recovered.lifetime_micros.get("c1"), Some(&1_000));
    }

    #[test]
    fn a_tripped_breaker_comes_back_until_a_resume_is_recorded() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let event = |kind| Event {
            at_ms: NOW_MS,
            campaign: "c1".into(),
            kind,
            detail: "test".into(),
        };
        {
            let (journal, recovered) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert!(recovered.tripped.is_empty());
            assert!(wait(
                journal
                    .record_event(event(EventKind::BreakerTripped))
                    .unwrap()
            ));
        }
        {
            let (journal, recovered) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert_eq!(recovered.tripped, vec!["c1".to_string()]);
            assert!(wait(
                journal
                    .record_event(event(EventKind::BreakerResumed))
                    .unwrap()
            ));
        }
        let (_j, recovered) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        assert!(recovered.tripped.is_empty());
    }

    #[test]
    fn a_version_1_ledger_gets_its_lifetime_totals_from_its_notices() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        {
            let (journal, _) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            assert!(wait(
                journal
                    .append(settled(ids.next_id(NOW_MS), "c1", 400))
                    .unwrap()
            ));
        }
        let conn = Connection::open(config(&dir).path).unwrap();
        conn.execute_batch(
            "DROP TABLE campaign_totals; DROP TABLE leases; DROP TABLE spend_by_quarter; \
             DROP TABLE wins_by_quarter; ALTER TABLE notices DROP COLUMN user_key; \
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let (_j, recovered) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        assert_eq!(recovered.lifetime_micros.get("c1"), Some(&400));
        assert_eq!(recovered.spent_since("c1", 0), 400);
    }

    /// Writes two wins of one user and one of another for `c1` this quarter hour and
    /// one win an hour earlier; returns the ledger's folder.
    fn ledger_with_wins(clock: &Clock) -> testkit::TempDir {
        let dir = testkit::TempDir::new("journal");
        let mut ids = BidIdGen::new(1, 0);
        let (journal, _) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
        let win = |at_ms: u64, user: u64, micros: i64, ids: &mut BidIdGen| Entry {
            user_key: Some(user),
            ..settled(ids.next_id(at_ms), "c1", micros)
        };
        // Oldest first: bid ids never go back in time.
        let acks = [
            journal
                .append(win(NOW_MS - 3_600_000, 7, 400, &mut ids))
                .unwrap(),
            journal.append(win(NOW_MS, 7, 100, &mut ids)).unwrap(),
            journal.append(win(NOW_MS, 7, 200, &mut ids)).unwrap(),
            journal.append(win(NOW_MS, 8, 300, &mut ids)).unwrap(),
        ];
        assert!(acks.into_iter().all(wait));
        dir
    }

    fn wins_of(recovered: &Recovered, user: u64) -> u32 {
        recovered
            .impressions
            .iter()
            .filter(|(c, u, _, _)| c == "c1" && *u == user)
            .map(|&(_, _, _, wins)| wins)
            .sum()
    }

    #[test]
    fn recovery_reads_the_quarter_hour_sums_not_the_notices() {
        let clock = DrivenClock::at(NOW_MS).clock();
        let dir = ledger_with_wins(&clock);
        let conn = Connection::open(config(&dir).path).unwrap();
        // Were recovery to read the notices, this would lose everything.
        conn.execute_batch("DELETE FROM notices;").unwrap();
        drop(conn);
        let hour_start = NOW_MS - NOW_MS % 3_600_000;
        let (_j, recovered) = Journal::open(&config(&dir), clock, hour_start, 0).unwrap();
        assert_eq!(recovered.spent_since("c1", hour_start), 600);
        assert_eq!(recovered.records, 3);
        assert_eq!((wins_of(&recovered, 7), wins_of(&recovered, 8)), (2, 1));
    }

    #[test]
    fn records_past_the_retention_are_pruned_in_steps_and_lifetime_totals_stay() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        let old_ms = NOW_MS - 40 * DAY_MS; // retention is 35 days
        let old = 2 * PRUNE_STEP_ROWS + 5;
        {
            let (journal, _) = Journal::open(&config(&dir), clock.clone(), 0, 0).unwrap();
            let acks: Vec<Ack> = (0..old)
                .map(|n| {
                    let entry = Entry {
                        at_ms: old_ms,
                        user_key: Some(n as u64),
                        ..settled(ids.next_id(old_ms), "c1", 1)
                    };
                    journal.append(entry).unwrap()
                })
                .collect();
            let recent = journal.append(settled(ids.next_id(NOW_MS), "c1", 5));
            assert!(acks.into_iter().chain([recent.unwrap()]).all(wait));
        }
        let count = |table: &str| -> i64 {
            let conn = Connection::open(config(&dir).path).unwrap();
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("notices"), old as i64 + 1);
        assert_eq!(count("wins_by_quarter"), old as i64);
        let mut conn = Connection::open(config(&dir).path).unwrap();
        let retention_ms = 35 * DAY_MS;
        let deleted = prune_step(&mut conn, NOW_MS, retention_ms).unwrap();
        assert_eq!(deleted, PRUNE_STEP_ROWS, "one step is bounded");
        assert_eq!(count("notices"), (old - PRUNE_STEP_ROWS) as i64 + 1);
        drop(conn);
        let (journal, _) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        // Each barrier is answered after one more step: two more cover 10,000 + 5.
        for _ in 0..2 {
            assert!(wait(journal.barrier().unwrap()));
        }
        assert_eq!(count("notices"), 1, "only the recent notice stays");
        assert_eq!(count("wins_by_quarter"), 0);
        assert_eq!(count("spend_by_quarter"), 1);
        drop(journal);
        let (_j, recovered) =
            Journal::open(&config(&dir), DrivenClock::at(NOW_MS).clock(), 0, 0).unwrap();
        assert_eq!(
            recovered.lifetime_micros.get("c1"),
            Some(&(old as i64 + 5)),
            "lifetime totals outlive pruning"
        );
        assert_eq!(recovered.spent_since("c1", 0), 5);
    }

    #[test]
    fn a_version_4_ledger_gets_its_quarter_hour_sums_from_its_notices() {
        let clock = DrivenClock::at(NOW_MS).clock();
        let dir = ledger_with_wins(&clock);
        let conn = Connection::open(config(&dir).path).unwrap();
        conn.execute_batch(
            "DROP TABLE spend_by_quarter; DROP TABLE wins_by_quarter; PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(conn);
        let (_j, recovered) = Journal::open(&config(&dir), clock, 0, 0).unwrap();
        let hour_start = NOW_MS - NOW_MS % 3_600_000;
        assert_eq!(recovered.spent_since("c1", hour_start), 600);
        assert_eq!(recovered.spent_since("c1", 0), 1_000);
        assert_eq!((wins_of(&recovered, 7), wins_of(&recovered, 8)), (3, 1));
        let quarters: std::collections::BTreeSet<u64> = recovered
            .impressions
            .iter()
            .map(|&(_, _, q, _)| q)
            .collect();
        assert_eq!(
            quarters.len(),
            2,
            "this quarter hour and one an hour before"
        );
    }

    #[test]
    fn a_torn_write_ahead_log_loses_only_the_torn_commit() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        let live = config(&dir);
        let crashed = JournalConfig {
            path: dir.0.join("crashed.sqlite"),
            ..live.clone()
        };
        let wal = |c: &JournalConfig| c.path.with_extension("sqlite-wal");
        let (journal, _) = Journal::open(&live, clock.clone(), 0, 0).unwrap();
        assert!(wait(
            journal
                .append(settled(ids.next_id(NOW_MS), "c1", 500))
                .unwrap()
        ));
        let durable_len = std::fs::metadata(wal(&live)).unwrap().len() as usize;
        assert!(wait(
            journal
                .append(settled(ids.next_id(NOW_MS), "c1", 900))
                .unwrap()
        ));
        // What a power cut in the middle of the second commit leaves on disk: the
        // database file, and the log with that commit's frames cut short (the -shm
        // index is rebuilt from the log at the next open).
        let log = std::fs::read(wal(&live)).unwrap();
        assert!(log.len() > durable_len, "the second commit is in the log");
        std::fs::copy(&live.path, &crashed.path).unwrap();
        let torn = durable_len + (log.len() - durable_len) / 2;
        std::fs::write(wal(&crashed), &log[..torn]).unwrap();
        drop(journal);
        let (_j, recovered) = Journal::open(&crashed, clock, 0, 0).unwrap();
        assert_eq!(
            recovered.spent_since("c1", 0),
            500,
            "the whole first commit, none of the torn one"
        );
        assert_eq!(recovered.lifetime_micros.get("c1"), Some(&500));
    }

    #[test]
    fn a_corrupt_ledger_is_refused_naming_the_file_and_the_recovery() {
        let dir = testkit::TempDir::new("journal");
        let clock = DrivenClock::at(NOW_MS).clock();
        let mut ids = BidIdGen::new(1, 0);
        let config = config(&dir);
        {
            let (journal, _) = Journal::open(&config, clock.clone(), 0, 0).unwrap();
            for _ in 0..200 {
                journal
                    .append(settled(ids.next_id(NOW_MS), "c1", 1))
                    .unwrap();
            }
            assert!(wait(journal.barrier().unwrap()));
        }
        // Damage a page in the middle of the (checkpointed) database file.
        let mut bytes = std::fs::read(&config.path).unwrap();
        assert!(bytes.len() >= 3 * 4096, "{} bytes", bytes.len());
        for b in &mut bytes[4096 + 100..2 * 4096] {
            *b = 0xa5;
        }
        std::fs::write(&config.path, &bytes).unwrap();
        let err = Journal::open(&config, clock, 0, 0).err().expect("refused");
        let text = err.to_string();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("ledger.sqlite") && text.contains(".recover"),
            "{text}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_with_the_fix() {
        let dir = testkit::TempDir::new("journal");
        let config = config(&dir);
        std::fs::write(&config.path, vec![0x5a; 8192]).unwrap();
        let clock = DrivenClock::at(NOW_MS).clock();
        let err = Journal::open(&config, clock, 0, 0).err().expect("refused");
        let text = err.to_string();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("ledger.sqlite") && text.contains("fix:"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_folder_names_the_path_and_the_fix() {
        let dir = testkit::TempDir::new("journal");
        let config = JournalConfig {
            path: dir.0.join("no/such/dir/ledger.sqlite"),
            retention_days: 1,
        };
        let err = Journal::open(&config, DrivenClock::at(NOW_MS).clock(), 0, 0)
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("no/such/dir") && text.contains("folder exists"),
            "{text}"
        );
    }
}

//! `bidder run`: wires configuration, budgets, the bid service and an engine, then
//! serves until SIGTERM, reloading on SIGHUP.
//!
//! What outlives a reload lives here: the budget table and its slots (so money held
//! by bids in flight stays accounted), the ledger inbox, the service whose generation
//! is swapped, and the XDP front whose maps follow each generation. A configuration
//! that fails validation is logged and the running one stays.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::bid::gate::BidService;
use crate::bid::pipeline::Bidding;
use crate::catalog::{BudgetSlots, Catalog};
use crate::clock::Clock;
use crate::config::{Config, ConfigError, ServerConfig, MAX_CAMPAIGNS};
use crate::control::Registry;
use crate::control::{
    ControlConfig, ControlError, ControlParts, ControlPort, NoticeListenerConfig, Notices,
    Readiness,
};
use crate::engine::ring::{RingConfig, RingWrite, SqPoll};
use crate::engine::{EngineError, ServeConfig};
use crate::http::{HttpConfig, HttpLimits, NoContent, Service};
use crate::metrics::{Collect, WorkerMetrics};
use crate::money::bid_id::BidId;
use crate::money::budget::{Budgets, RecoveredSpend, Reservation};
use crate::money::currency::{CurrencyBook, Rates};
use crate::money::journal::{Journal, JournalConfig, Recovered};
use crate::money::lease::{next_lease, LeaseState};
use crate::money::ledger::{Ledger, LedgerInbox, INBOX_CAPACITY};
use crate::money::notice_keys::{NoticeKeyring, Rotation};
use crate::supervisor::{self, Watchdog};
// ---- strategy and stats tables (issue 6) ----
use crate::tables::mirror::{Mirror, MirrorParts};
use crate::tables::stats::{StatsInputs, StatsPublisher};
use crate::tables::strategy::StrategyTable;
// ---- end strategy and stats tables ----
use crate::engine::tokio::TokioEngineConfig;
use crate::supply::SupplyStore;
use crate::xdp::{Rules, XdpError, XdpFront};

/// What stays across reloads.
pub struct Daemon {
    config_path: PathBuf,
    slots: Mutex<BudgetSlots>,
    pub budgets: Arc<Budgets>,
    /// The opened spend journal and the bids it says were resolved, until the control
    /// port takes them (once).
    journal: Mutex<Option<OpenedJournal>>,
    pub inbox: Arc<LedgerInbox>,
    pub service: Arc<BidService>,
    /// The server section in force at start: engines are not rebuilt on reload.
    pub server: ServerConfig,
    /// The control port's settings at start (admin and notice listeners, the admin
    /// token file): like the engines, they change at the next restart.
    pub control: ControlConfig,
    // ---- strategy and stats tables (issue 6) ----
    /// The agent's strategy table (mapped when it exists).
    pub strategy: Arc<StrategyTable>,
    /// The configuration in force, to recompile the catalog when the table changes a
    /// partner's limits. Its lock also serialises every generation swap, so a table
    /// change and a reload cannot undo each other.
    config: Mutex<Config>,
    // ---- end strategy and stats tables ----
    /// The XDP front, once `serve` attached it (`[xdp] interface` set and attached).
    xdp: OnceLock<XdpFront>,
    /// The notice keys the control port verifies with; a reload may rotate them.
    keyring: Arc<NoticeKeyring>,
    /// The currency rates notices are read with; a reload replaces them.
    currencies: Arc<CurrencyBook>,
    /// `reservation_ttl_ms` in force, for the ledger to apply to bids already held.
    reservation_ttl_ms: Arc<AtomicU64>,
    /// The process's calendar, handed to every part that reads the time of day.
    clock: Clock,
    /// ads.txt and sellers.json: filled by the control thread's fetcher, read by every
    /// worker; its settings follow reloads.
    pub supply: Arc<SupplyStore>,
    /// Fleet mode (`[fleet]`): leases of the day's budgets from Redis, renewed by the
    /// control thread; a reload does not change it (restart to join or leave a fleet).
    fleet: Option<crate::fleet::Fleet>,
    fleet_status: Arc<crate::fleet::FleetStatus>,
}

/// `bidder_simulated_clock`: whether the time of day is a simulator's.
struct CalendarGauge(bool);

impl crate::metrics::Collect for CalendarGauge {
    fn collect(&self, out: &mut crate::metrics::PromText) {
        out.gauge(
            "bidder_simulated_clock",
            "1: the time of day comes from an auction simulator's clock file (bidder run --simulate), never in production; 0: the host clock.",
            &[],
            i64::from(self.0),
        );
    }
}

/// Why a configuration could not be loaded; every problem, one per line.
#[derive(Debug)]
pub struct LoadError(pub Vec<ConfigError>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl Daemon {
    /// Loads the configuration and builds everything but the engines; every part that
    /// reads the time of day reads `clock` ([`Clock::system`] in production).
    pub fn load(config_path: &Path, clock: Clock) -> Result<Daemon, LoadError> {
        let config = Config::load(config_path).map_err(LoadError)?;
        Daemon::from_config(config_path, config, clock)
    }

    /// [`Daemon::load`] of a configuration already read from `config_path` (which
    /// reloads read again). `bidder run` reads it first to move itself off the worker
    /// cores before any thread starts: see [`confine_housekeeping`].
    pub fn from_config(
        config_path: &Path,
        mut config: Config,
        clock: Clock,
    ) -> Result<Daemon, LoadError> {
        let strategy = Arc::new(StrategyTable::open(&config.strategy.table_path));
        let mut slots = BudgetSlots::with_capacity(MAX_CAMPAIGNS);
        let catalog =
            Catalog::compile_with_slots(&config, &mut slots).map_err(|e| LoadError(vec![e]))?;
        let budgets = Budgets::new(std::iter::repeat_n(0, slots.capacity))
            .with_frequency_tracked(config.frequency.max_tracked);
        let budgets = Arc::new(budgets);
        apply_budgets(&catalog, &config, &budgets, &clock);
        let fleet = crate::fleet::Fleet::from_config(&config);
        if fleet.is_some() {
            // Before the journal's recovery and in-doubt holds: they move the room too.
            budgets.enable_fleet();
        }
        let journal = open_journal(&config, &catalog, &budgets, &clock)?;
        let inbox = Arc::new(LedgerInbox::new(INBOX_CAPACITY));
        // Compiling the catalog validated the key and base URL.
        let settings = &catalog.settings;
        let keyring = NoticeKeyring::new(&settings.notice_hmac_key, &settings.notice_base_url)
            .expect("catalog notice key was validated");
        let keyring = Arc::new(keyring);
        let currencies = Arc::new(CurrencyBook::new(rates(settings)));
        let reservation_ttl_ms = Arc::new(AtomicU64::new(settings.reservation_ttl_ms));
        let supply = Arc::new(SupplyStore::new(crate::supply::Settings::from_config(
            &config,
        )));
        let bidding = bidding(catalog, &budgets, &inbox, &strategy, &clock, &supply);
        let workers = config.server.cores.len() as u32;
        let control = control_config(&config);
        Ok(Daemon {
            config_path: config_path.to_path_buf(),
            slots: Mutex::new(slots),
            budgets,
            inbox,
            service: Arc::new(BidService::new(bidding, workers)),
            server: std::mem::take(&mut config.server),
            control,
            strategy,
            config: Mutex::new(config),
            xdp: OnceLock::new(),
            keyring,
            currencies,
            reservation_ttl_ms,
            clock,
            journal: Mutex::new(journal),
            supply,
            fleet,
            fleet_status: Arc::default(),
        })
    }

    /// Re-reads the configuration file and swaps in its catalog; on any problem the
    /// running catalog stays and the problems are returned. Returns a one-line summary.
    pub fn reload(&self) -> Result<String, LoadError> {
        let config = Config::load(&self.config_path).map_err(LoadError)?;
        // A file this process could not restart with is refused now, not at the next
        // restart: adding [simulation] to a production bidder (or dropping it from a
        // simulated one) would keep it from starting again.
        if config.simulation.is_some() != self.clock.is_simulated() {
            let (problem, fix) = if self.clock.is_simulated() {
                (
                    "a simulated bidder's configuration lost its [simulation] section",
                    "put [simulation] back, or restart without --simulate",
                )
            } else {
                (
                    "[simulation] in a production bidder's configuration: it would not start again",
                    "remove [simulation]; simulations run with `bidder run --simulate`",
                )
            };
            return Err(LoadError(vec![crate::config::ConfigError::Invalid {
                path: self.config_path.clone(),
                line: 0,
                field: "simulation".into(),
                problem: problem.into(),
                fix: fix.into(),
            }]));
        }
        let mut in_force = self.config.lock().expect("config poisoned");
        let mut summary = self.install(&config)?;
        let mut waiting: Vec<String> = config
            .server
            .fields_changed_from(&self.server)
            .iter()
            .map(|f| format!("server.{f}"))
            .collect();
        if config.simulation_clock_path() != in_force.simulation_clock_path() {
            waiting.push("[simulation]".to_owned());
        }
        if control_config(&config).notice != self.control.notice {
            waiting.push("the [notice] listener".to_owned());
        }
        if !waiting.is_empty() {
            let fields = waiting.join(", ");
            tracing::warn!(
                "{fields} changed: the engines keep the values of the start until the next restart"
            );
            summary.push_str(&format!(
                "; {fields} changed: takes effect at the next restart"
            ));
        }
        *in_force = config;
        Ok(summary)
    }

    /// Compiles `config` and swaps it in; the caller holds the `config` lock.
    fn install(&self, config: &Config) -> Result<String, LoadError> {
        // Slots are assigned on a copy and kept only if the whole reload succeeds.
        let mut slots = self.slots.lock().expect("slots poisoned").clone();
        let catalog =
            Catalog::compile_with_slots(config, &mut slots).map_err(|e| LoadError(vec![e]))?;
        apply_budgets(&catalog, config, &self.budgets, &self.clock);
        let mut summary = format!(
            "{}: reloaded: {} partners, {} campaigns",
            self.config_path.display(),
            catalog.partners.len(),
            catalog.campaigns.len()
        );
        // Before the swap: a notice for the first bid signed with a new key must verify.
        let old_ttl_ms = self
            .service
            .current()
            .bidding
            .catalog
            .settings
            .reservation_ttl_ms;
        let settings = &catalog.settings;
        let rotation = self
            .keyring
            .install(
                &settings.notice_hmac_key,
                &settings.notice_base_url,
                old_ttl_ms,
                self.clock.now_unix_ms(),
            )
            .expect("catalog notice key was validated");
        self.currencies.install(rates(settings));
        self.reservation_ttl_ms
            .store(settings.reservation_ttl_ms, Ordering::Release);
        if let Rotation::Rotated { previous_until_ms } = rotation {
            tracing::info!(
                previous_until_ms,
                "notice key rotated: notices signed with the previous key are accepted until their reservations expire"
            );
            summary.push_str("; notice key rotated");
        }
        let generation = self.service.swap(bidding(
            catalog,
            &self.budgets,
            &self.inbox,
            &self.strategy,
            &self.clock,
            &self.supply,
        ));
        self.supply
            .set_settings(crate::supply::Settings::from_config(config));
        *self.slots.lock().expect("slots poisoned") = slots;
        let summary = format!("{summary} (generation {generation})");
        Ok(match self.sync_xdp(config) {
            Some(xdp) => format!("{summary}; {xdp}"),
            None => summary,
        })
    }

    /// Starts the XDP front when `xdp.interface` is set; attached, it takes over the
    /// limits of the partners it recognises from user space. An attach failure stops
    /// the start unless `xdp.required = false`.
    fn start_xdp(&self, registry: &Registry) -> Result<(), RunError> {
        let config = self.config.lock().expect("config poisoned");
        let section = &config.xdp;
        if !section.enabled() {
            tracing::info!("no xdp.interface: partner limits enforced in user space");
            return Ok(());
        }
        let rules = self.xdp_rules(&config);
        match XdpFront::start(section, &rules) {
            Ok(front) => {
                registry.register(front.collector());
                self.service.set_user_space_limits(false);
                // `serve` runs once per daemon, so the cell is empty here.
                assert!(self.xdp.set(front).is_ok(), "XDP front started twice");
                Ok(())
            }
            Err(e) if !section.required => {
                tracing::error!("{e}; xdp.required = false: partner limits stay in user space");
                Ok(())
            }
            Err(e) => Err(RunError::Xdp(e)),
        }
    }

    /// The XDP rules for the generation in force (partners with the agent's overrides).
    fn xdp_rules(&self, config: &Config) -> Rules {
        let port = self
            .server
            .listen
            .parse::<SocketAddr>()
            .map_or(0, |a| a.port());
        let generation = self.service.current();
        Rules::new(&config.xdp, &[port], &generation.bidding.catalog.partners)
    }

    /// Brings the XDP maps in step with the generation just installed (reload, agent
    /// partner rows). A failure is logged and named in the summary; the maps are
    /// compared afresh at the next update, so they converge then.
    fn sync_xdp(&self, config: &Config) -> Option<String> {
        let Some(front) = self.xdp.get() else {
            if config.xdp.enabled() {
                tracing::warn!(
                    "no XDP front running (none at start, or its attach failed): [xdp] takes effect at the next restart"
                );
            }
            return None;
        };
        let section = &config.xdp;
        if section.interface != front.attachment().interface || section.pin_dir != front.pin_dir() {
            tracing::warn!(
                "xdp.interface / xdp.pin_dir changed: they take effect at the next restart; maps updated in place"
            );
        }
        Some(match front.apply(&self.xdp_rules(config)) {
            Ok(applied) => format!("xdp maps updated ({applied})"),
            Err(e) => {
                tracing::error!("xdp maps not updated: {e}");
                format!("xdp maps NOT updated: {e}")
            }
        })
    }

    /// Clean shutdown of the XDP front: the link detached, the maps left pinned.
    fn detach_xdp(&self) {
        if let Some(front) = self.xdp.get() {
            if let Err(e) = front.detach() {
                tracing::error!("xdp front not detached: {e} (run `bidder xdp detach`)");
            }
        }
    }

    // ---- strategy and stats tables (issue 6) ----
    /// Recompiles the configuration in force (the strategy table changed a partner's
    /// limits, which live in the catalog).
    pub fn rebuild_catalog(&self) -> Result<String, LoadError> {
        let in_force = self.config.lock().expect("config poisoned");
        self.install(&in_force)
    }

    /// Swaps in a generation with the same catalog and a strategy source on the table
    /// file now mapped (the agent created or re-created the table).
    pub fn refresh_strategy(&self) -> u64 {
        let _serialised = self.config.lock().expect("config poisoned");
        let mut bidding = self.service.current().bidding.clone();
        bidding.strategy = self.strategy.source_for(&bidding.catalog);
        self.service.swap(bidding)
    }

    /// Starts the thread that follows the strategy table and writes the stats table.
    fn start_mirror(self: &Arc<Self>, workers: &[Arc<WorkerMetrics>]) -> std::io::Result<Mirror> {
        let section = &self.config.lock().expect("config poisoned").strategy;
        let cap = bidder_common::table::Capacity {
            campaigns: section.stats_campaign_capacity,
            partners: section.stats_partner_capacity,
        };
        let stats = StatsPublisher::open(&section.stats_path, cap, self.clock.clone())
            .inspect_err(|e| tracing::error!("stats table not published: {e}"))
            .ok();
        let (refresh, rebuild, inputs) = (Arc::clone(self), Arc::clone(self), Arc::clone(self));
        let workers = workers.to_vec();
        Mirror::start(MirrorParts {
            table: Arc::clone(&self.strategy),
            refresh_strategy: Box::new(move || {
                refresh.refresh_strategy();
            }),
            rebuild_catalog: Box::new(move || {
                log_reload(rebuild.rebuild_catalog().map_err(|e| e.to_string()))
            }),
            inputs: Box::new(move || StatsInputs {
                generation: inputs.service.current(),
                budgets: Arc::clone(&inputs.budgets),
                decisions: inputs.service.decision_stats(),
                workers: workers.clone(),
                strategy_contended: 0,
            }),
            budgets: Arc::clone(&self.budgets),
            stats,
            poll_interval_ms: section.poll_interval_ms,
            stats_interval_ms: section.stats_interval_ms,
        })
    }
    // ---- end strategy and stats tables ----
}

/// Opens the spend journal when one is configured and puts the current period's
/// recorded spend back into the budgets, before anything bids. The period is the UTC
/// day; a bid counts in the day it was made.
fn open_journal(
    config: &Config,
    catalog: &Catalog,
    budgets: &Budgets,
    clock: &Clock,
) -> Result<Option<OpenedJournal>, LoadError> {
    let Some(path) = config.ledger_path() else {
        tracing::warn!(
            "no [ledger] path: spend is kept in memory only; a restart forgets this period's spend"
        );
        return Ok(None);
    };
    let journal_config = JournalConfig {
        path,
        retention_days: config.ledger.retention_days,
    };
    let now_ms = clock.now_unix_ms();
    // The earliest current day of any campaign (days last at most 25 hours).
    let since_ms = catalog
        .campaigns
        .iter()
        .map(|c| budgets.snapshot(c.budget_slot).day_start_ms)
        .min()
        .unwrap_or(now_ms);
    let resolved_since_ms = now_ms.saturating_sub(config.bidding.reservation_ttl_ms);
    let (journal, recovered) =
        Journal::open(&journal_config, clock.clone(), since_ms, resolved_since_ms).map_err(
            |e| {
                LoadError(vec![ConfigError::Invalid {
                    path: config.source.path.clone(),
                    line: 0,
                    field: "ledger.path".into(),
                    problem: e.to_string(),
                    fix: "see the message".into(),
                }])
            },
        )?;
    let mut recovered_micros = 0;
    for c in &catalog.campaigns {
        let periods = budgets.snapshot(c.budget_slot);
        let spent = RecoveredSpend {
            day_micros: recovered.spent_since(&c.id, periods.day_start_ms),
            hour_micros: recovered.spent_since(&c.id, periods.hour_start_ms),
            lifetime_micros: recovered.lifetime_micros.get(&c.id).copied().unwrap_or(0),
        };
        budgets.recover(c.budget_slot, spent);
        recovered_micros += spent.day_micros;
        if recovered.tripped.contains(&c.id) {
            budgets.trip(c.budget_slot);
            tracing::warn!(
                campaign = %c.id,
                "still paused by the spend-rate breaker (tripped before the restart); \
                 resume with `bidderctl campaign resume {}`",
                c.id
            );
        }
    }
    let counted = recover_impressions(catalog, budgets, &recovered, now_ms);
    let holds = lease_at_start(catalog, budgets, &journal, &recovered, now_ms);
    let in_doubt_micros: i64 = holds.iter().map(|h| h.amount_micros).sum();
    tracing::info!(
        path = %journal.path().display(),
        records = recovered.records,
        resolved = recovered.resolved.len(),
        spent_micros = recovered_micros,
        in_doubt_micros,
        frequency_pairs = counted,
        elapsed_ms = recovered.elapsed.as_millis() as u64,
        "spend ledger recovered"
    );
    Ok(Some(OpenedJournal {
        journal,
        resolved: recovered.resolved,
        holds,
        started_ms: now_ms,
        hold_until_ms: now_ms + config.bidding.reservation_ttl_ms,
    }))
}

/// Counts this period's wins per user again for campaigns with a frequency cap, each
/// in its own period (day or hour, in its time zone). Returns the pairs counted.
fn recover_impressions(
    catalog: &Catalog,
    budgets: &Budgets,
    recovered: &Recovered,
    now_ms: u64,
) -> usize {
    let mut by_pair: HashMap<(usize, u64), u32> = HashMap::new();
    let capped: HashMap<&str, (usize, u64)> = catalog
        .campaigns
        .iter()
        .filter(|c| c.frequency_cap.is_some())
        .filter_map(|c| {
            let (start, _) = budgets.frequency_period(c.budget_slot)?;
            Some((c.id.as_str(), (c.budget_slot, start)))
        })
        .collect();
    for (campaign, user, quarter_ms, count) in &recovered.impressions {
        if let Some(&(slot, start)) = capped.get(campaign.as_str()) {
            if *quarter_ms >= start {
                *by_pair.entry((slot, *user)).or_default() += count;
            }
        }
    }
    for (&(slot, user), &count) in &by_pair {
        budgets.count_impressions(slot, user, count, now_ms);
    }
    by_pair.len()
}

/// How long start-up waits for the first leases to be on disk before serving anyway
/// (bids then wait for the control thread to grant them).
const FIRST_LEASES_WAIT_MS: u64 = 5_000;

/// Leases money in flight: holds back what each campaign's bids could hold before the
/// restart (its recorded lease) and, before the first bid, records and grants the
/// lease each campaign starts with.
fn lease_at_start(
    catalog: &Catalog,
    budgets: &Budgets,
    journal: &Journal,
    recovered: &Recovered,
    now_ms: u64,
) -> Vec<Reservation> {
    budgets.enable_leases();
    let mut holds = Vec::new();
    let mut raises = Vec::new();
    for c in &catalog.campaigns {
        let slot = c.budget_slot;
        let recorded = recovered.leases.get(&c.id).copied().unwrap_or(0);
        budgets.grant_lease(slot, recorded);
        let hold = budgets.hold_in_doubt(slot, recorded);
        let in_doubt_micros = hold.as_ref().map_or(0, |h| h.amount_micros);
        holds.extend(hold);
        let figures = budgets.lease(slot);
        let state = LeaseState {
            lease_micros: figures.lease_micros,
            in_flight_micros: figures.in_flight_micros,
            in_doubt_micros,
            daily_micros: c.daily_budget_micros,
            wanted: true,
        };
        if let Some(target) = next_lease(state).filter(|&t| t > figures.lease_micros) {
            if journal.record_lease(&c.id, target, now_ms).is_ok() {
                raises.push((slot, target - figures.lease_micros));
            }
        }
    }
    let last = journal.last_seq();
    let waited = Instant::now();
    while journal.durable_seq() < last {
        if waited.elapsed() >= Duration::from_millis(FIRST_LEASES_WAIT_MS) {
            tracing::error!(
                path = %journal.path().display(),
                "the spend ledger did not record the first leases in time: campaigns bid once it does"
            );
            return holds;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (slot, micros) in raises {
        budgets.grant_lease(slot, micros);
    }
    holds
}

/// A journal just opened, with what the ledger needs from before the restart: the
/// bids settled or released lately (for its duplicate check) and the in-doubt holds.
struct OpenedJournal {
    journal: Journal,
    resolved: Vec<(BidId, u64)>,
    holds: Vec<Reservation>,
    started_ms: u64,
    hold_until_ms: u64,
}

/// Sets each campaign's limits and time zone in its slot (money already spent or
/// reserved this period stays counted), and the spend-rate breaker's rule.
fn apply_budgets(catalog: &Catalog, config: &Config, budgets: &Budgets, clock: &Clock) {
    budgets.set_breaker(config.breaker.spend_breaker());
    let now_ms = clock.now_unix_ms();
    for c in &catalog.campaigns {
        budgets.configure(c.budget_slot, &c.id, c.budget_limits(), &c.calendar, now_ms);
        budgets.set_frequency_cap(c.budget_slot, c.frequency_cap);
        budgets
            .feedback()
            .set_reference(c.budget_slot, c.max_bid_cpm_micros);
    }
    crate::bid::pipeline::apply_partner_holds(catalog, budgets);
}

fn bidding(
    mut catalog: Catalog,
    budgets: &Arc<Budgets>,
    inbox: &Arc<LedgerInbox>,
    strategy: &StrategyTable,
    clock: &Clock,
    supply: &Arc<SupplyStore>,
) -> Bidding {
    // Issue 6: the strategy table's partner limits and budget overrides win over the
    // configuration's; campaigns read their strategy rows through the table.
    strategy.apply_partner_overrides(&mut catalog.partners);
    strategy.apply_budget_overrides(&catalog, budgets);
    let source = strategy.source_for(&catalog);
    let mut bidding = Bidding::sharing(
        Arc::new(catalog),
        Arc::clone(budgets),
        Arc::clone(inbox),
        source,
        clock.clone(),
    );
    bidding.supply = Arc::clone(supply);
    bidding
}

/// The HTTP settings both engines use.
pub fn http_config(server: &ServerConfig) -> HttpConfig {
    HttpConfig {
        limits: HttpLimits {
            max_header_bytes: server.max_header_bytes,
            max_body_bytes: server.max_body_bytes,
            max_decompressed_body_bytes: server.max_decompressed_body_bytes,
            ..HttpLimits::default()
        },
        default_bid_path: server.default_bid_path.clone(),
        ..HttpConfig::default()
    }
}

/// What both engines serve with, from the server section.
pub fn serve_config(server: &ServerConfig) -> ServeConfig {
    ServeConfig {
        listen_addr: server
            .listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        max_connections: server.max_connections_per_worker,
        idle_timeout_ms: server.idle_timeout_ms,
        first_byte_timeout_ms: server.first_byte_timeout_ms,
        request_timeout_ms: server.request_timeout_ms,
        shutdown_grace_ms: server.shutdown_grace_ms,
        http: http_config(server),
        ..ServeConfig::default()
    }
}

/// The io_uring engine's settings from the server section.
pub fn ring_config(server: &ServerConfig) -> RingConfig {
    RingConfig {
        serve: serve_config(server),
        cores: server.cores.clone(),
        ring_entries: server.ring_entries,
        sqpoll: server.sqpoll.then(|| SqPoll {
            idle_ms: server.sqpoll_idle_ms,
            cpus: server.sqpoll_cpus.clone(),
        }),
        write: match server.ring_write.as_str() {
            "send" => RingWrite::Send,
            _ => RingWrite::Fixed,
        },
        ..RingConfig::default()
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The engine named did not start or did not stop cleanly.
    #[error("{engine} engine: {source}")]
    Engine {
        engine: &'static str,
        source: EngineError,
    },
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("notice signer: {0}")]
    Signer(#[from] crate::money::notice::SignerError),
    #[error("signals: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Xdp(#[from] XdpError),
}

/// The engine serving the bid port.
enum Running {
    Ring(crate::engine::ring::Engine),
    Tokio(crate::engine::tokio::TokioEngine),
}

impl Running {
    /// Starts the engine `server` names with `service`; io_uring falls back to tokio
    /// (with a log line) when the kernel cannot run it.
    fn start<S: Service + 'static>(
        server: &ServerConfig,
        service: Arc<S>,
        metrics: &[Arc<WorkerMetrics>],
    ) -> Result<Running, RunError> {
        if server.engine == "io_uring" {
            match crate::engine::ring::Engine::start(
                ring_config(server),
                Arc::clone(&service),
                metrics,
            ) {
                Ok(engine) => return Ok(Running::Ring(engine)),
                Err(EngineError::Unsupported(why)) => {
                    tracing::warn!("io_uring unavailable ({why}); serving with the tokio engine");
                }
                Err(source) => {
                    return Err(RunError::Engine {
                        engine: "io_uring",
                        source,
                    })
                }
            }
        }
        let engine =
            crate::engine::tokio::TokioEngine::start(tokio_config(server), service, metrics)
                .map_err(|source| RunError::Engine {
                    engine: "tokio",
                    source,
                })?;
        Ok(Running::Tokio(engine))
    }

    fn name(&self) -> &'static str {
        match self {
            Running::Ring(_) => "io_uring",
            Running::Tokio(_) => "tokio",
        }
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Running::Ring(e) => e.local_addr(),
            Running::Tokio(e) => e.local_addr(),
        }
    }

    fn liveness(&self) -> crate::engine::Liveness {
        match self {
            Running::Ring(e) => e.liveness(),
            Running::Tokio(e) => e.liveness(),
        }
    }

    fn collector(&self) -> Arc<dyn Collect> {
        match self {
            Running::Ring(e) => e.collector(),
            Running::Tokio(e) => e.collector(),
        }
    }

    fn shutdown(self) -> Result<(), RunError> {
        let engine = self.name();
        match self {
            Running::Ring(e) => e.shutdown(),
            Running::Tokio(e) => e.shutdown(),
        }
        .map_err(|source| RunError::Engine { engine, source })
    }
}

/// Moves the calling thread, and every thread it starts from then on (the journal,
/// the XDP drop log, control, mirror, fetcher), off the workers' CPUs where the host
/// has others (see [`crate::engine::confine_to_spare_cpus`]); workers pin themselves
/// to theirs. `bidder run` calls it first thing, before [`Daemon::from_config`].
pub fn confine_housekeeping(worker_cpus: &[usize]) {
    match crate::engine::confine_to_spare_cpus(worker_cpus) {
        Ok(Some(cpus)) => tracing::info!(?cpus, "control threads run on the CPUs no worker uses"),
        Ok(None) => tracing::warn!(
            ?worker_cpus,
            "every CPU this process may use has a worker: the control thread shares their CPUs \
             and can delay bids while it works; leave one CPU without a worker"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not move the control threads off the workers' CPUs")
        }
    }
}

/// `bidder serve-io`: the engine, cores and HTTP limits of `server`, answering every
/// request `204` without reading its body ([`NoContent`]) until SIGTERM or SIGINT.
/// What the engine costs apart from the decision: the benchmark's I/O-only rows. No
/// admin or notice listener, no XDP front, no tables; it bids nothing.
pub fn serve_io_only(server: &ServerConfig) -> Result<(), RunError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(RunError::Signals)?;
    let metrics: Vec<Arc<WorkerMetrics>> = (0..server.cores.len())
        .map(|worker| Arc::new(WorkerMetrics::new(worker)))
        .collect();
    let engine = Running::start(server, Arc::new(NoContent), &metrics)?;
    tracing::warn!(
        listen = %engine.local_addr(),
        engine = engine.name(),
        workers = metrics.len(),
        "I/O-only benchmark: every request is answered 204 unread; nothing is bid"
    );
    let _ = signals.forever().next();
    engine.shutdown()
}

/// Addresses a running daemon serves on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub bid: SocketAddr,
    pub admin: SocketAddr,
}

impl Daemon {
    /// Attaches the XDP front (if configured), starts the engine and the control port
    /// and serves until SIGTERM or SIGINT; SIGHUP (or `POST /reload`) reloads the
    /// configuration. Returns once requests in flight finished (within the grace),
    /// having detached the XDP front (its maps stay pinned).
    pub fn serve(self) -> Result<(), RunError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        // Taken before anything starts, so a SIGTERM during start-up is not lost.
        let signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(RunError::Signals)?;
        let daemon = Arc::new(self);
        let registry = Arc::new(Registry::new());
        daemon.start_xdp(&registry)?;
        let served = Daemon::serve_attached(&daemon, &registry, signals);
        daemon.detach_xdp();
        served
    }

    /// Everything of `serve` after the XDP front: engine, control port, mirror, signals.
    fn serve_attached(
        daemon: &Arc<Daemon>,
        registry: &Arc<Registry>,
        mut signals: signal_hook::iterator::Signals,
    ) -> Result<(), RunError> {
        use signal_hook::consts::SIGHUP;
        let metrics = registry.add_workers(daemon.server.cores.len());
        let engine = Running::start(&daemon.server, Arc::clone(&daemon.service), &metrics)?;
        registry.register(engine.collector());
        registry.register(Arc::clone(&daemon.supply) as Arc<dyn crate::metrics::Collect>);
        registry.register(Arc::new(CalendarGauge(daemon.clock.is_simulated())));
        if daemon.fleet.is_some() {
            registry.register(Arc::clone(&daemon.fleet_status) as Arc<dyn crate::metrics::Collect>);
        }
        let service = Arc::clone(&daemon.service);
        registry.add_decision_source(Arc::new(move || service.decision_stats()));
        publish_catalog(daemon, registry);
        let readiness = Readiness::new();
        let control = ControlPort::start(
            daemon.control.clone(),
            daemon.control_parts(registry, &readiness)?,
        )?;
        let mirror = daemon.start_mirror(&metrics).map_err(RunError::Signals)?; // issue 6
        readiness.set_ready(true);
        tracing::info!(
            listen = %engine.local_addr(),
            admin = %control.local_addr(),
            notices = %control.notice_addr(),
            workers = daemon.server.cores.len(),
            engine = engine.name(),
            "bidder ready"
        );
        supervisor::ready(&format!(
            "serving bids on {} ({}, {} workers)",
            engine.local_addr(),
            engine.name(),
            daemon.server.cores.len()
        ));
        let watchdog = Watchdog::start(readiness.clone(), engine.liveness());
        for signal in signals.forever() {
            if signal != SIGHUP {
                tracing::info!(signal, "stopping: finishing requests in flight");
                break;
            }
            let reloaded = reload_and_publish(daemon, registry);
            supervisor::status(match &reloaded {
                Ok(_) => "serving bids; last reload applied",
                Err(_) => "serving bids; last reload REFUSED (see the log)",
            });
            log_reload(reloaded);
        }
        supervisor::stopping();
        if let Some(watchdog) = watchdog {
            watchdog.stop();
        }
        readiness.set_ready(false);
        mirror.stop(); // issue 6
        engine.shutdown()?;
        control.shutdown()?;
        tracing::info!("stopped");
        Ok(())
    }

    fn control_parts(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        readiness: &Readiness,
    ) -> Result<ControlParts, RunError> {
        let settings = &self.service.current().bidding.catalog.settings;
        let daemon = Arc::clone(self);
        let reload_registry = Arc::clone(registry);
        Ok(ControlParts {
            registry: Arc::clone(registry),
            readiness: readiness.clone(),
            reload: Box::new(move |_body| {
                let result = reload_and_publish(&daemon, &reload_registry);
                log_reload(result.clone());
                result
            }),
            notices: {
                let mut ledger = Ledger::new(settings.reservation_ttl_ms);
                let taken = self.journal.lock().expect("journal lock").take();
                let journal = taken.map(|opened| {
                    ledger.recover_resolved(opened.resolved);
                    for hold in opened.holds {
                        ledger.hold_in_doubt(hold, opened.started_ms, opened.hold_until_ms);
                    }
                    opened.journal
                });
                Notices {
                    keyring: Arc::clone(&self.keyring),
                    ledger,
                    inbox: Arc::clone(&self.inbox),
                    budgets: Arc::clone(&self.budgets),
                    currencies: Arc::clone(&self.currencies),
                    reservation_ttl_ms: Arc::clone(&self.reservation_ttl_ms),
                    clock: self.clock.clone(),
                    journal,
                }
            },
            supply: Some((Arc::clone(&self.supply), self.clock.clone())),
            fleet: self
                .fleet
                .clone()
                .map(|fleet| (fleet, Arc::clone(&self.fleet_status))),
        })
    }
}

/// The currency rates of a compiled catalog, for reading notices.
fn rates(settings: &crate::catalog::Settings) -> Rates {
    Rates {
        ours: settings.currency.clone(),
        // Validation admits upper-case ISO-4217 codes only.
        rates_micros: settings.currency_rates_micros.clone(),
    }
}

/// Reloads and points the metrics at the new catalog.
fn reload_and_publish(daemon: &Daemon, registry: &Registry) -> Result<String, String> {
    let summary = daemon.reload().map_err(|e| e.to_string())?;
    publish_catalog(daemon, registry);
    Ok(summary)
}

fn publish_catalog(daemon: &Daemon, registry: &Registry) {
    let generation = daemon.service.current();
    registry.set_catalog(
        Arc::clone(&generation.bidding.catalog),
        Arc::clone(&daemon.budgets),
    );
}

fn log_reload(result: Result<String, String>) {
    match result {
        Ok(summary) => tracing::info!("{summary}"),
        Err(e) => tracing::error!("reload refused, the running configuration stays:\n{e}"),
    }
}

/// The tokio engine's settings from the server section.
pub fn tokio_config(server: &ServerConfig) -> TokioEngineConfig {
    TokioEngineConfig {
        serve: serve_config(server),
        workers: server.cores.len(),
        cores: server.cores.clone(),
    }
}

/// The control port's settings from the server and notice sections (validated
/// addresses; the fallbacks are the defaults).
pub fn control_config(config: &Config) -> ControlConfig {
    let notice = &config.notice;
    let defaults = NoticeListenerConfig::default();
    ControlConfig {
        listen_addr: config
            .server
            .admin_listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
        admin_token_file: config.admin_token_path(),
        notice: NoticeListenerConfig {
            listen_addr: notice.listen.parse().unwrap_or(defaults.listen_addr),
            max_connections: notice.max_connections,
            max_connections_per_source: notice.max_connections_per_source,
            header_read_timeout_ms: notice.header_read_timeout_ms,
        },
        ..ControlConfig::default()
    }
}

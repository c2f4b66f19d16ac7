//! `bidder run`: wires configuration, budgets, the bid service and an engine, then
//! serves until SIGTERM, reloading on SIGHUP.
//!
//! What outlives a reload lives here: the budget table and its slots (so money held
//! by bids in flight stays accounted), the ledger inbox, and the service whose
//! generation is swapped. A configuration that fails validation is logged and the
//! running one stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::bid_service::BidService;
use crate::bidding::Bidding;
use crate::budget::Budgets;
use crate::catalog::{BudgetSlots, Catalog};
use crate::config::{Config, ConfigError, ServerConfig, MAX_CAMPAIGNS};
use crate::http::{HttpConfig, HttpLimits};
use crate::ledger::{LedgerInbox, INBOX_CAPACITY};
use crate::ring::{RingConfig, SqPoll};
use crate::strategy::StaticStrategy;

/// What stays across reloads.
pub struct Daemon {
    config_path: PathBuf,
    slots: Mutex<BudgetSlots>,
    pub budgets: Arc<Budgets>,
    pub inbox: Arc<LedgerInbox>,
    pub service: Arc<BidService>,
    /// The server section in force at start: engines are not rebuilt on reload.
    pub server: ServerConfig,
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
    /// Loads the configuration and builds everything but the engines.
    pub fn load(config_path: &Path) -> Result<Daemon, LoadError> {
        let config = Config::load(config_path).map_err(LoadError)?;
        let mut slots = BudgetSlots::with_capacity(MAX_CAMPAIGNS);
        let catalog =
            Catalog::compile_with_slots(&config, &mut slots).map_err(|e| LoadError(vec![e]))?;
        let budgets = Arc::new(Budgets::new(std::iter::repeat_n(0, slots.capacity)));
        apply_budgets(&catalog, &budgets);
        let inbox = Arc::new(LedgerInbox::new(INBOX_CAPACITY));
        let bidding = bidding(catalog, &budgets, &inbox);
        let workers = config.server.cores.len() as u32;
        Ok(Daemon {
            config_path: config_path.to_path_buf(),
            slots: Mutex::new(slots),
            budgets,
            inbox,
            service: Arc::new(BidService::new(bidding, workers)),
            server: config.server,
        })
    }

    /// Re-reads the configuration file and swaps in its catalog; on any problem the
    /// running catalog stays and the problems are returned. Returns a one-line summary.
    pub fn reload(&self) -> Result<String, LoadError> {
        let config = Config::load(&self.config_path).map_err(LoadError)?;
        // Slots are assigned on a copy and kept only if the whole reload succeeds.
        let mut slots = self.slots.lock().expect("slots poisoned").clone();
        let catalog =
            Catalog::compile_with_slots(&config, &mut slots).map_err(|e| LoadError(vec![e]))?;
        apply_budgets(&catalog, &self.budgets);
        let summary = format!(
            "{}: reloaded: {} partners, {} campaigns",
            self.config_path.display(),
            catalog.partners.len(),
            catalog.campaigns.len()
        );
        let generation = self
            .service
            .swap(bidding(catalog, &self.budgets, &self.inbox));
        *self.slots.lock().expect("slots poisoned") = slots;
        Ok(format!("{summary} (generation {generation})"))
    }
}

/// Sets each campaign's daily budget in its slot (money already spent or reserved
/// today stays counted).
fn apply_budgets(catalog: &Catalog, budgets: &Budgets) {
    for c in &catalog.campaigns {
        budgets.set_daily(c.budget_slot, c.daily_budget_micros);
    }
}

fn bidding(catalog: Catalog, budgets: &Arc<Budgets>, inbox: &Arc<LedgerInbox>) -> Bidding {
    Bidding {
        strategy: Arc::new(StaticStrategy {
            shading_ppm: catalog.settings.default_shading_ppm,
        }),
        catalog: Arc::new(catalog),
        budgets: Arc::clone(budgets),
        inbox: Arc::clone(inbox),
    }
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

/// The io_uring engine's settings from the server section.
pub fn ring_config(server: &ServerConfig) -> RingConfig {
    RingConfig {
        listen_addr: server
            .listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        cores: server.cores.clone(),
        ring_entries: server.ring_entries,
        max_connections: server.max_connections_per_worker,
        idle_timeout_ms: server.idle_timeout_ms,
        request_timeout_ms: server.request_timeout_ms,
        shutdown_grace_ms: server.shutdown_grace_ms,
        sqpoll: server.sqpoll.then(|| SqPoll {
            idle_ms: server.sqpoll_idle_ms,
            cpus: server.sqpoll_cpus.clone(),
        }),
        http: http_config(server),
        ..RingConfig::default()
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Engine(#[from] crate::ring::EngineError),
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

impl Daemon {
    /// Starts the engine and serves until SIGTERM or SIGINT; SIGHUP reloads the
    /// configuration. Returns once in-flight requests finished (within the grace).
    pub fn serve(self) -> Result<(), RunError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        // Signals are taken before the engine starts, so a SIGTERM during start-up is
        // not lost to the default handler.
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(RunError::Signals)?;
        let ring = ring_config(&self.server);
        let engine = crate::ring::Engine::start(ring, Arc::clone(&self.service))?;
        tracing::info!(
            listen = %engine.local_addr(),
            workers = self.server.cores.len(),
            engine = "io_uring",
            "bidder serving"
        );
        for signal in signals.forever() {
            if signal != SIGHUP {
                tracing::info!(signal, "stopping: finishing requests in flight");
                break;
            }
            match self.reload() {
                Ok(summary) => tracing::info!("{summary}"),
                Err(e) => tracing::error!("reload refused, the running configuration stays:\n{e}"),
            }
        }
        engine.shutdown()?;
        tracing::info!("stopped");
        Ok(())
    }
}

//! The state the control thread's tasks share: what the routes answer from and what
//! the accept loop counts. One thread owns it, so plain cells suffice.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::desk::NoticeDesk;
use super::door::{Door, Listener};
use super::{ControlConfig, Readiness, Registry, ReloadFn};
use crate::metrics::PromText;

/// State shared by the control thread's tasks.
pub(super) struct Control {
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
    pub reload: Arc<Mutex<ReloadFn>>,
    pub desk: RefCell<NoticeDesk>,
    /// What `/supply` shows; `None`: no fetcher runs.
    pub supply: Option<Arc<crate::supply::SupplyStore>>,
    pub config: ControlConfig,
    pub reloads: [Cell<u64>; 2],
    /// Admin calls refused for a missing or wrong token.
    pub unauthorized: Cell<u64>,
    pub admin: Door,
    pub notices: Door,
    pub draining: Cell<bool>,
    pub drain: Notify,
    pub closed: Notify,
}

impl Control {
    pub(super) fn door(&self, listener: Listener) -> &Door {
        match listener {
            Listener::Admin => &self.admin,
            Listener::Notice => &self.notices,
        }
    }

    /// Connections open on both listeners.
    pub(super) fn open(&self) -> u32 {
        self.admin.open() + self.notices.open()
    }

    pub(super) fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.config.body_read_timeout_ms)
    }

    pub(super) fn count_reload(&self, ok: bool) {
        let c = &self.reloads[usize::from(!ok)];
        c.set(c.get() + 1);
    }

    /// The control port's own counters for the scrape.
    pub(super) fn collect(&self, out: &mut PromText) {
        out.gauge(
            "bidder_ready",
            "1 once every worker listens and the configuration is loaded.",
            &[],
            i64::from(self.readiness.is_ready()),
        );
        for (i, result) in ["ok", "error"].into_iter().enumerate() {
            out.counter(
                "bidder_reloads_total",
                "Reloads through the control port, by result.",
                &[("result", result)],
                self.reloads[i].get(),
            );
        }
        out.counter(
            "bidder_admin_unauthorized_total",
            "Admin calls (reload, resume) refused for a missing or wrong token.",
            &[],
            self.unauthorized.get(),
        );
        self.admin.collect(out);
        self.notices.collect(out);
    }
}

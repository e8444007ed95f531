//! What every request handler can reach: the modules (as traits), config, limits, metrics.

use std::sync::Arc;

use accounts_api::Accounts;
use actix_web::cookie::Key;
use kernel::db::DbPool;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::web::limits::SignInLimits;

/// The modules, each behind its contract. The web UI and the API see nothing else of them.
#[derive(Clone)]
pub struct Modules {
    pub accounts: Arc<dyn Accounts>,
    pub deals: Arc<dyn deals_api::Deals>,
    pub contacts: Arc<dyn contacts_api::Contacts>,
    pub activities: Arc<dyn activities_api::Activities>,
    pub automation: Arc<dyn automation_api::Automation>,
    pub messaging: Arc<dyn messaging_api::Messaging>,
    pub analytics: Arc<dyn analytics_api::Analytics>,
    /// Event subscribers built with a module (they share its internals), run by the backbone.
    pub module_subscribers: Vec<Arc<dyn kernel::inbox::Subscriber>>,
    /// The modules this process reaches as services (`[modules.<m>] mode = "remote"`): their
    /// subscribers and workers run in their own processes.
    pub remote: Vec<&'static str>,
}

pub struct AppState {
    pub config: Config,
    pub modules: Modules,
    /// The process's database pool (readiness checks, the event backbone).
    pub pool: DbPool,
    pub cookie_key: Key,
    pub sign_in_limits: SignInLimits,
    /// The public API's requests per second per integration.
    pub api_limits: crate::api::limits::ApiLimits,
    pub metrics: Metrics,
    /// The job store (apalis), for the jobs page and metrics; absent where not set up.
    pub jobs: Option<crate::jobs::JobStore>,
}

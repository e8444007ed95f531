//! Remote mode: the analytics module's trait over HTTP, for when the module runs as its own
//! service (`[modules.analytics] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use chrono::{DateTime, NaiveDate, Utc};
use kernel::remote::RemoteClient;
use kernel::{AppResult, Caller};
use serde::{Deserialize, Serialize};

use super::*;

/// The analytics module's trait, answered by its service.
pub struct AnalyticsClient {
    remote: RemoteClient,
}

impl AnalyticsClient {
    pub fn new(remote: RemoteClient) -> AnalyticsClient {
        AnalyticsClient { remote }
    }
}

kernel::remote_trait! {
    impl Analytics for AnalyticsClient, dispatch dispatch_analytics, methods ANALYTICS_METHODS {
            read fn funnel(caller: Caller, filter: &ReportFilter as ReportFilter) -> Funnel;
            read fn win_loss(caller: Caller, filter: &ReportFilter as ReportFilter) -> WinLoss;
            read fn managers(caller: Caller, filter: &ReportFilter as ReportFilter) -> Vec<ManagerRow>;
            read fn time_in_stage(caller: Caller, filter: &ReportFilter as ReportFilter) -> TimeInStage;
            read fn trend(caller: Caller, filter: &ReportFilter as ReportFilter, bucket: Bucket) -> Trend;
            write fn summary(caller: Caller, filter: &ReportFilter as ReportFilter, bucket: Bucket) -> Summary;
            read fn deals_of_source(caller: Caller, source: &str as String) -> Vec<i64>;
            write fn rebuild(caller: Caller) -> Rebuilt;
            write fn seed_read_model(caller: Caller, pipeline: i64, incoming: i64, open: Vec<i64>, count: i64, users: Vec<i64>) -> Rebuilt;
    }
}

//! The analytics module's contract: sales reports over a read model that the module builds from
//! other modules' events (deals, tasks, messages), never from their tables.
//!
//! Every report takes a [`ReportFilter`] and is limited to the deals the caller may see (the
//! deals "view" right: all, the group's or their own); ids refer to other modules' records
//! (pipelines, stages, users, tags, loss reasons) and are resolved by the caller's side.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use kernel::{AppResult, Caller};
use serde::{Deserialize, Serialize};

pub mod remote;

/// What a report covers. The period is `[from, to)`; which date it applies to is each report's:
/// creation (funnel, managers' "created"), closing (win/loss), leaving a stage (time in stage).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFilter {
    /// The pipeline (funnel, time in stage and forecast need one: the main one when absent).
    pub pipeline_id: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Deals of these responsible users (and of `group`'s members); none: everyone visible.
    pub responsible: Vec<i64>,
    pub group_id: Option<i64>,
    /// Deals carrying any of these tags (as the deals list filters).
    pub tags: Vec<i64>,
    /// Incoming leads from this channel (`telegram`, `whatsapp`, `instagram`).
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    #[default]
    Day,
    Week,
    Month,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        [Bucket::Day, Bucket::Week, Bucket::Month]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A stage as the reports name it (from the deals module at report time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    pub id: i64,
    pub name: String,
    /// `incoming`, `open`, `won` or `lost`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStage {
    pub stage: StageRef,
    /// Deals of the cohort that reached this stage or went past it (won deals passed every
    /// open stage).
    pub reached: i64,
    pub budget: i64,
    /// Percent of the previous stage's deals that reached this one.
    pub from_previous: Option<f64>,
    /// Percent of the cohort that reached this one.
    pub from_start: Option<f64>,
    /// Deals whose furthest stage was this one and that were lost or are still here.
    pub dropped: i64,
    /// Deals of the cohort in this stage now.
    pub now_here: i64,
}

/// Deals created in the period, and how far they got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    pub pipeline_id: i64,
    pub pipeline_name: String,
    pub deals: i64,
    pub budget: i64,
    pub won: i64,
    pub lost: i64,
    /// Percent of the cohort won.
    pub conversion: Option<f64>,
    /// The open stages in board order, then "Closed – won".
    pub stages: Vec<FunnelStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossReasonCount {
    pub loss_reason_id: Option<i64>,
    pub name: String,
    pub deals: i64,
    pub budget: i64,
}

/// Deals closed in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinLoss {
    pub won: i64,
    pub won_budget: i64,
    pub lost: i64,
    pub lost_budget: i64,
    /// Percent of closed deals won.
    pub win_rate: Option<f64>,
    /// Most frequent first.
    pub reasons: Vec<LossReasonCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagerRow {
    pub user_id: i64,
    /// Deals created in the period (as responsible now).
    pub created: i64,
    /// Deals closed in the period.
    pub won: i64,
    pub lost: i64,
    pub budget_won: i64,
    pub tasks_completed: i64,
    pub messages_sent: i64,
    /// Mean seconds from a client's first unanswered message to this user's answer.
    pub avg_response_secs: Option<i64>,
    pub responses: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: StageRef,
    /// Stays in the stage that ended in the period.
    pub stays: i64,
    pub median_secs: Option<i64>,
    pub p90_secs: Option<i64>,
    /// Open deals in the stage now.
    pub open_now: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowDeal {
    pub deal_id: i64,
    pub stage: StageRef,
    pub since: DateTime<Utc>,
    pub price: i64,
    pub responsible_user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeInStage {
    pub pipeline_id: i64,
    pub stages: Vec<StageTime>,
    /// Open deals that have been in their stage longest (at most 10).
    pub slowest: Vec<SlowDeal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The first day of the bucket.
    pub start: NaiveDate,
    pub created: i64,
    pub created_budget: i64,
    pub won: i64,
    pub won_budget: i64,
    pub lost: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRow {
    pub stage: StageRef,
    pub open_deals: i64,
    pub open_budget: i64,
    /// Of the pipeline's closed deals that were ever in this stage, the percent won.
    pub win_rate: Option<f64>,
    /// `open_budget` × `win_rate`.
    pub weighted: i64,
}

/// Deals created and closed per bucket over the period, and what the open deals should bring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub bucket: Bucket,
    pub points: Vec<TrendPoint>,
    pub pipeline_id: i64,
    pub forecast: Vec<ForecastRow>,
    pub forecast_total: i64,
}

/// One period of the consolidated report ("сводный отчёт").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub start: Option<NaiveDate>,
    pub deals_created: i64,
    pub budget_created: i64,
    pub deals_won: i64,
    pub budget_won: i64,
    pub deals_lost: i64,
    pub contacts_created: i64,
    pub companies_created: i64,
    pub tasks_created: i64,
    pub tasks_completed: i64,
    pub notes_added: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub bucket: Bucket,
    pub rows: Vec<SummaryRow>,
    pub total: SummaryRow,
}

/// What a rebuild wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuilt {
    pub deals: i64,
    pub stays: i64,
}

/// The most deals [`Analytics::deals_of_source`] returns.
pub const MAX_SOURCE_DEALS: i64 = 100_000;

#[async_trait]
pub trait Analytics: Send + Sync {
    async fn funnel(&self, caller: Caller, filter: &ReportFilter) -> AppResult<Funnel>;
    async fn win_loss(&self, caller: Caller, filter: &ReportFilter) -> AppResult<WinLoss>;
    /// One row per responsible user with anything in the period, most budget won first.
    async fn managers(&self, caller: Caller, filter: &ReportFilter) -> AppResult<Vec<ManagerRow>>;
    async fn time_in_stage(&self, caller: Caller, filter: &ReportFilter) -> AppResult<TimeInStage>;
    async fn trend(
        &self,
        caller: Caller,
        filter: &ReportFilter,
        bucket: Bucket,
    ) -> AppResult<Trend>;
    async fn summary(
        &self,
        caller: Caller,
        filter: &ReportFilter,
        bucket: Bucket,
    ) -> AppResult<Summary>;
    /// The deals (ids, ascending, at most [`MAX_SOURCE_DEALS`]) that came in through a channel
    /// (`telegram`, `whatsapp`, `instagram`): the deals list's "source" filter, so that a
    /// report filtered by source drills down to exactly the deals behind its figures.
    async fn deals_of_source(&self, caller: Caller, source: &str) -> AppResult<Vec<i64>>;
    /// Rebuilds the caller's account's deal facts and stage stays from the deals module's
    /// history (`Deals::history`), in one transaction. Activity counts (tasks, messages,
    /// contacts) exist only as events and are kept. Administrators only.
    async fn rebuild(&self, caller: Caller) -> AppResult<Rebuilt>;
    /// Fills the read model (only) with `count` generated deals of a pipeline over the last two
    /// years, with their stays (incoming in half of them, then 1 to all of `open` in order, 65 %
    /// closed: 35 % won, 30 % lost) and one task and one answered message per deal, in set-based
    /// statements: for benchmarks. Administrators only. Returns (deals, stays) written.
    async fn seed_read_model(
        &self,
        caller: Caller,
        pipeline: i64,
        incoming: i64,
        open: Vec<i64>,
        count: i64,
        users: Vec<i64>,
    ) -> AppResult<Rebuilt>;
}

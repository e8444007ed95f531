//! `AnalyticsService`: the reports, each a few grouped queries over the read model, and the
//! rebuild from the deals module's history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use accounts_api::{Accounts, Action, Entity, GroupId};
use analytics_api::*;
use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use deals_api::{Deals, Pipeline, PipelineId, StageKind};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{
    Array, BigInt, Date, Double, Jsonb, Nullable, SmallInt, Text, Timestamptz,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::{AppError, AppResult, Caller};

use crate::projector::outcome_of;

pub struct AnalyticsService {
    pool: DbPool,
    accounts: Arc<dyn Accounts>,
    deals: Arc<dyn Deals>,
    /// Each pipeline's stages' historical win rates (won, closed), by (account, pipeline): a
    /// grouping over every closed deal, recomputed at most every [`RATES_TTL`].
    rates: std::sync::Mutex<RatesCache>,
}

type StageRates = HashMap<i64, (i64, i64)>;
type RatesCache = HashMap<(i64, i64), (Instant, Arc<StageRates>)>;

/// How long the forecast's win rates are reused before they are counted again.
const RATES_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// A report's filter made concrete: the account, the users whose deals count (`None`: all),
/// the period.
struct Scoped {
    account: i64,
    pipeline: Option<i64>,
    users: Option<Vec<i64>>,
    tags: Vec<i64>,
    source: Option<String>,
    /// The part of the period read from the rows themselves ($6, $7).
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The days read from the daily roll-ups ($8, $9; empty for short periods).
    rolled_from: NaiveDate,
    rolled_to: NaiveDate,
    /// The whole period asked for.
    period: (DateTime<Utc>, DateTime<Utc>),
}

impl Scoped {
    fn rolled(&self) -> bool {
        self.rolled_from < self.rolled_to
    }
}

/// Periods longer than this many days (with no tag filter) are read from the daily roll-ups up
/// to the day before yesterday, and from the rows after it.
const ROLLUP_AFTER_DAYS: i64 = 62;

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

/// The duration bucket of a stay (ten per power of e) and the duration it stands for.
const BUCKET: &str = "least(32000, floor(ln(1 + greatest(0, extract(epoch FROM d.left_at - d.entered_at))) * 10))::smallint";

fn bucket_secs(b: i16) -> f64 {
    ((f64::from(b) + 0.5) / 10.0).exp() - 1.0
}

/// The q-quantiles of a histogram of (bucket, count), sorted by bucket.
fn quantiles(h: &[(i16, i64)], qs: &[f64]) -> Vec<f64> {
    let total: i64 = h.iter().map(|(_, n)| n).sum();
    qs.iter()
        .map(|q| {
            let rank = (q * (total - 1).max(0) as f64).floor() as i64;
            let mut seen = 0;
            for (b, n) in h {
                seen += n;
                if seen > rank {
                    return bucket_secs(*b);
                }
            }
            h.last().map_or(0.0, |(b, _)| bucket_secs(*b))
        })
        .collect()
}

/// The deal conditions every report shares, after `base`, on `alias`: `analytics.deals d` (or
/// `analytics.stays d`, which carries the same columns), or a roll-up `r` (`created_days`,
/// `closed_days`; read only without tags, which they do not keep). Over the binds that
/// [`query`] puts first ($1 account … $5 source; $6/$7 the rows' period, $8/$9 the roll-ups'
/// days). Only the conditions in use are written, so that the planner can answer from an
/// index alone.
fn deal_conditions(base: &str, alias: &str, s: &Scoped, tags: bool) -> String {
    let mut w = String::from(base);
    if s.pipeline.is_some() {
        w.push_str(&format!(" AND {alias}.pipeline_id = $2"));
    }
    if s.users.is_some() {
        w.push_str(&format!(" AND {alias}.responsible_user_id = ANY($3)"));
    }
    if tags && !s.tags.is_empty() {
        // Any of the tags, as the deals list filters (its drill-down shows the same deals).
        w.push_str(&format!(" AND {alias}.tag_ids && $4"));
    }
    if s.source.is_some() {
        w.push_str(&format!(" AND {alias}.source = $5"));
    }
    w
}

/// The conditions on activity rows (`analytics.activity a`, or `activity_days r`): by user only.
fn activity_conditions(base: &str, alias: &str, s: &Scoped) -> String {
    match s.users {
        Some(_) => format!("{base} AND {alias}.user_id = ANY($3)"),
        None => base.to_string(),
    }
}

fn query<'a>(sql: &str, s: &'a Scoped) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    diesel::sql_query(
        sql.replace(
            "{W}",
            &deal_conditions("d.account_id = $1 AND NOT d.deleted", "d", s, true),
        )
        .replace(
            "{A}",
            &activity_conditions("a.account_id = $1 AND a.at >= $6 AND a.at < $7", "a", s),
        )
        .replace(
            "{RA}",
            &activity_conditions("r.account_id = $1 AND r.day >= $8 AND r.day < $9", "r", s),
        )
        .replace(
            "{R}",
            &deal_conditions(
                "r.account_id = $1 AND r.day >= $8 AND r.day < $9",
                "r",
                s,
                false,
            ),
        ),
    )
    .into_boxed()
    .bind::<BigInt, _>(s.account)
    .bind::<Nullable<BigInt>, _>(s.pipeline)
    .bind::<Nullable<Array<BigInt>>, _>(s.users.clone())
    .bind::<Array<BigInt>, _>(s.tags.clone())
    .bind::<Nullable<Text>, _>(s.source.clone())
    .bind::<Timestamptz, _>(s.from)
    .bind::<Timestamptz, _>(s.to)
    .bind::<Date, _>(s.rolled_from)
    .bind::<Date, _>(s.rolled_to)
}

fn pct(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64) * 100.0 / (whole as f64))
}

fn stage_ref(s: &deals_api::Stage) -> StageRef {
    StageRef {
        id: s.id.0,
        name: s.name.clone(),
        kind: s.kind.as_str().to_string(),
    }
}

/// The start of the month `at` is in (UTC).
pub fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// The first day of the bucket `day` falls in (weeks start on Monday).
fn bucket_of(day: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Day => day,
        Bucket::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Bucket::Month => day.with_day(1).unwrap_or(day),
    }
}

fn next_bucket(day: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Day => day + Duration::days(1),
        Bucket::Week => day + Duration::days(7),
        Bucket::Month => {
            let (y, m) = if day.month() == 12 {
                (day.year() + 1, 1)
            } else {
                (day.year(), day.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(day + Duration::days(31))
        }
    }
}

/// Every bucket start from `from` up to (not including) `to`; at most 400 of them.
fn buckets(from: DateTime<Utc>, to: DateTime<Utc>, bucket: Bucket) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut d = bucket_of(from.date_naive(), bucket);
    let end = to.date_naive();
    while (d < end || out.is_empty()) && out.len() < 400 {
        out.push(d);
        d = next_bucket(d, bucket);
    }
    out
}

#[derive(diesel::QueryableByName)]
struct VisitedGroup {
    #[diesel(sql_type = Array<BigInt>)]
    visited: Vec<i64>,
    #[diesel(sql_type = SmallInt)]
    outcome: i16,
    /// The current stage (funnel only; 0 elsewhere).
    #[diesel(sql_type = BigInt)]
    stage_id: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    budget: i64,
}

#[derive(diesel::QueryableByName)]
struct Closed {
    #[diesel(sql_type = SmallInt)]
    outcome: i16,
    #[diesel(sql_type = Nullable<BigInt>)]
    reason: Option<i64>,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    budget: i64,
}

#[derive(diesel::QueryableByName)]
struct ManagerFigures {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = BigInt)]
    created: i64,
    #[diesel(sql_type = BigInt)]
    won: i64,
    #[diesel(sql_type = BigInt)]
    lost: i64,
    #[diesel(sql_type = BigInt)]
    budget_won: i64,
    #[diesel(sql_type = BigInt)]
    tasks: i64,
    #[diesel(sql_type = BigInt)]
    messages: i64,
    #[diesel(sql_type = Nullable<Double>)]
    avg_response: Option<f64>,
    #[diesel(sql_type = BigInt)]
    responses: i64,
}

#[derive(diesel::QueryableByName)]
struct StayFigures {
    #[diesel(sql_type = BigInt)]
    stage_id: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
    /// The median and the 90th percentile, in seconds.
    #[diesel(sql_type = Array<Double>)]
    q: Vec<f64>,
}

#[derive(diesel::QueryableByName)]
struct StayBucket {
    #[diesel(sql_type = BigInt)]
    stage_id: i64,
    #[diesel(sql_type = SmallInt)]
    bucket: i16,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct StageCount {
    #[diesel(sql_type = BigInt)]
    stage_id: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    budget: i64,
}

#[derive(diesel::QueryableByName)]
struct OpenDeal {
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
    #[diesel(sql_type = BigInt)]
    stage_id: i64,
    #[diesel(sql_type = Timestamptz)]
    stage_since: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = BigInt)]
    responsible_user_id: i64,
}

#[derive(diesel::QueryableByName)]
struct DayFigures {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    budget: i64,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How far a deal with these stages visited got in `order` (index), won deals to the end.
fn furthest(order: &[i64], visited: &[i64], outcome: i16) -> Option<usize> {
    if outcome == 1 {
        return order.len().checked_sub(1);
    }
    visited
        .iter()
        .filter_map(|s| order.iter().position(|o| o == s))
        .max()
}

/// Per stage: of the closed deals that were ever in it, (won, closed).
fn stage_rates(groups: &[VisitedGroup]) -> StageRates {
    let mut rates = StageRates::new();
    for g in groups.iter().filter(|g| g.outcome > 0) {
        for s in &g.visited {
            let e = rates.entry(*s).or_default();
            e.1 += g.n;
            if g.outcome == 1 {
                e.0 += g.n;
            }
        }
    }
    rates
}

impl AnalyticsService {
    pub fn new(pool: DbPool, accounts: Arc<dyn Accounts>, deals: Arc<dyn Deals>) -> Self {
        AnalyticsService {
            pool,
            accounts,
            deals,
            rates: Default::default(),
        }
    }

    async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    /// The filter made concrete for the caller (rights, group, default period), and the
    /// pipeline when the report needs one (the main one when none is named).
    async fn scoped(
        &self,
        caller: Caller,
        f: &ReportFilter,
        need_pipeline: bool,
    ) -> AppResult<(Scoped, Option<Pipeline>)> {
        let scope =
            accounts_api::access::scope(&*self.accounts, caller, Entity::Deals, Action::View)
                .await?;
        let wanted = if f.responsible.is_empty() && f.group_id.is_none() {
            None
        } else {
            let mut users = f.responsible.clone();
            if let Some(g) = f.group_id {
                let members = self
                    .accounts
                    .group_members(caller.account_id, GroupId(g))
                    .await?;
                users.extend(members.iter().map(|u| u.0));
            }
            Some(users)
        };
        let users = match (scope.ids(), wanted) {
            (None, w) => w,
            (Some(s), None) => Some(s),
            (Some(s), Some(w)) => Some(w.into_iter().filter(|u| s.contains(u)).collect()),
        };
        let pipeline = match (f.pipeline_id, need_pipeline) {
            (Some(id), _) => Some(self.deals.pipeline(caller, PipelineId(id)).await?),
            (None, true) => {
                let all = self.deals.pipelines(caller).await?;
                let main = Pipeline::main_of(&all)
                    .cloned()
                    .ok_or_else(|| AppError::not_found("pipeline"))?;
                Some(main)
            }
            (None, false) => None,
        };
        let now = Utc::now();
        let from = f.from.unwrap_or_else(|| month_start(now));
        let to = f.to.unwrap_or_else(|| next_month(now));
        if to <= from {
            return Err(AppError::validation(
                "to",
                "before_from",
                "the period ends before it starts",
            ));
        }
        let source = f.source.clone().filter(|s| !s.is_empty());
        // Long periods: whole days up to the day before yesterday from the roll-ups.
        let cut = now.date_naive() - Duration::days(1);
        let long = f.tags.is_empty()
            && to - from > Duration::days(ROLLUP_AFTER_DAYS)
            && from == midnight(from.date_naive())
            && from < midnight(cut)
            && (to == midnight(to.date_naive()) || to > midnight(cut));
        let (rolled_from, rolled_to, facts_from) = if long {
            let end = if to > midnight(cut) {
                cut
            } else {
                to.date_naive()
            };
            let mut conn = self.conn().await?;
            self.roll_up(&mut conn, caller, cut).await?;
            (from.date_naive(), end, midnight(end).max(from))
        } else {
            (from.date_naive(), from.date_naive(), from)
        };
        Ok((
            Scoped {
                account: caller.account_id.0,
                pipeline: pipeline.as_ref().map(|p| p.id.0),
                users,
                tags: f.tags.clone(),
                source,
                from: facts_from,
                to,
                rolled_from,
                rolled_to,
                period: (from, to),
            },
            pipeline,
        ))
    }

    /// Counts the caller's account's roll-ups up to `cut` (exclusive), per pipeline (the rows'
    /// indexes start with it).
    async fn roll_up(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        cut: NaiveDate,
    ) -> AppResult<()> {
        let pipelines: Vec<i64> = self
            .deals
            .pipelines(caller)
            .await?
            .iter()
            .map(|p| p.id.0)
            .collect();
        roll_up(conn, caller.account_id.0, &pipelines, cut).await
    }

    /// The open deals' count and budget per stage (the filter, not the period).
    async fn open_by_stage(
        conn: &mut AsyncPgConnection,
        s: &Scoped,
    ) -> AppResult<HashMap<i64, (i64, i64)>> {
        let rows: Vec<StageCount> = query(
            "SELECT d.stage_id, count(*)::bigint AS n, coalesce(sum(d.price), 0)::bigint AS budget
             FROM analytics.deals d WHERE {W} AND d.outcome = 0 GROUP BY 1",
            s,
        )
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.stage_id, (r.n, r.budget)))
            .collect())
    }

    /// The funnel's columns: the incoming and open stages in board order, then "won".
    fn funnel_stages(p: &Pipeline) -> Vec<&deals_api::Stage> {
        let mut stages: Vec<&deals_api::Stage> = p
            .stages
            .iter()
            .filter(|s| matches!(s.kind, StageKind::Incoming | StageKind::Open))
            .collect();
        stages.sort_by_key(|s| (s.kind != StageKind::Incoming, s.sort));
        stages.extend(p.stages.iter().filter(|s| s.kind == StageKind::Won));
        stages
    }

    /// Deals grouped by the stages they visited and their outcome (and, with `by_stage`, their
    /// current stage).
    async fn visited_groups(
        conn: &mut AsyncPgConnection,
        s: &Scoped,
        condition: &str,
        by_stage: bool,
    ) -> AppResult<Vec<VisitedGroup>> {
        let stage = if by_stage { "d.stage_id" } else { "0::bigint" };
        // The cohort's days already rolled up (created_days) come from there.
        let rolled = if by_stage && s.rolled() {
            "UNION ALL
             SELECT r.visited, r.outcome, r.stage_id, sum(r.n)::bigint, sum(r.budget)::bigint
             FROM analytics.created_days r WHERE {R} GROUP BY 1, 2, 3"
        } else {
            ""
        };
        Ok(query(
            &format!(
                "SELECT d.visited, d.outcome, {stage} AS stage_id, count(*)::bigint AS n,
                        coalesce(sum(d.price), 0)::bigint AS budget
                 FROM analytics.deals d WHERE {{W}} AND {condition} GROUP BY 1, 2, 3
                 {rolled}"
            ),
            s,
        )
        .load(conn)
        .await?)
    }
}

#[async_trait]
impl Analytics for AnalyticsService {
    async fn funnel(&self, caller: Caller, filter: &ReportFilter) -> AppResult<Funnel> {
        let (s, pipeline) = self.scoped(caller, filter, true).await?;
        let p = pipeline.ok_or_else(|| AppError::not_found("pipeline"))?;
        let mut conn = self.conn().await?;
        let groups = Self::visited_groups(
            &mut conn,
            &s,
            "d.created_at >= $6 AND d.created_at < $7",
            true,
        )
        .await?;
        let stages = Self::funnel_stages(&p);
        let order: Vec<i64> = stages.iter().map(|s| s.id.0).collect();
        let mut at = vec![(0i64, 0i64, 0i64); order.len()]; // (deals, budget, dropped) ending here
        let (mut deals, mut cohort_budget, mut won, mut lost) = (0, 0, 0, 0);
        let mut now_here: HashMap<i64, i64> = HashMap::new();
        for g in &groups {
            deals += g.n;
            cohort_budget += g.budget;
            *now_here.entry(g.stage_id).or_default() += g.n;
            match g.outcome {
                1 => won += g.n,
                2 => lost += g.n,
                _ => {}
            }
            if let Some(i) = furthest(&order, &g.visited, g.outcome) {
                at[i].0 += g.n;
                at[i].1 += g.budget;
                if g.outcome != 1 {
                    at[i].2 += g.n;
                }
            }
        }
        let mut out = Vec::with_capacity(order.len());
        let (mut reached, mut budget) = (0i64, 0i64);
        let mut cumulative = vec![(0i64, 0i64); order.len()];
        for i in (0..order.len()).rev() {
            reached += at[i].0;
            budget += at[i].1;
            cumulative[i] = (reached, budget);
        }
        for (i, stage) in stages.iter().enumerate() {
            let (reached, budget) = cumulative[i];
            out.push(FunnelStage {
                stage: stage_ref(stage),
                reached,
                budget,
                from_previous: if i == 0 {
                    pct(reached, deals)
                } else {
                    pct(reached, cumulative[i - 1].0)
                },
                from_start: pct(reached, deals),
                dropped: at[i].2,
                now_here: now_here.get(&stage.id.0).copied().unwrap_or(0),
            });
        }
        Ok(Funnel {
            pipeline_id: p.id.0,
            pipeline_name: p.name.clone(),
            deals,
            budget: cohort_budget,
            won,
            lost,
            conversion: pct(won, deals),
            stages: out,
        })
    }

    async fn win_loss(&self, caller: Caller, filter: &ReportFilter) -> AppResult<WinLoss> {
        let (s, _) = self.scoped(caller, filter, false).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<Closed> = query(
            "SELECT d.outcome, d.loss_reason_id AS reason, count(*)::bigint AS n,
                    coalesce(sum(d.price), 0)::bigint AS budget
             FROM analytics.deals d
             WHERE {W} AND d.outcome > 0 AND d.closed_at >= $6 AND d.closed_at < $7
             GROUP BY 1, 2
             UNION ALL
             SELECT r.outcome, r.loss_reason_id, sum(r.n)::bigint, sum(r.budget)::bigint
             FROM analytics.closed_days r WHERE {R} GROUP BY 1, 2",
            &s,
        )
        .load(&mut conn)
        .await?;
        drop(conn);
        let names: HashMap<i64, String> = self
            .deals
            .loss_reasons(caller)
            .await?
            .into_iter()
            .map(|r| (r.id.0, r.name))
            .collect();
        let mut w = WinLoss {
            won: 0,
            won_budget: 0,
            lost: 0,
            lost_budget: 0,
            win_rate: None,
            reasons: Vec::new(),
        };
        let mut reasons: HashMap<Option<i64>, (i64, i64)> = HashMap::new();
        for r in rows {
            if r.outcome == 1 {
                w.won += r.n;
                w.won_budget += r.budget;
            } else {
                w.lost += r.n;
                w.lost_budget += r.budget;
                let e = reasons.entry(r.reason).or_default();
                e.0 += r.n;
                e.1 += r.budget;
            }
        }
        w.reasons = reasons
            .into_iter()
            .map(|(reason, (deals, budget))| LossReasonCount {
                loss_reason_id: reason,
                name: reason
                    .and_then(|id| names.get(&id).cloned())
                    .unwrap_or_default(),
                deals,
                budget,
            })
            .collect();
        w.win_rate = pct(w.won, w.won + w.lost);
        w.reasons.sort_by(|a, b| {
            b.deals
                .cmp(&a.deals)
                .then(b.budget.cmp(&a.budget))
                .then(a.name.cmp(&b.name))
        });
        Ok(w)
    }

    async fn managers(&self, caller: Caller, filter: &ReportFilter) -> AppResult<Vec<ManagerRow>> {
        let (s, _) = self.scoped(caller, filter, false).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<ManagerFigures> = query(
            "WITH c AS (
                 SELECT u, sum(created)::bigint AS created FROM (
                     SELECT d.responsible_user_id AS u, count(*) AS created
                     FROM analytics.deals d WHERE {W} AND d.created_at >= $6 AND d.created_at < $7
                     GROUP BY 1
                     UNION ALL
                     SELECT r.responsible_user_id, sum(r.n) FROM analytics.created_days r WHERE {R} GROUP BY 1) x
                 GROUP BY 1),
             cl AS (
                 SELECT u, sum(won)::bigint AS won, sum(lost)::bigint AS lost,
                        sum(budget_won)::bigint AS budget_won FROM (
                     SELECT d.responsible_user_id AS u,
                            count(*) FILTER (WHERE d.outcome = 1) AS won,
                            count(*) FILTER (WHERE d.outcome = 2) AS lost,
                            coalesce(sum(d.price) FILTER (WHERE d.outcome = 1), 0) AS budget_won
                     FROM analytics.deals d
                     WHERE {W} AND d.outcome > 0 AND d.closed_at >= $6 AND d.closed_at < $7
                     GROUP BY 1
                     UNION ALL
                     SELECT r.responsible_user_id,
                            coalesce(sum(r.n) FILTER (WHERE r.outcome = 1), 0),
                            coalesce(sum(r.n) FILTER (WHERE r.outcome = 2), 0),
                            coalesce(sum(r.budget) FILTER (WHERE r.outcome = 1), 0)
                     FROM analytics.closed_days r WHERE {R} GROUP BY 1) x
                 GROUP BY 1),
             a AS (
                 SELECT u, sum(tasks)::bigint AS tasks, sum(messages)::bigint AS messages,
                        sum(value_sum)::float8 / nullif(sum(value_n), 0) AS avg_response,
                        sum(value_n)::bigint AS responses FROM (
                     SELECT a.user_id AS u,
                            count(*) FILTER (WHERE a.kind = 'task_completed') AS tasks,
                            count(*) FILTER (WHERE a.kind = 'message_out') AS messages,
                            coalesce(sum(a.value) FILTER (WHERE a.kind = 'message_out'), 0) AS value_sum,
                            count(a.value) FILTER (WHERE a.kind = 'message_out') AS value_n
                     FROM analytics.activity a
                     WHERE {A} AND a.user_id IS NOT NULL AND a.kind IN ('task_completed', 'message_out')
                     GROUP BY 1
                     UNION ALL
                     SELECT r.user_id,
                            coalesce(sum(r.n) FILTER (WHERE r.kind = 'task_completed'), 0),
                            coalesce(sum(r.n) FILTER (WHERE r.kind = 'message_out'), 0),
                            coalesce(sum(r.value_sum) FILTER (WHERE r.kind = 'message_out'), 0),
                            coalesce(sum(r.value_n) FILTER (WHERE r.kind = 'message_out'), 0)
                     FROM analytics.activity_days r
                     WHERE {RA} AND r.user_id IS NOT NULL AND r.kind IN ('task_completed', 'message_out')
                     GROUP BY 1) x
                 GROUP BY 1)
             SELECT coalesce(c.u, cl.u, a.u) AS user_id,
                    coalesce(c.created, 0) AS created, coalesce(cl.won, 0) AS won,
                    coalesce(cl.lost, 0) AS lost, coalesce(cl.budget_won, 0) AS budget_won,
                    coalesce(a.tasks, 0) AS tasks, coalesce(a.messages, 0) AS messages,
                    a.avg_response, coalesce(a.responses, 0) AS responses
             FROM c FULL JOIN cl ON cl.u = c.u FULL JOIN a ON a.u = coalesce(c.u, cl.u)
             ORDER BY budget_won DESC, won DESC, created DESC, user_id",
            &s,
        )
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ManagerRow {
                user_id: r.user_id,
                created: r.created,
                won: r.won,
                lost: r.lost,
                budget_won: r.budget_won,
                tasks_completed: r.tasks,
                messages_sent: r.messages,
                avg_response_secs: r.avg_response.map(|v| v.round() as i64),
                responses: r.responses,
            })
            .collect())
    }

    async fn time_in_stage(&self, caller: Caller, filter: &ReportFilter) -> AppResult<TimeInStage> {
        let (mut s, pipeline) = self.scoped(caller, filter, true).await?;
        let p = pipeline.ok_or_else(|| AppError::not_found("pipeline"))?;
        let mut conn = self.conn().await?;
        // Exact percentiles from the stays; over long periods, approximate ones from the daily
        // histograms (per person when the report is on some people).
        let stays: Vec<StayFigures> = if s.rolled() {
            let h: Vec<StayBucket> = query(
                &format!(
                    "SELECT x.stage_id, x.bucket, sum(x.n)::bigint AS n FROM (
                         SELECT d.stage_id, {BUCKET} AS bucket, count(*) AS n
                         FROM analytics.stays d
                         WHERE {{W}} AND d.left_at IS NOT NULL AND d.left_at >= $6 AND d.left_at < $7
                         GROUP BY 1, 2
                         UNION ALL
                         SELECT r.stage_id, r.bucket, sum(r.n) FROM analytics.{table} r
                         WHERE {{R}}
                         GROUP BY 1, 2) x
                     GROUP BY 1, 2 ORDER BY 1, 2",
                    // Per person when the report is on some people.
                    table = if s.users.is_some() { "stay_user_days" } else { "stay_days" },
                ),
                &s,
            )
            .load(&mut conn)
            .await?;
            let mut by_stage: BTreeMap<i64, Vec<(i16, i64)>> = BTreeMap::new();
            for b in h {
                by_stage
                    .entry(b.stage_id)
                    .or_default()
                    .push((b.bucket, b.n));
            }
            by_stage
                .into_iter()
                .map(|(stage_id, h)| StayFigures {
                    stage_id,
                    n: h.iter().map(|(_, n)| n).sum(),
                    q: quantiles(&h, &[0.5, 0.9]),
                })
                .collect()
        } else {
            let mut exact = s.period.0;
            std::mem::swap(&mut exact, &mut s.from);
            let rows = query(
                "SELECT d.stage_id, count(*)::bigint AS n,
                        percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (
                            ORDER BY extract(epoch FROM d.left_at - d.entered_at)::float8) AS q
                 FROM analytics.stays d
                 WHERE {W} AND d.left_at IS NOT NULL AND d.left_at >= $6 AND d.left_at < $7
                 GROUP BY 1",
                &s,
            )
            .load(&mut conn)
            .await?;
            s.from = exact;
            rows
        };
        let open = Self::open_by_stage(&mut conn, &s).await?;
        let slow: Vec<OpenDeal> = query(
            "SELECT d.deal_id, d.stage_id, d.stage_since, d.price, d.responsible_user_id
             FROM analytics.deals d WHERE {W} AND d.outcome = 0
             ORDER BY d.stage_since, d.deal_id LIMIT 10",
            &s,
        )
        .load(&mut conn)
        .await?;
        let stays: HashMap<i64, StayFigures> = stays.into_iter().map(|r| (r.stage_id, r)).collect();
        let stages = Self::funnel_stages(&p)
            .into_iter()
            .filter(|st| st.kind != StageKind::Won)
            .map(|st| {
                let f = stays.get(&st.id.0);
                StageTime {
                    stage: stage_ref(st),
                    stays: f.map_or(0, |f| f.n),
                    median_secs: f
                        .and_then(|f| <[f64]>::first(&f.q))
                        .map(|v| v.round() as i64),
                    p90_secs: f.and_then(|f| f.q.get(1)).map(|v| v.round() as i64),
                    open_now: open.get(&st.id.0).map_or(0, |(n, _)| *n),
                }
            })
            .collect();
        let slowest = slow
            .into_iter()
            .filter_map(|d| {
                let st = p.stages.iter().find(|st| st.id.0 == d.stage_id)?;
                Some(SlowDeal {
                    deal_id: d.deal_id,
                    stage: stage_ref(st),
                    since: d.stage_since,
                    price: d.price,
                    responsible_user_id: d.responsible_user_id,
                })
            })
            .collect();
        Ok(TimeInStage {
            pipeline_id: p.id.0,
            stages,
            slowest,
        })
    }

    async fn trend(
        &self,
        caller: Caller,
        filter: &ReportFilter,
        bucket: Bucket,
    ) -> AppResult<Trend> {
        let (s, pipeline) = self.scoped(caller, filter, true).await?;
        let p = pipeline.ok_or_else(|| AppError::not_found("pipeline"))?;
        let mut conn = self.conn().await?;
        let days: Vec<DayFigures> = query(
            "SELECT (d.created_at AT TIME ZONE 'UTC')::date AS day, 'created' AS kind,
                    count(*)::bigint AS n, coalesce(sum(d.price), 0)::bigint AS budget
             FROM analytics.deals d WHERE {W} AND d.created_at >= $6 AND d.created_at < $7 GROUP BY 1
             UNION ALL
             SELECT (d.closed_at AT TIME ZONE 'UTC')::date, CASE d.outcome WHEN 1 THEN 'won' ELSE 'lost' END,
                    count(*)::bigint, coalesce(sum(d.price), 0)::bigint
             FROM analytics.deals d
             WHERE {W} AND d.outcome > 0 AND d.closed_at >= $6 AND d.closed_at < $7 GROUP BY 1, 2
             UNION ALL
             SELECT r.day, 'created', sum(r.n)::bigint, sum(r.budget)::bigint
             FROM analytics.created_days r WHERE {R} GROUP BY 1
             UNION ALL
             SELECT r.day, CASE r.outcome WHEN 1 THEN 'won' ELSE 'lost' END, sum(r.n)::bigint,
                    sum(r.budget)::bigint
             FROM analytics.closed_days r WHERE {R} GROUP BY 1, 2",
            &s,
        )
        .load(&mut conn)
        .await?;
        let mut points: BTreeMap<NaiveDate, TrendPoint> = buckets(s.period.0, s.period.1, bucket)
            .into_iter()
            .map(|start| {
                (
                    start,
                    TrendPoint {
                        start,
                        created: 0,
                        created_budget: 0,
                        won: 0,
                        won_budget: 0,
                        lost: 0,
                    },
                )
            })
            .collect();
        for d in days {
            let start = bucket_of(d.day, bucket);
            let Some(pt) = points.get_mut(&start) else {
                continue;
            };
            match d.kind.as_str() {
                "created" => {
                    pt.created += d.n;
                    pt.created_budget += d.budget;
                }
                "won" => {
                    pt.won += d.n;
                    pt.won_budget += d.budget;
                }
                _ => pt.lost += d.n,
            }
        }
        // The forecast: open deals now (the filter, not the period), weighted by each stage's
        // win rate over the pipeline's whole history (every closed deal, whoever's).
        let history = Scoped {
            account: s.account,
            pipeline: s.pipeline,
            users: None,
            tags: Vec::new(),
            source: None,
            from: s.from,
            to: s.to,
            rolled_from: s.rolled_from,
            rolled_to: s.rolled_from,
            period: s.period,
        };
        let key = (s.account, p.id.0);
        let cached = self
            .rates
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            .filter(|(at, _)| at.elapsed() < RATES_TTL)
            .map(|(_, r)| r);
        let rates = match cached {
            Some(r) => r,
            None => {
                let closed =
                    Self::visited_groups(&mut conn, &history, "d.outcome > 0", false).await?;
                let r = Arc::new(stage_rates(&closed));
                if let Ok(mut m) = self.rates.lock() {
                    m.insert(key, (Instant::now(), r.clone()));
                }
                r
            }
        };
        let open = Self::open_by_stage(&mut conn, &s).await?;
        let stages = Self::funnel_stages(&p);
        let forecast: Vec<ForecastRow> = stages
            .iter()
            .filter(|st| st.kind != StageKind::Won)
            .map(|st| {
                let (n, budget) = open.get(&st.id.0).copied().unwrap_or((0, 0));
                let rate = rates.get(&st.id.0).and_then(|(w, c)| pct(*w, *c));
                ForecastRow {
                    stage: stage_ref(st),
                    open_deals: n,
                    open_budget: budget,
                    win_rate: rate,
                    weighted: rate.map_or(0, |r| ((budget as f64) * r / 100.0).round() as i64),
                }
            })
            .collect();
        Ok(Trend {
            bucket,
            points: points.into_values().collect(),
            pipeline_id: p.id.0,
            forecast_total: forecast.iter().map(|f| f.weighted).sum(),
            forecast,
        })
    }

    async fn summary(
        &self,
        caller: Caller,
        filter: &ReportFilter,
        bucket: Bucket,
    ) -> AppResult<Summary> {
        let (s, _) = self.scoped(caller, filter, false).await?;
        let mut conn = self.conn().await?;
        let days: Vec<DayFigures> = query(
            "SELECT (d.created_at AT TIME ZONE 'UTC')::date AS day, 'deal_created' AS kind,
                    count(*)::bigint AS n, coalesce(sum(d.price), 0)::bigint AS budget
             FROM analytics.deals d WHERE {W} AND d.created_at >= $6 AND d.created_at < $7 GROUP BY 1
             UNION ALL
             SELECT (d.closed_at AT TIME ZONE 'UTC')::date, CASE d.outcome WHEN 1 THEN 'deal_won' ELSE 'deal_lost' END,
                    count(*)::bigint, coalesce(sum(d.price), 0)::bigint
             FROM analytics.deals d
             WHERE {W} AND d.outcome > 0 AND d.closed_at >= $6 AND d.closed_at < $7 GROUP BY 1, 2
             UNION ALL
             SELECT (a.at AT TIME ZONE 'UTC')::date, a.kind, count(*)::bigint, 0::bigint
             FROM analytics.activity a WHERE {A} GROUP BY 1, 2
             UNION ALL
             SELECT r.day, 'deal_created', sum(r.n)::bigint, sum(r.budget)::bigint
             FROM analytics.created_days r WHERE {R} GROUP BY 1
             UNION ALL
             SELECT r.day, CASE r.outcome WHEN 1 THEN 'deal_won' ELSE 'deal_lost' END,
                    sum(r.n)::bigint, sum(r.budget)::bigint
             FROM analytics.closed_days r WHERE {R} GROUP BY 1, 2
             UNION ALL
             SELECT r.day, r.kind, sum(r.n)::bigint, 0::bigint
             FROM analytics.activity_days r WHERE {RA} GROUP BY 1, 2",
            &s,
        )
        .load(&mut conn)
        .await?;
        let mut rows: BTreeMap<NaiveDate, SummaryRow> = buckets(s.period.0, s.period.1, bucket)
            .into_iter()
            .map(|start| {
                (
                    start,
                    SummaryRow {
                        start: Some(start),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut total = SummaryRow::default();
        for d in days {
            let Some(row) = rows.get_mut(&bucket_of(d.day, bucket)) else {
                continue;
            };
            for r in [&mut *row, &mut total] {
                match d.kind.as_str() {
                    "deal_created" => {
                        r.deals_created += d.n;
                        r.budget_created += d.budget;
                    }
                    "deal_won" => {
                        r.deals_won += d.n;
                        r.budget_won += d.budget;
                    }
                    "deal_lost" => r.deals_lost += d.n,
                    "contact_created" => r.contacts_created += d.n,
                    "company_created" => r.companies_created += d.n,
                    "task_created" => r.tasks_created += d.n,
                    "task_completed" => r.tasks_completed += d.n,
                    "note_added" => r.notes_added += d.n,
                    "message_in" => r.messages_in += d.n,
                    "message_out" => r.messages_out += d.n,
                    _ => {}
                }
            }
        }
        Ok(Summary {
            bucket,
            rows: rows.into_values().collect(),
            total,
        })
    }

    async fn seed_read_model(
        &self,
        caller: Caller,
        pipeline: i64,
        incoming: i64,
        open: Vec<i64>,
        count: i64,
        users: Vec<i64>,
    ) -> AppResult<Rebuilt> {
        // The same right as reading the history (administrators only).
        self.deals.history(caller, None, 1).await?;
        if open.is_empty() || users.is_empty() || !(1..=10_000_000).contains(&count) {
            return Err(AppError::validation(
                "count",
                "out_of_range",
                "1 to 10,000,000 deals, open stages and users",
            ));
        }
        let account = caller.account_id.0;
        let mut conn = self.conn().await?;
        let done = conn.transaction::<_, AppError, _>(async |tx| {
            forget_roll_ups(tx, account).await?;
            diesel::sql_query(SEED_DEALS)
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(count)
                .bind::<Array<BigInt>, _>(&open)
                .bind::<Array<BigInt>, _>(&users)
                .execute(tx)
                .await?;
            // Stage k of `open` (1-based) is entered after `o + k - 1` steps, o = 1 for incoming
            // leads; a closed deal is closed one step after its last open stage.
            let deals = diesel::sql_query(
                "INSERT INTO analytics.deals (account_id, deal_id, pipeline_id, stage_id, stage_since,
                     responsible_user_id, price, tag_ids, outcome, loss_reason_id, visited, created_at,
                     closed_at)
                 SELECT $1, d.deal_id, $2,
                        CASE WHEN d.r < 0.35 THEN 142 WHEN d.r < 0.65 THEN 143 ELSE ($4::bigint[])[d.depth] END,
                        d.created_at + d.step * (o.o + d.depth - CASE WHEN d.r < 0.65 THEN 0 ELSE 1 END),
                        d.resp, d.price,
                        CASE WHEN d.deal_id % 5 = 0 THEN ARRAY[1::bigint] ELSE '{}' END,
                        CASE WHEN d.r < 0.35 THEN 1 WHEN d.r < 0.65 THEN 2 ELSE 0 END,
                        CASE WHEN d.r >= 0.35 AND d.r < 0.65 THEN 1 + d.deal_id % 5 END,
                        ARRAY(SELECT DISTINCT s FROM unnest(
                            ($4::bigint[])[1:d.depth]
                            || CASE WHEN d.incoming THEN ARRAY[$3::bigint] ELSE '{}' END
                            || CASE WHEN d.r < 0.35 THEN ARRAY[142::bigint]
                                    WHEN d.r < 0.65 THEN ARRAY[143::bigint] ELSE '{}' END) s ORDER BY s),
                        d.created_at,
                        CASE WHEN d.r < 0.65 THEN d.created_at + d.step * (o.o + d.depth) END
                 FROM seed_deals d, LATERAL (SELECT CASE WHEN d.incoming THEN 1 ELSE 0 END AS o) o",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline)
            .bind::<BigInt, _>(incoming)
            .bind::<Array<BigInt>, _>(&open)
            .execute(tx)
            .await?;
            let stays = diesel::sql_query(
                "INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at, left_at,
                     responsible_user_id, tag_ids)
                 SELECT $1, d.deal_id, $2, s.stage, s.entered, s.left_at, d.resp,
                        CASE WHEN d.deal_id % 5 = 0 THEN ARRAY[1::bigint] ELSE '{}' END
                 FROM seed_deals d,
                      LATERAL (SELECT CASE WHEN d.incoming THEN 1 ELSE 0 END AS o) o,
                      LATERAL (
                          SELECT $3::bigint AS stage, d.created_at AS entered, d.created_at + d.step AS left_at
                          WHERE d.incoming
                          UNION ALL
                          SELECT ($4::bigint[])[k], d.created_at + d.step * (o.o + k - 1),
                                 CASE WHEN k < d.depth OR d.r < 0.65 THEN d.created_at + d.step * (o.o + k) END
                          FROM generate_series(1, d.depth) k
                          UNION ALL
                          SELECT CASE WHEN d.r < 0.35 THEN 142 ELSE 143 END,
                                 d.created_at + d.step * (o.o + d.depth), NULL
                          WHERE d.r < 0.65) s",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline)
            .bind::<BigInt, _>(incoming)
            .bind::<Array<BigInt>, _>(&open)
            .execute(tx)
            .await?;
            // A completed task and a client's message answered within 0-4 hours per deal.
            diesel::sql_query(
                "INSERT INTO analytics.activity (event_id, account_id, kind, user_id, deal_id, at, value)
                 SELECT gen_random_uuid(), $1, k.kind, d.resp, d.deal_id, d.created_at + d.step / 2,
                        CASE WHEN k.kind = 'message_out' THEN floor(random() * 14400)::bigint END
                 FROM seed_deals d,
                      (VALUES ('task_completed'), ('message_in'), ('message_out')) k(kind)",
            )
            .bind::<BigInt, _>(account)
            .execute(tx)
            .await?;
            Ok(Rebuilt {
                deals: deals as i64,
                stays: stays as i64,
            })
        })
        .await?;
        // Fresh statistics and visibility map after a bulk load (index-only scans).
        diesel::sql_query("VACUUM ANALYZE analytics.deals, analytics.stays, analytics.activity")
            .execute(&mut conn)
            .await?;
        // The daily roll-ups of the generated past, as the first long report would count them.
        self.roll_up(
            &mut conn,
            caller,
            Utc::now().date_naive() - Duration::days(1),
        )
        .await?;
        diesel::sql_query(
            "VACUUM ANALYZE analytics.created_days, analytics.closed_days, analytics.activity_days, analytics.stay_days",
        )
        .execute(&mut conn)
        .await?;
        Ok(done)
    }

    async fn deals_of_source(&self, caller: Caller, source: &str) -> AppResult<Vec<i64>> {
        accounts_api::access::scope(&*self.accounts, caller, Entity::Deals, Action::View).await?;
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            deal_id: i64,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Id> = kernel::sql::query(
            "SELECT deal_id FROM analytics.deals
              WHERE account_id = $1 AND source = $2 AND NOT deleted
              ORDER BY deal_id LIMIT $3",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Text, _>(source)
        .bind::<BigInt, _>(analytics_api::MAX_SOURCE_DEALS)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.deal_id).collect())
    }

    async fn rebuild(&self, caller: Caller) -> AppResult<Rebuilt> {
        let account = caller.account_id.0;
        // Reading the history checks the caller's right (administrators only).
        let first = self
            .deals
            .history(caller, None, deals_api::MAX_HISTORY_PAGE)
            .await?;
        let mut conn = self.conn().await?;
        let deals = self.deals.clone();
        let rebuilt = conn
            .transaction::<_, AppError, _>(async |tx| {
                diesel::sql_query("DELETE FROM analytics.stays WHERE account_id = $1")
                    .bind::<BigInt, _>(account)
                    .execute(tx)
                    .await?;
                diesel::sql_query("DELETE FROM analytics.deals WHERE account_id = $1")
                    .bind::<BigInt, _>(account)
                    .execute(tx)
                    .await?;
                forget_roll_ups(tx, account).await?;
                let mut done = Rebuilt { deals: 0, stays: 0 };
                let mut page = first;
                while let Some(last) = page.last().map(|d| d.id) {
                    let (d, s) = write_page(tx, account, &page).await?;
                    done.deals += d;
                    done.stays += s;
                    page = deals
                        .history(caller, Some(last), deals_api::MAX_HISTORY_PAGE)
                        .await?;
                }
                Ok(done)
            })
            .await;
        if let Ok(mut m) = self.rates.lock() {
            m.retain(|(a, _), _| *a != account);
        }
        let rebuilt = rebuilt?;
        // Count the daily roll-ups now, not in the first long report someone opens.
        self.roll_up(
            &mut conn,
            caller,
            Utc::now().date_naive() - Duration::days(1),
        )
        .await?;
        Ok(rebuilt)
    }
}

/// The generated deals of `seed_read_model`, kept for the statements that write them.
const SEED_DEALS: &str = "CREATE TEMP TABLE seed_deals ON COMMIT DROP AS
    SELECT base.first + g AS deal_id, base.created_at, base.depth, base.incoming, base.price,
           base.resp, base.r,
           -- Every stay fits between creation and now.
           least(base.step, (now() - base.created_at) / (base.depth + 3)) AS step
    FROM (SELECT coalesce(max(deal_id), 0) AS first FROM analytics.deals WHERE account_id = $1) f,
         generate_series(1, $2) g,
         LATERAL (SELECT f.first, now() - random() * interval '730 days' AS created_at,
                         1 + floor(random() * cardinality($3::bigint[]))::int AS depth,
                         random() < 0.5 AS incoming,
                         interval '1 hour' * (2 + random() * 118) AS step,
                         (100 + floor(random() * 10000))::bigint * 100 AS price,
                         ($4::bigint[])[1 + (g % cardinality($4::bigint[]))] AS resp,
                         random() AS r
                  WHERE g > 0) base";

#[derive(diesel::QueryableByName)]
struct Day {
    #[diesel(sql_type = Nullable<Date>)]
    day: Option<NaiveDate>,
}

/// Counts an account's roll-ups up to `cut` (exclusive): its dirty days, and the days since it
/// was last counted (from its first record, the first time). One process at a time per account.
async fn roll_up(
    conn: &mut AsyncPgConnection,
    account: i64,
    pipelines: &[i64],
    cut: NaiveDate,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |tx| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(-7301000000 - $1)")
            .bind::<BigInt, _>(account)
            .execute(tx)
            .await?;
        let until: Vec<Day> =
            diesel::sql_query("SELECT until AS day FROM analytics.rolled WHERE account_id = $1")
                .bind::<BigInt, _>(account)
                .load(tx)
                .await?;
        let until = match until.into_iter().next().and_then(|d| d.day) {
            Some(d) => d,
            None => {
                let first: Vec<Day> = diesel::sql_query(
                    "SELECT (least((SELECT min(created_at) FROM analytics.deals WHERE account_id = $1),
                                   (SELECT min(at) FROM analytics.activity WHERE account_id = $1))
                             AT TIME ZONE 'UTC')::date AS day",
                )
                .bind::<BigInt, _>(account)
                .load(tx)
                .await?;
                first.into_iter().next().and_then(|d| d.day).unwrap_or(cut)
            }
        };
        let dirty: Vec<Day> = diesel::sql_query(
            "DELETE FROM analytics.dirty WHERE account_id = $1 AND day < $2 RETURNING day",
        )
        .bind::<BigInt, _>(account)
        .bind::<Date, _>(cut)
        .load(tx)
        .await?;
        let mut days: Vec<NaiveDate> = dirty
            .into_iter()
            .filter_map(|d| d.day)
            .filter(|d| *d < until)
            .collect();
        let mut d = until;
        while d < cut {
            days.push(d);
            d += Duration::days(1);
        }
        if !days.is_empty() {
            for table in [
                "created_days",
                "closed_days",
                "activity_days",
                "stay_days",
                "stay_user_days",
            ] {
                diesel::sql_query(format!(
                    "DELETE FROM analytics.{table} WHERE account_id = $1 AND day = ANY($2)"
                ))
                .bind::<BigInt, _>(account)
                .bind::<Array<Date>, _>(&days)
                .execute(tx)
                .await?;
            }
            // Runs of consecutive days, each counted with one range scan per table.
            days.sort_unstable();
            days.dedup();
            let mut spans: Vec<(NaiveDate, NaiveDate)> = Vec::new();
            for d in &days {
                match spans.last_mut() {
                    Some((_, end)) if *end == *d => *end = *d + Duration::days(1),
                    _ => spans.push((*d, *d + Duration::days(1))),
                }
            }
            let day = |col: &str| format!("({col} AT TIME ZONE 'UTC')::date");
            let statements = [
                format!(
                    "INSERT INTO analytics.created_days (account_id, day, pipeline_id, responsible_user_id,
                         source, visited, outcome, stage_id, n, budget)
                     SELECT $1, {}, d.pipeline_id, d.responsible_user_id, d.source, d.visited,
                            d.outcome, d.stage_id, count(*), coalesce(sum(d.price), 0)
                     FROM analytics.deals d
                     WHERE d.account_id = $1 AND d.pipeline_id = ANY($2) AND NOT d.deleted
                       AND d.created_at >= $3 AND d.created_at < $4
                     GROUP BY 2, 3, 4, 5, 6, 7, 8",
                    day("d.created_at")
                ),
                format!(
                    "INSERT INTO analytics.closed_days (account_id, day, pipeline_id, responsible_user_id,
                         source, outcome, loss_reason_id, n, budget)
                     SELECT $1, {}, d.pipeline_id, d.responsible_user_id, d.source, d.outcome,
                            d.loss_reason_id, count(*), coalesce(sum(d.price), 0)
                     FROM analytics.deals d
                     WHERE d.account_id = $1 AND d.pipeline_id = ANY($2) AND NOT d.deleted
                       AND d.outcome > 0 AND d.closed_at >= $3 AND d.closed_at < $4
                     GROUP BY 2, 3, 4, 5, 6, 7",
                    day("d.closed_at")
                ),
                format!(
                    "INSERT INTO analytics.activity_days (account_id, day, user_id, kind, n, value_sum, value_n)
                     SELECT $1, {}, a.user_id, a.kind, count(*), coalesce(sum(a.value), 0), count(a.value)
                     FROM analytics.activity a
                     WHERE a.account_id = $1 AND a.at >= $3 AND a.at < $4 AND cardinality($2) >= 0
                     GROUP BY 2, 3, 4",
                    day("a.at")
                ),
                format!(
                    "INSERT INTO analytics.stay_days (account_id, day, pipeline_id, source, stage_id, bucket, n)
                     SELECT $1, {}, d.pipeline_id, d.source, d.stage_id, {BUCKET}, count(*)
                     FROM analytics.stays d
                     WHERE d.account_id = $1 AND d.pipeline_id = ANY($2) AND NOT d.deleted
                       AND d.left_at >= $3 AND d.left_at < $4
                     GROUP BY 2, 3, 4, 5, 6",
                    day("d.left_at")
                ),
                format!(
                    "INSERT INTO analytics.stay_user_days (account_id, day, pipeline_id, responsible_user_id,
                         source, stage_id, bucket, n)
                     SELECT $1, {}, d.pipeline_id, d.responsible_user_id, d.source, d.stage_id, {BUCKET}, count(*)
                     FROM analytics.stays d
                     WHERE d.account_id = $1 AND d.pipeline_id = ANY($2) AND NOT d.deleted
                       AND d.left_at >= $3 AND d.left_at < $4
                     GROUP BY 2, 3, 4, 5, 6, 7",
                    day("d.left_at")
                ),
            ];
            for (from, to) in spans {
                for sql in &statements {
                    diesel::sql_query(sql)
                        .bind::<BigInt, _>(account)
                        .bind::<Array<BigInt>, _>(pipelines)
                        .bind::<Timestamptz, _>(midnight(from))
                        .bind::<Timestamptz, _>(midnight(to))
                        .execute(tx)
                        .await?;
                }
            }
        }
        diesel::sql_query(
            "INSERT INTO analytics.rolled (account_id, until) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET until = greatest(analytics.rolled.until, excluded.until)",
        )
        .bind::<BigInt, _>(account)
        .bind::<Date, _>(cut.max(until))
        .execute(tx)
        .await?;
        Ok(())
    })
    .await
}

/// Forgets an account's roll-ups (the next long report counts them again).
async fn forget_roll_ups(tx: &mut AsyncPgConnection, account: i64) -> AppResult<()> {
    for table in [
        "created_days",
        "closed_days",
        "activity_days",
        "stay_days",
        "stay_user_days",
        "dirty",
        "rolled",
    ] {
        diesel::sql_query(format!(
            "DELETE FROM analytics.{table} WHERE account_id = $1"
        ))
        .bind::<BigInt, _>(account)
        .execute(tx)
        .await?;
    }
    Ok(())
}

/// Writes a page of deal histories into the read model (two statements).
async fn write_page(
    tx: &mut AsyncPgConnection,
    account: i64,
    page: &[deals_api::DealHistory],
) -> AppResult<(i64, i64)> {
    let mut deal_rows = Vec::with_capacity(page.len());
    let mut stay_rows = Vec::new();
    for d in page {
        let mut visited: Vec<i64> = d.visits.iter().map(|v| v.stage_id.0).collect();
        visited.push(d.stage_id.0);
        visited.sort_unstable();
        visited.dedup();
        let since = d
            .visits
            .iter()
            .rev()
            .find(|v| v.left_at.is_none())
            .or(d.visits.last())
            .map_or(d.created_at, |v| v.entered_at);
        deal_rows.push(serde_json::json!({
            "deal_id": d.id.0,
            "pipeline_id": d.pipeline_id.0,
            "stage_id": d.stage_id.0,
            "stage_since": since,
            "responsible_user_id": d.responsible_user_id.0,
            "price": d.price,
            "tag_ids": d.tag_ids.iter().map(|t| t.0).collect::<Vec<_>>(),
            "outcome": outcome_of(d.stage_id.0),
            "loss_reason_id": d.loss_reason_id.map(|r| r.0),
            "visited": visited,
            "created_at": d.created_at,
            "closed_at": d.closed_at,
            "deleted": d.deleted,
        }));
        for v in &d.visits {
            stay_rows.push(serde_json::json!({
                "deal_id": d.id.0,
                "pipeline_id": v.pipeline_id.0,
                "stage_id": v.stage_id.0,
                "entered_at": v.entered_at,
                "left_at": v.left_at,
                "responsible_user_id": d.responsible_user_id.0,
                "tag_ids": d.tag_ids.iter().map(|t| t.0).collect::<Vec<_>>(),
                "deleted": d.deleted,
            }));
        }
    }
    let deals: Vec<Count> = diesel::sql_query(
        "WITH ins AS (
             INSERT INTO analytics.deals (account_id, deal_id, pipeline_id, stage_id, stage_since,
                 responsible_user_id, price, tag_ids, source, outcome, loss_reason_id, visited,
                 created_at, closed_at, deleted)
             SELECT $1, x.deal_id, x.pipeline_id, x.stage_id, x.stage_since, x.responsible_user_id,
                    x.price, x.tag_ids, s.channel, x.outcome, x.loss_reason_id, x.visited,
                    x.created_at, x.closed_at, x.deleted
             FROM jsonb_to_recordset($2) AS x(deal_id bigint, pipeline_id bigint, stage_id bigint,
                 stage_since timestamptz, responsible_user_id bigint, price bigint, tag_ids bigint[],
                 outcome smallint, loss_reason_id bigint, visited bigint[], created_at timestamptz,
                 closed_at timestamptz, deleted boolean)
             LEFT JOIN analytics.sources s ON s.account_id = $1 AND s.deal_id = x.deal_id
             ON CONFLICT DO NOTHING RETURNING 1)
         SELECT count(*)::bigint AS n FROM ins",
    )
    .bind::<BigInt, _>(account)
    .bind::<Jsonb, _>(serde_json::Value::Array(deal_rows))
    .load(tx)
    .await?;
    let stays: Vec<Count> = diesel::sql_query(
        "WITH ins AS (
             INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at, left_at,
                 responsible_user_id, tag_ids, source, deleted)
             SELECT $1, x.deal_id, x.pipeline_id, x.stage_id, x.entered_at, x.left_at,
                    x.responsible_user_id, x.tag_ids, s.channel, x.deleted
             FROM jsonb_to_recordset($2) AS x(deal_id bigint, pipeline_id bigint, stage_id bigint,
                 entered_at timestamptz, left_at timestamptz, responsible_user_id bigint,
                 tag_ids bigint[], deleted boolean)
             LEFT JOIN analytics.sources s ON s.account_id = $1 AND s.deal_id = x.deal_id
             ON CONFLICT DO NOTHING RETURNING 1)
         SELECT count(*)::bigint AS n FROM ins",
    )
    .bind::<BigInt, _>(account)
    .bind::<Jsonb, _>(serde_json::Value::Array(stay_rows))
    .load(tx)
    .await?;
    Ok((
        deals.into_iter().next().map_or(0, |c| c.n),
        stays.into_iter().next().map_or(0, |c| c.n),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_period() {
        let from = Utc.with_ymd_and_hms(2026, 1, 28, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let months = buckets(from, to, Bucket::Month);
        assert_eq!(
            months,
            vec![
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            ]
        );
        // 2026-01-28 is a Wednesday: its week starts on Monday the 26th.
        assert_eq!(
            buckets(from, to, Bucket::Week)[0],
            NaiveDate::from_ymd_opt(2026, 1, 26).unwrap()
        );
        assert_eq!(buckets(from, to, Bucket::Day).len(), 33);
    }

    #[test]
    fn the_furthest_stage_counts_won_deals_to_the_end() {
        let order = [10, 11, 12, 142];
        assert_eq!(furthest(&order, &[10, 12], 0), Some(2));
        assert_eq!(furthest(&order, &[10], 1), Some(3));
        assert_eq!(furthest(&order, &[10, 11, 143], 2), Some(1));
        assert_eq!(furthest(&order, &[99], 0), None);
    }
}

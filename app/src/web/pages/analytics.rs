//! Analytics pages: the dashboard (this month's figures) and the reports, each with a filter bar,
//! an SVG chart, the figures in a table (drill-down links to the deals list) and a CSV export.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use analytics_api::{Bucket, ReportFilter};
use askama::Template;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use kernel::{AppError, Caller, FieldError};

use super::deals::{Names, UserOption};
use super::ok;
use crate::state::AppState;
use crate::web::charts::{self, BarItem, Series};
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

/// The reports, by their path segment.
pub const REPORTS: &[(&str, &str)] = &[
    ("funnel", "analytics.funnel"),
    ("win-loss", "analytics.win_loss"),
    ("managers", "analytics.managers"),
    ("stages", "analytics.stages"),
    ("trend", "analytics.trend"),
    ("summary", "analytics.summary"),
];

/// The filter bar: what it offers and what is chosen.
pub struct Bar {
    pub pipelines: Vec<(i64, String)>,
    pub users: Vec<UserOption>,
    pub groups: Vec<(i64, String)>,
    pub tags: Vec<(i64, String)>,
    pub pipeline: i64,
    pub from: String,
    pub to: String,
    pub responsible: i64,
    pub group: i64,
    pub tag: i64,
    pub source: String,
    pub bucket: &'static str,
    /// The chosen filter as a query string (for the report tabs and the CSV link).
    pub query: String,
}

pub struct Cell {
    pub text: String,
    /// The plain value for CSV (unformatted numbers).
    pub raw: String,
    pub href: Option<String>,
    pub num: bool,
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        let s = s.into();
        Cell {
            raw: s.clone(),
            text: s,
            href: None,
            num: false,
        }
    }

    fn num(n: i64, shown: String) -> Cell {
        Cell {
            text: shown,
            raw: n.to_string(),
            href: None,
            num: true,
        }
    }

    fn pct(p: Option<f64>) -> Cell {
        Cell {
            text: p.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "—".into()),
            raw: p.map(|p| format!("{p:.2}")).unwrap_or_default(),
            href: None,
            num: true,
        }
    }

    fn secs(s: Option<i64>, ctx: &Ctx) -> Cell {
        Cell {
            text: s.map(|s| duration(ctx, s)).unwrap_or_else(|| "—".into()),
            raw: s.map(|s| s.to_string()).unwrap_or_default(),
            href: None,
            num: true,
        }
    }

    fn link(mut self, href: String) -> Cell {
        self.href = Some(href);
        self
    }
}

pub struct Table {
    pub caption: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// "3 d 4 h", "5 h 10 min", "12 min", "40 s" (localised units).
fn duration(ctx: &Ctx, secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let u = |k: &str| ctx.t(k).to_string();
    if d > 0 {
        format!(
            "{d} {} {h} {}",
            u("analytics.unit_d"),
            u("analytics.unit_h")
        )
    } else if h > 0 {
        format!(
            "{h} {} {m} {}",
            u("analytics.unit_h"),
            u("analytics.unit_min")
        )
    } else if m > 0 {
        format!("{m} {}", u("analytics.unit_min"))
    } else {
        format!("{secs} {}", u("analytics.unit_s"))
    }
}

fn bad(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        code: "invalid".into(),
        message: message.into(),
    }
}

fn day(v: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?))
}

/// Reads the report filter from the query; a bad value is a validation error naming it.
pub fn parse(pairs: &[(String, String)]) -> Result<(ReportFilter, Bucket), AppError> {
    let mut f = ReportFilter::default();
    let mut bucket = Bucket::Day;
    let mut errors = Vec::new();
    let id = |k: &str, v: &str, errors: &mut Vec<FieldError>| match v.parse::<i64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            errors.push(bad(k, "an id"));
            None
        }
    };
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "pipeline" => f.pipeline_id = id(k, v, &mut errors),
            "responsible" => f.responsible.extend(id(k, v, &mut errors)),
            "group" => f.group_id = id(k, v, &mut errors),
            "tag" => f.tags.extend(id(k, v, &mut errors)),
            "from" => match day(v) {
                Some(d) => f.from = Some(d),
                None => errors.push(bad(k, "a date, YYYY-MM-DD")),
            },
            // "to" is inclusive on screen.
            "to" => match day(v) {
                Some(d) => f.to = Some(d + Duration::days(1)),
                None => errors.push(bad(k, "a date, YYYY-MM-DD")),
            },
            "source" => match v {
                "telegram" | "whatsapp" | "instagram" => f.source = Some(v.to_string()),
                _ => errors.push(bad(k, "telegram, whatsapp or instagram")),
            },
            "bucket" => match Bucket::parse(v) {
                Some(b) => bucket = b,
                None => errors.push(bad(k, "day, week or month")),
            },
            _ => {}
        }
    }
    if let (Some(from), Some(to)) = (f.from, f.to)
        && to <= from
    {
        errors.push(bad("to", "the period ends before it starts"));
    }
    if errors.is_empty() {
        Ok((f, bucket))
    } else {
        Err(AppError::from_fields(errors))
    }
}

/// The period the reports use when none is chosen: this month.
fn this_month() -> (DateTime<Utc>, DateTime<Utc>) {
    let first = |at: DateTime<Utc>| {
        use chrono::Datelike;
        Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(at)
    };
    let start = first(Utc::now());
    (start, first(start + Duration::days(32)))
}

struct Page<'a> {
    state: &'a AppState,
    ctx: &'a Ctx,
    caller: Caller,
    filter: ReportFilter,
    bucket: Bucket,
    names: Names,
    bar: Bar,
    /// The chosen group's members (the deals list filters by people, not groups).
    members: Vec<i64>,
}

impl Page<'_> {
    /// A link to the deals list with this report's filter (pipeline, people, tags) and more.
    fn deals_link(&self, extra: &[(&str, String)]) -> String {
        let mut pairs: Vec<(&str, String)> = vec![("pipeline", self.bar.pipeline.to_string())];
        for u in self.filter.responsible.iter().chain(&self.members) {
            pairs.push(("responsible", u.to_string()));
        }
        for t in &self.filter.tags {
            pairs.push(("tag", t.to_string()));
        }
        if let Some(s) = self.filter.source.as_deref().filter(|s| !s.is_empty()) {
            pairs.push(("source", s.to_string()));
        }
        pairs.extend(extra.iter().cloned());
        format!(
            "/deals/list?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }

    /// The period as the deals list's creation dates (inclusive days).
    fn created_in_period(&self) -> Vec<(&'static str, String)> {
        vec![
            ("created_from", self.bar.from.clone()),
            ("created_to", self.bar.to.clone()),
        ]
    }

    /// Deals of a closed stage (won or lost) closed in the period.
    fn closed_in_period(&self, stage: deals_api::StageId) -> Vec<(&'static str, String)> {
        vec![
            ("stage", stage.0.to_string()),
            ("closed_from", self.bar.from.clone()),
            ("closed_to", self.bar.to.clone()),
        ]
    }

    fn money(&self, n: i64) -> String {
        self.names.money(n)
    }
}

async fn page<'a>(
    state: &'a AppState,
    ctx: &'a Ctx,
    pairs: &[(String, String)],
) -> Result<Page<'a>, AppError> {
    let caller = ctx.caller()?;
    let (mut filter, bucket) = parse(pairs)?;
    let (start, next) = this_month();
    let from = *filter.from.get_or_insert(start);
    let to = *filter.to.get_or_insert(next);
    let m = &state.modules;
    let pipelines = m.deals.pipelines(caller).await?;
    let pipeline = match filter.pipeline_id {
        Some(id) => id,
        None => deals_api::Pipeline::main_of(&pipelines).map_or(0, |p| p.id.0),
    };
    let names = Names::load(state, ctx, caller).await?;
    let groups = m.accounts.list_groups(caller).await?;
    let tags = m.deals.tags(caller).await?;
    let first = |k: &str| {
        pairs
            .iter()
            .find(|(key, v)| key == k && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    };
    let to_shown = (to - Duration::days(1)).format("%Y-%m-%d").to_string();
    let from_shown = from.format("%Y-%m-%d").to_string();
    let mut query: Vec<(&str, String)> = vec![
        ("pipeline", pipeline.to_string()),
        ("from", from_shown.clone()),
        ("to", to_shown.clone()),
    ];
    for k in ["responsible", "group", "tag", "source", "bucket"] {
        if let Some(v) = first(k) {
            query.push((k, v));
        }
    }
    let bar = Bar {
        pipelines: pipelines.iter().map(|p| (p.id.0, p.name.clone())).collect(),
        users: names.user_list.clone(),
        groups: groups.into_iter().map(|g| (g.id.0, g.name)).collect(),
        tags: tags.into_iter().map(|t| (t.id.0, t.name)).collect(),
        pipeline,
        from: from_shown,
        to: to_shown,
        responsible: filter.responsible.first().copied().unwrap_or(0),
        group: filter.group_id.unwrap_or(0),
        tag: filter.tags.first().copied().unwrap_or(0),
        source: filter.source.clone().unwrap_or_default(),
        bucket: bucket.as_str(),
        query: serde_urlencoded::to_string(&query).unwrap_or_default(),
    };
    filter.pipeline_id = (pipeline > 0).then_some(pipeline);
    let members = match filter.group_id {
        Some(g) => m
            .accounts
            .group_members(caller.account_id, accounts_api::GroupId(g))
            .await?
            .into_iter()
            .map(|u| u.0)
            .collect(),
        None => Vec::new(),
    };
    Ok(Page {
        members,
        state,
        ctx,
        caller,
        filter,
        bucket,
        names,
        bar,
    })
}

#[derive(Template)]
#[template(path = "analytics/report.html")]
struct ReportTpl<'a> {
    ctx: &'a Ctx,
    kind: &'a str,
    title: &'a str,
    reports: &'a [(&'a str, &'a str)],
    bar: &'a Bar,
    charts: Vec<String>,
    tables: Vec<Table>,
}

pub async fn report(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let kind = path.into_inner();
    let Some((kind, title)) = REPORTS.iter().find(|(k, _)| *k == kind).copied() else {
        return Err(AppError::not_found("report").into());
    };
    let p = page(&state, &ctx, &q).await?;
    let (charts, tables) = build(&p, kind).await?;
    if q.iter().any(|(k, v)| k == "format" && v == "csv") {
        return csv(kind, &p.bar, &tables);
    }
    ok(&ReportTpl {
        ctx: &ctx,
        kind,
        title,
        reports: REPORTS,
        bar: &p.bar,
        charts,
        tables,
    })
}

fn csv(kind: &str, bar: &Bar, tables: &[Table]) -> PageResult {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::internal(format!("csv: {e}"));
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            w.write_record([""]).map_err(fail)?;
        }
        if tables.len() > 1 {
            w.write_record([t.caption.as_str()]).map_err(fail)?;
        }
        w.write_record(&t.head).map_err(fail)?;
        for r in &t.rows {
            w.write_record(r.iter().map(|c| c.raw.as_str()))
                .map_err(fail)?;
        }
    }
    let body = w
        .into_inner()
        .map_err(|e| AppError::internal(format!("csv: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"voronka-{kind}-{}-{}.csv\"",
                bar.from, bar.to
            ),
        ))
        .body(body))
}

/// A report's charts and tables.
async fn build(p: &Page<'_>, kind: &str) -> Result<(Vec<String>, Vec<Table>), AppError> {
    let (ctx, a, caller, f) = (p.ctx, &p.state.modules.analytics, p.caller, &p.filter);
    let t = |k: &str| ctx.t(k).to_string();
    match kind {
        "funnel" => {
            let r = a.funnel(caller, f).await?;
            let items: Vec<BarItem> = r
                .stages
                .iter()
                .map(|s| BarItem {
                    label: s.stage.name.clone(),
                    value: s.reached as f64,
                    shown: format!(
                        "{} · {}",
                        super::deals::group_digits(s.reached),
                        s.from_start
                            .map(|v| format!("{v:.0} %"))
                            .unwrap_or_else(|| "—".into())
                    ),
                })
                .collect();
            let chart = charts::bars(
                "chart-funnel",
                &format!("{} — {}", t("analytics.funnel"), r.pipeline_name),
                &t("analytics.funnel_desc"),
                &items,
                true,
            );
            let created = p.created_in_period();
            let mut rows = vec![vec![
                Cell::text(t("analytics.cohort")),
                Cell::num(r.deals, super::deals::group_digits(r.deals))
                    .link(p.deals_link(&created)),
                Cell::num(r.budget, p.money(r.budget)),
                Cell::pct(Some(100.0).filter(|_| r.deals > 0)),
                Cell::pct(None),
                Cell::text(""),
                Cell::text(""),
            ]];
            for (i, s) in r.stages.iter().enumerate() {
                let mut here = created.clone();
                here.push(("stage", s.stage.id.to_string()));
                // Reached: the cohort's deals that have been in this step or any later one.
                let mut reached = created.clone();
                reached.extend(
                    r.stages[i..]
                        .iter()
                        .map(|later| ("visited", later.stage.id.to_string())),
                );
                rows.push(vec![
                    Cell::text(s.stage.name.clone()),
                    Cell::num(s.reached, super::deals::group_digits(s.reached))
                        .link(p.deals_link(&reached)),
                    Cell::num(s.budget, p.money(s.budget)),
                    Cell::pct(s.from_start),
                    Cell::pct(s.from_previous),
                    Cell::num(s.dropped, super::deals::group_digits(s.dropped)),
                    Cell::num(s.now_here, super::deals::group_digits(s.now_here))
                        .link(p.deals_link(&here)),
                ]);
            }
            Ok((
                vec![chart],
                vec![Table {
                    caption: format!(
                        "{}: {} · {} {}",
                        t("analytics.funnel"),
                        r.pipeline_name,
                        t("analytics.conversion"),
                        r.conversion
                            .map(|v| format!("{v:.1} %"))
                            .unwrap_or_else(|| "—".into())
                    ),
                    head: vec![
                        t("analytics.stage"),
                        t("analytics.reached"),
                        t("analytics.budget"),
                        t("analytics.from_start"),
                        t("analytics.from_previous"),
                        t("analytics.dropped"),
                        t("analytics.now_here"),
                    ],
                    rows,
                }],
            ))
        }
        "win-loss" => {
            let r = a.win_loss(caller, f).await?;
            let items = vec![
                BarItem {
                    label: t("analytics.won"),
                    value: r.won as f64,
                    shown: format!("{} · {}", r.won, p.money(r.won_budget)),
                },
                BarItem {
                    label: t("analytics.lost"),
                    value: r.lost as f64,
                    shown: format!("{} · {}", r.lost, p.money(r.lost_budget)),
                },
            ];
            let reasons: Vec<BarItem> = r
                .reasons
                .iter()
                .map(|x| BarItem {
                    label: reason_name(ctx, &x.name),
                    value: x.deals as f64,
                    shown: x.deals.to_string(),
                })
                .collect();
            let charts = vec![
                charts::bars(
                    "chart-winloss",
                    &t("analytics.win_loss"),
                    &t("analytics.win_loss_desc"),
                    &items,
                    false,
                ),
                charts::bars(
                    "chart-reasons",
                    &t("analytics.loss_reasons"),
                    &t("analytics.loss_reasons"),
                    &reasons,
                    false,
                ),
            ];
            let summary = Table {
                caption: t("analytics.win_loss"),
                head: vec![
                    t("analytics.won"),
                    t("analytics.won_budget"),
                    t("analytics.lost"),
                    t("analytics.lost_budget"),
                    t("analytics.win_rate"),
                ],
                rows: vec![vec![
                    Cell::num(r.won, r.won.to_string())
                        .link(p.deals_link(&p.closed_in_period(deals_api::WON))),
                    Cell::num(r.won_budget, p.money(r.won_budget)),
                    Cell::num(r.lost, r.lost.to_string())
                        .link(p.deals_link(&p.closed_in_period(deals_api::LOST))),
                    Cell::num(r.lost_budget, p.money(r.lost_budget)),
                    Cell::pct(r.win_rate),
                ]],
            };
            let reasons = Table {
                caption: t("analytics.loss_reasons"),
                head: vec![
                    t("analytics.reason"),
                    t("analytics.deals"),
                    t("analytics.budget"),
                ],
                rows: r
                    .reasons
                    .iter()
                    .map(|x| {
                        vec![
                            Cell::text(reason_name(ctx, &x.name)),
                            Cell::num(x.deals, x.deals.to_string()),
                            Cell::num(x.budget, p.money(x.budget)),
                        ]
                    })
                    .collect(),
            };
            Ok((charts, vec![summary, reasons]))
        }
        "managers" => {
            let rows = a.managers(caller, f).await?;
            let items: Vec<BarItem> = rows
                .iter()
                .map(|m| BarItem {
                    label: p.names.user(m.user_id),
                    value: m.budget_won as f64,
                    shown: p.money(m.budget_won),
                })
                .collect();
            let chart = charts::bars(
                "chart-managers",
                &t("analytics.managers"),
                &t("analytics.managers_desc"),
                &items,
                false,
            );
            let created = p.created_in_period();
            let table = Table {
                caption: t("analytics.managers"),
                head: vec![
                    t("analytics.manager"),
                    t("analytics.created"),
                    t("analytics.won"),
                    t("analytics.lost"),
                    t("analytics.won_budget"),
                    t("analytics.tasks_completed"),
                    t("analytics.messages_sent"),
                    t("analytics.response_time"),
                ],
                rows: rows
                    .iter()
                    .map(|m| {
                        let mut mine = created.clone();
                        mine.push(("responsible", m.user_id.to_string()));
                        vec![
                            Cell::text(p.names.user(m.user_id)),
                            Cell::num(m.created, m.created.to_string()).link(p.deals_link(&mine)),
                            Cell::num(m.won, m.won.to_string()),
                            Cell::num(m.lost, m.lost.to_string()),
                            Cell::num(m.budget_won, p.money(m.budget_won)),
                            Cell::num(m.tasks_completed, m.tasks_completed.to_string()),
                            Cell::num(m.messages_sent, m.messages_sent.to_string()),
                            Cell::secs(m.avg_response_secs, ctx),
                        ]
                    })
                    .collect(),
            };
            Ok((vec![chart], vec![table]))
        }
        "stages" => {
            let r = a.time_in_stage(caller, f).await?;
            let items: Vec<BarItem> = r
                .stages
                .iter()
                .map(|s| BarItem {
                    label: s.stage.name.clone(),
                    value: s.median_secs.unwrap_or(0) as f64,
                    shown: s
                        .median_secs
                        .map(|v| duration(ctx, v))
                        .unwrap_or_else(|| "—".into()),
                })
                .collect();
            let chart = charts::bars(
                "chart-stages",
                &t("analytics.stages"),
                &t("analytics.stages_desc"),
                &items,
                false,
            );
            let stages = Table {
                caption: t("analytics.stages"),
                head: vec![
                    t("analytics.stage"),
                    t("analytics.stays"),
                    t("analytics.median"),
                    t("analytics.p90"),
                    t("analytics.open_now"),
                ],
                rows: r
                    .stages
                    .iter()
                    .map(|s| {
                        vec![
                            Cell::text(s.stage.name.clone()),
                            Cell::num(s.stays, s.stays.to_string()),
                            Cell::secs(s.median_secs, ctx),
                            Cell::secs(s.p90_secs, ctx),
                            Cell::num(s.open_now, s.open_now.to_string())
                                .link(p.deals_link(&[("stage", s.stage.id.to_string())])),
                        ]
                    })
                    .collect(),
            };
            let now = Utc::now();
            let slowest = Table {
                caption: t("analytics.slowest"),
                head: vec![
                    t("analytics.deal"),
                    t("analytics.stage"),
                    t("analytics.in_stage"),
                    t("analytics.budget"),
                    t("analytics.manager"),
                ],
                rows: r
                    .slowest
                    .iter()
                    .map(|d| {
                        let waited = (now - d.since).num_seconds().max(0);
                        vec![
                            Cell::text(format!("#{}", d.deal_id))
                                .link(format!("/deals/{}", d.deal_id)),
                            Cell::text(d.stage.name.clone()),
                            Cell::secs(Some(waited), ctx),
                            Cell::num(d.price, p.money(d.price)),
                            Cell::text(p.names.user(d.responsible_user_id)),
                        ]
                    })
                    .collect(),
            };
            Ok((vec![chart], vec![stages, slowest]))
        }
        "trend" => {
            let r = a.trend(caller, f, p.bucket).await?;
            let labels: Vec<String> = r.points.iter().map(|x| x.start.to_string()).collect();
            let chart = charts::lines(
                "chart-trend",
                &t("analytics.trend"),
                &t("analytics.trend_desc"),
                &labels,
                &[
                    Series {
                        name: t("analytics.created"),
                        class: "a",
                        values: r.points.iter().map(|x| x.created as f64).collect(),
                    },
                    Series {
                        name: t("analytics.closed"),
                        class: "b",
                        values: r.points.iter().map(|x| (x.won + x.lost) as f64).collect(),
                    },
                ],
            );
            let points = Table {
                caption: t("analytics.trend"),
                head: vec![
                    t("analytics.period_start"),
                    t("analytics.created"),
                    t("analytics.budget"),
                    t("analytics.won"),
                    t("analytics.won_budget"),
                    t("analytics.lost"),
                ],
                rows: r
                    .points
                    .iter()
                    .map(|x| {
                        vec![
                            Cell::text(x.start.to_string()),
                            Cell::num(x.created, x.created.to_string()),
                            Cell::num(x.created_budget, p.money(x.created_budget)),
                            Cell::num(x.won, x.won.to_string()),
                            Cell::num(x.won_budget, p.money(x.won_budget)),
                            Cell::num(x.lost, x.lost.to_string()),
                        ]
                    })
                    .collect(),
            };
            let mut rows: Vec<Vec<Cell>> = r
                .forecast
                .iter()
                .map(|x| {
                    vec![
                        Cell::text(x.stage.name.clone()),
                        Cell::num(x.open_deals, x.open_deals.to_string())
                            .link(p.deals_link(&[("stage", x.stage.id.to_string())])),
                        Cell::num(x.open_budget, p.money(x.open_budget)),
                        Cell::pct(x.win_rate),
                        Cell::num(x.weighted, p.money(x.weighted)),
                    ]
                })
                .collect();
            rows.push(vec![
                Cell::text(t("analytics.total")),
                Cell::text(""),
                Cell::text(""),
                Cell::text(""),
                Cell::num(r.forecast_total, p.money(r.forecast_total)),
            ]);
            let forecast = Table {
                caption: t("analytics.forecast"),
                head: vec![
                    t("analytics.stage"),
                    t("analytics.open_now"),
                    t("analytics.open_budget"),
                    t("analytics.win_rate"),
                    t("analytics.weighted"),
                ],
                rows,
            };
            Ok((vec![chart], vec![points, forecast]))
        }
        _ => {
            let r = a.summary(caller, f, p.bucket).await?;
            let labels: Vec<String> = r
                .rows
                .iter()
                .map(|x| x.start.map(|d| d.to_string()).unwrap_or_default())
                .collect();
            let chart = charts::lines(
                "chart-summary",
                &t("analytics.summary"),
                &t("analytics.summary_desc"),
                &labels,
                &[
                    Series {
                        name: t("analytics.created"),
                        class: "a",
                        values: r.rows.iter().map(|x| x.deals_created as f64).collect(),
                    },
                    Series {
                        name: t("analytics.tasks_completed"),
                        class: "b",
                        values: r.rows.iter().map(|x| x.tasks_completed as f64).collect(),
                    },
                ],
            );
            let line = |label: String, x: &analytics_api::SummaryRow| {
                vec![
                    Cell::text(label),
                    Cell::num(x.deals_created, x.deals_created.to_string()),
                    Cell::num(x.budget_created, p.money(x.budget_created)),
                    Cell::num(x.deals_won, x.deals_won.to_string()),
                    Cell::num(x.budget_won, p.money(x.budget_won)),
                    Cell::num(x.deals_lost, x.deals_lost.to_string()),
                    Cell::num(x.contacts_created, x.contacts_created.to_string()),
                    Cell::num(x.companies_created, x.companies_created.to_string()),
                    Cell::num(x.tasks_created, x.tasks_created.to_string()),
                    Cell::num(x.tasks_completed, x.tasks_completed.to_string()),
                    Cell::num(x.notes_added, x.notes_added.to_string()),
                    Cell::num(x.messages_in, x.messages_in.to_string()),
                    Cell::num(x.messages_out, x.messages_out.to_string()),
                ]
            };
            let mut rows: Vec<Vec<Cell>> = r
                .rows
                .iter()
                .map(|x| line(x.start.map(|d| d.to_string()).unwrap_or_default(), x))
                .collect();
            rows.push(line(t("analytics.total"), &r.total));
            let table = Table {
                caption: t("analytics.summary"),
                head: [
                    "analytics.period_start",
                    "analytics.created",
                    "analytics.budget",
                    "analytics.won",
                    "analytics.won_budget",
                    "analytics.lost",
                    "analytics.contacts_created",
                    "analytics.companies_created",
                    "analytics.tasks_created",
                    "analytics.tasks_completed",
                    "analytics.notes_added",
                    "analytics.messages_in",
                    "analytics.messages_sent",
                ]
                .iter()
                .map(|k| t(k))
                .collect(),
                rows,
            };
            Ok((vec![chart], vec![table]))
        }
    }
}

fn reason_name(ctx: &Ctx, name: &str) -> String {
    if name.is_empty() {
        ctx.t("analytics.no_reason").to_string()
    } else {
        name.to_string()
    }
}

pub struct Figure {
    pub label: &'static str,
    pub value: String,
    pub detail: String,
    pub href: Option<String>,
    pub test: &'static str,
}

#[derive(Template)]
#[template(path = "analytics/dashboard.html")]
struct DashboardTpl<'a> {
    ctx: &'a Ctx,
    reports: &'a [(&'a str, &'a str)],
    bar: &'a Bar,
    figures: Vec<Figure>,
    funnel: String,
    month: String,
}

/// This month's main figures for the main (or chosen) pipeline, each linking to its deals.
pub async fn dashboard(
    state: web::Data<AppState>,
    ctx: Ctx,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let p = page(&state, &ctx, &q).await?;
    let (a, caller, f) = (&state.modules.analytics, p.caller, &p.filter);
    let funnel = a.funnel(caller, f).await?;
    let wl = a.win_loss(caller, f).await?;
    let trend = a.trend(caller, f, Bucket::Month).await?;
    let t = |k: &str| ctx.t(k).to_string();
    let created = p.created_in_period();
    let open: (i64, i64) = trend.forecast.iter().fold((0, 0), |acc, r| {
        (acc.0 + r.open_deals, acc.1 + r.open_budget)
    });
    let created_budget: i64 = trend.points.iter().map(|x| x.created_budget).sum();
    let figures = vec![
        Figure {
            label: "analytics.created",
            value: super::deals::group_digits(funnel.deals),
            detail: p.money(created_budget),
            href: Some(p.deals_link(&created)),
            test: "fig-created",
        },
        Figure {
            label: "analytics.won",
            value: super::deals::group_digits(wl.won),
            detail: p.money(wl.won_budget),
            href: Some(p.deals_link(&p.closed_in_period(deals_api::WON))),
            test: "fig-won",
        },
        Figure {
            label: "analytics.lost",
            value: super::deals::group_digits(wl.lost),
            detail: p.money(wl.lost_budget),
            href: Some(p.deals_link(&p.closed_in_period(deals_api::LOST))),
            test: "fig-lost",
        },
        Figure {
            label: "analytics.win_rate",
            value: wl
                .win_rate
                .map(|v| format!("{v:.1} %"))
                .unwrap_or_else(|| "—".into()),
            detail: String::new(),
            href: None,
            test: "fig-winrate",
        },
        Figure {
            label: "analytics.open_now",
            value: super::deals::group_digits(open.0),
            detail: p.money(open.1),
            href: Some(format!("/deals/pipelines/{}", p.bar.pipeline)),
            test: "fig-open",
        },
        Figure {
            label: "analytics.forecast",
            value: p.money(trend.forecast_total),
            detail: String::new(),
            href: Some(format!("/analytics/trend?{}", p.bar.query)),
            test: "fig-forecast",
        },
    ];
    let items: Vec<BarItem> = funnel
        .stages
        .iter()
        .map(|s| BarItem {
            label: s.stage.name.clone(),
            value: s.reached as f64,
            shown: s.reached.to_string(),
        })
        .collect();
    let chart = charts::bars(
        "chart-funnel",
        &format!("{} — {}", t("analytics.funnel"), funnel.pipeline_name),
        &t("analytics.funnel_desc"),
        &items,
        true,
    );
    ok(&DashboardTpl {
        ctx: &ctx,
        reports: REPORTS,
        bar: &p.bar,
        figures,
        funnel: chart,
        month: format!("{} — {}", p.bar.from, p.bar.to),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn the_filter_reads_back_and_refuses_bad_values() {
        let (f, b) = parse(&pairs(
            "pipeline=3&from=2026-01-01&to=2026-01-31&responsible=5&tag=7&tag=8&source=telegram&bucket=week",
        ))
        .unwrap();
        assert_eq!(f.pipeline_id, Some(3));
        assert_eq!(f.to, day("2026-02-01"));
        assert_eq!(f.tags, vec![7, 8]);
        assert_eq!(f.source.as_deref(), Some("telegram"));
        assert_eq!(b, Bucket::Week);
        let err = parse(&pairs(
            "from=2026-02-01&to=2026-01-01&source=fax&bucket=year",
        ))
        .unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, vec!["source", "bucket", "to"]);
    }
}

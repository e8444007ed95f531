use chrono::{DateTime, Utc};
use deals_api::{Deal, DealId, LossReasonId, PipelineId, Stage, StageId, StageKind};
use diesel::pg::Pg;
use diesel::prelude::*;
use kernel::{AccountId, UserId};

use crate::schema::{deals, stages};

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = stages, check_for_backend(Pg))]
pub struct StageRow {
    pub pipeline_id: i64,
    pub id: i64,
    pub name: String,
    pub color: String,
    pub sort: i32,
    pub kind: String,
}

impl From<StageRow> for Stage {
    fn from(r: StageRow) -> Stage {
        Stage {
            id: StageId(r.id),
            pipeline_id: PipelineId(r.pipeline_id),
            name: r.name,
            color: r.color,
            sort: r.sort,
            kind: StageKind::parse(&r.kind).unwrap_or(StageKind::Open),
        }
    }
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = deals, check_for_backend(Pg))]
pub struct DealRow {
    pub id: i64,
    pub account_id: i64,
    pub pipeline_id: i64,
    pub stage_id: i64,
    pub name: String,
    pub price: i64,
    pub responsible_user_id: i64,
    pub position: i64,
    pub loss_reason_id: Option<i64>,
    pub created_by: i64,
    pub updated_by: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<DealRow> for Deal {
    fn from(r: DealRow) -> Deal {
        Deal {
            id: DealId(r.id),
            account_id: AccountId(r.account_id),
            pipeline_id: PipelineId(r.pipeline_id),
            stage_id: StageId(r.stage_id),
            name: r.name,
            price: r.price,
            responsible_user_id: UserId(r.responsible_user_id),
            position: r.position,
            loss_reason_id: r.loss_reason_id.map(LossReasonId),
            created_by: r.created_by,
            updated_by: r.updated_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            closed_at: r.closed_at,
        }
    }
}

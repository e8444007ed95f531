use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deals_api::{Deal, DealId, LossReasonId, PipelineId, Stage, StageId, StageKind, Tag, TagId};
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
    pub tag_ids: Vec<i64>,
    pub custom_fields: serde_json::Value,
    pub contact_ids: Vec<i64>,
    pub main_contact_id: Option<i64>,
    pub company_ids: Vec<i64>,
}

impl DealRow {
    /// The deal, with its tags' names from `tags`.
    pub fn into_deal(self, tags: &HashMap<i64, String>) -> Deal {
        let tag_list = self
            .tag_ids
            .iter()
            .filter_map(|id| {
                tags.get(id).map(|name| Tag {
                    id: TagId(*id),
                    name: name.clone(),
                })
            })
            .collect();
        let custom_fields = match &self.custom_fields {
            serde_json::Value::Object(m) => m.clone(),
            _ => Default::default(),
        };
        let r = self;
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
            tags: tag_list,
            custom_fields,
            contact_ids: r.contact_ids,
            main_contact_id: r.main_contact_id,
            company_ids: r.company_ids,
        }
    }
}

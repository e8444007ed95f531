//! Incoming (unsorted) leads: a deal in its pipeline's "Incoming leads" stage, usually made by
//! a new chat. Accepting moves it on, declining deletes it (restorable) and frees the chat,
//! linking attaches the chat to an existing deal instead. Shared by the inbox and the API.

use deals_api::{Deal, DealId, DealPatch, MoveTo, Pipeline, StageId, StageKind};
use kernel::{AppError, AppResult, Caller};

use crate::state::AppState;

/// The deal and its pipeline, if the deal is an incoming lead.
pub async fn incoming_lead(
    state: &AppState,
    caller: Caller,
    deal: DealId,
) -> AppResult<(Deal, Pipeline)> {
    let deal = state.modules.deals.deal(caller, deal).await?;
    let pipeline = state
        .modules
        .deals
        .pipeline(caller, deal.pipeline_id)
        .await?;
    let incoming = pipeline
        .stages
        .iter()
        .any(|s| s.id == deal.stage_id && s.kind == StageKind::Incoming);
    if !incoming {
        return Err(AppError::validation(
            "deal_id",
            "not_incoming",
            "the lead has already been accepted",
        ));
    }
    Ok((deal, pipeline))
}

/// Moves the incoming lead to `stage` (an open stage of its pipeline), or to the first one.
pub async fn accept(
    state: &AppState,
    caller: Caller,
    deal: DealId,
    stage: Option<StageId>,
) -> AppResult<Deal> {
    let (deal, pipeline) = incoming_lead(state, caller, deal).await?;
    let to = match stage {
        Some(s) => pipeline
            .stages
            .iter()
            .find(|x| x.id == s && x.kind != StageKind::Incoming)
            .ok_or_else(|| {
                AppError::validation(
                    "status_id",
                    "unknown_stage",
                    "no such stage in the lead's pipeline",
                )
            })?,
        None => pipeline
            .stages
            .iter()
            .find(|s| s.kind == StageKind::Open)
            .ok_or_else(|| AppError::validation("stage_id", "unknown_stage", "no open stage"))?,
    };
    state
        .modules
        .deals
        .move_deal(
            caller,
            deal.id,
            MoveTo {
                stage_id: to.id,
                after: None,
                loss_reason_id: None,
            },
        )
        .await
}

/// Declines the incoming lead: its deal is deleted (it can be restored); its chat, if any,
/// stays, and the client's next message starts a new lead.
pub async fn decline(state: &AppState, caller: Caller, deal: DealId) -> AppResult<Deal> {
    let (deal, _) = incoming_lead(state, caller, deal).await?;
    if let Some(c) = state
        .modules
        .messaging
        .conversation_of_deal(caller, deal.id.0)
        .await?
    {
        state
            .modules
            .messaging
            .link_deal(caller, c.id, None)
            .await?;
    }
    state.modules.deals.delete_deal(caller, deal.id).await?;
    Ok(deal)
}

/// Attaches a chat to an existing deal `target` (its contact joins the deal); the chat's
/// incoming lead, if it had one, is deleted.
pub async fn link_chat(
    state: &AppState,
    caller: Caller,
    conversation: i64,
    lead: Option<DealId>,
    target: DealId,
) -> AppResult<Deal> {
    if lead == Some(target) {
        return Err(AppError::validation(
            "deal_id",
            "invalid",
            "that is the lead itself",
        ));
    }
    let m = &state.modules;
    let c = m.messaging.conversation(caller, conversation).await?;
    let mut deal = m.deals.deal(caller, target).await?;
    m.messaging.link_deal(caller, c.id, Some(target.0)).await?;
    if let Some(contact) = c.contact_id
        && !deal.contact_ids.contains(&contact)
    {
        let mut ids = deal.contact_ids.clone();
        ids.push(contact);
        deal = m
            .deals
            .update_deal(
                caller,
                deal.id,
                DealPatch {
                    contact_ids: Some(ids),
                    ..Default::default()
                },
            )
            .await?;
    }
    if let Some(lead) = lead {
        m.deals.delete_deal(caller, lead).await?;
    }
    Ok(deal)
}

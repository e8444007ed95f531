//! What a new account starts with, as in amoCRM: a main pipeline with the usual stages, in the
//! administrator's language, so that the board, incoming leads and the public API
//! (`status_id` defaults to the main pipeline's first stage) work from the first minute.

use accounts_api::Lang;
use deals_api::{NewPipeline, NewStage, Pipeline};
use kernel::{AccountId, AppResult, Caller, UserId};

use crate::state::AppState;

/// The stages of a new account's pipeline (besides incoming leads, won and lost), with amoCRM's
/// colours.
fn first_stages(lang: Lang) -> Vec<NewStage> {
    let names: [&str; 4] = match lang {
        Lang::Ru => [
            "Первичный контакт",
            "Переговоры",
            "Принимают решение",
            "Согласование договора",
        ],
        Lang::En => [
            "Initial contact",
            "Negotiation",
            "Decision making",
            "Contract discussion",
        ],
    };
    names
        .iter()
        .zip(["#99ccff", "#ffff99", "#ffcc66", "#ff9966"])
        .map(|(n, c)| NewStage {
            name: (*n).to_string(),
            color: c.to_string(),
        })
        .collect()
}

/// Makes the new account's main pipeline, unless it has one already.
pub async fn first_pipeline(
    state: &AppState,
    account: AccountId,
    admin: UserId,
    lang: Lang,
) -> AppResult<Option<Pipeline>> {
    let caller = Caller::user(account, admin);
    let deals = &state.modules.deals;
    if !deals.pipelines(caller).await?.is_empty() {
        return Ok(None);
    }
    let name = match lang {
        Lang::Ru => "Воронка",
        Lang::En => "Sales",
    };
    deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: name.into(),
                stages: first_stages(lang),
            },
        )
        .await
        .map(Some)
}

//! Imports from amoCRM, wired to this process's modules (see the `importer` module).

use importer::{AmoClient, ImportError, Importer, Outcome, Progress, Targets};
use kernel::AccountId;

use crate::state::AppState;

/// The importer writing into this process's modules (local or remote).
pub fn importer(state: &AppState) -> Importer {
    Importer::new(
        state.pool.clone(),
        Targets {
            accounts: state.modules.accounts.clone(),
            deals: state.modules.deals.clone(),
            contacts: state.modules.contacts.clone(),
            activities: state.modules.activities.clone(),
        },
    )
}

/// Imports (or goes on importing) the amoCRM account `client` reads into `account`.
pub async fn run(
    state: &AppState,
    client: &AmoClient,
    account: AccountId,
    on_page: impl FnMut(&Progress),
) -> Result<Outcome, ImportError> {
    importer(state).run(client, account, on_page).await
}

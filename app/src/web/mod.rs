//! The web UI: server-rendered pages, sessions, CSRF, translations, embedded assets.

pub mod assets;
pub mod charts;
pub mod ctx;
pub mod error;
pub mod i18n;
pub mod limits;
pub mod pages;
pub mod session;

use actix_web::web;

use pages::{
    activities, analytics, auth, automation, contacts, deals, home, inbox, settings, transfer,
};

pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use settings::{deals as sdeals, groups, integrations, jobs, profile, roles, tokens, users};
    cfg.route("/static/{file}", web::get().to(assets::serve))
        .route("/favicon.ico", web::get().to(assets::favicon))
        .route("/", web::get().to(home::home))
        .route("/sign-in", web::get().to(auth::sign_in_page))
        .route("/sign-in", web::post().to(auth::sign_in))
        .route("/sign-up", web::get().to(auth::sign_up_page))
        .route("/sign-up", web::post().to(auth::sign_up))
        .route("/sign-out", web::post().to(auth::sign_out))
        .route("/lang/{code}", web::get().to(auth::set_lang))
        .route("/deals", web::get().to(deals::index))
        .route("/deals/pipelines/{id}", web::get().to(deals::board))
        .route(
            "/deals/pipelines/{id}/deals",
            web::post().to(deals::quick_add),
        )
        .route(
            "/deals/pipelines/{id}/stages/{stage}",
            web::get().to(deals::more),
        )
        .route("/deals/list", web::get().to(deals::list::list))
        .route("/deals/bulk", web::post().to(deals::list::bulk))
        .route("/deals/filters", web::post().to(deals::save_filter))
        .route(
            "/deals/filters/{id}/delete",
            web::post().to(deals::delete_filter),
        )
        .route("/analytics", web::get().to(analytics::dashboard))
        .route("/analytics/{kind}", web::get().to(analytics::report))
        .route("/inbox", web::get().to(inbox::index))
        .route("/inbox/list", web::get().to(inbox::list_part))
        .route("/inbox/{id}", web::get().to(inbox::show))
        .route("/inbox/{id}/thread", web::get().to(inbox::thread_part))
        .route("/inbox/{id}/send", web::post().to(inbox::send))
        .route("/inbox/{id}/attach", web::post().to(inbox::attach))
        .route("/inbox/files/{id}", web::get().to(inbox::file))
        .route("/inbox/{id}/accept", web::post().to(inbox::accept))
        .route("/inbox/{id}/decline", web::post().to(inbox::decline))
        .route("/inbox/{id}/link", web::post().to(inbox::link))
        .route("/deals/{id}/chat", web::get().to(inbox::deal_chat))
        .route("/notifications", web::get().to(inbox::notifications))
        .route("/notifications/bell", web::get().to(inbox::bell))
        .route("/settings/channels", web::get().to(inbox::channels))
        .route("/settings/channels", web::post().to(inbox::create_channel))
        .route(
            "/settings/channels/{id}/toggle",
            web::post().to(inbox::toggle_channel),
        )
        .route(
            "/settings/channels/{id}/delete",
            web::post().to(inbox::delete_channel),
        )
        .route("/settings/templates", web::get().to(inbox::templates))
        .route("/settings/templates", web::post().to(inbox::save_template))
        .route(
            "/settings/templates/{id}/delete",
            web::post().to(inbox::delete_template),
        )
        .route("/automation", web::get().to(automation::board))
        .route(
            "/automation/triggers/new",
            web::get().to(automation::new_trigger),
        )
        .route(
            "/automation/triggers",
            web::post().to(automation::create_trigger),
        )
        .route(
            "/automation/triggers/{id}",
            web::get().to(automation::edit_trigger),
        )
        .route(
            "/automation/triggers/{id}",
            web::post().to(automation::update_trigger),
        )
        .route(
            "/automation/triggers/{id}/toggle",
            web::post().to(automation::toggle_trigger),
        )
        .route(
            "/automation/triggers/{id}/delete",
            web::post().to(automation::delete_trigger),
        )
        .route(
            "/automation/triggers/{id}/runs",
            web::get().to(automation::trigger_runs),
        )
        .route("/automation/run", web::post().to(automation::run_manual))
        .route("/automation/bots", web::get().to(automation::bots))
        .route("/automation/bots", web::post().to(automation::create_bot))
        .route("/automation/bots/new", web::get().to(automation::new_bot))
        .route("/automation/bots/{id}", web::get().to(automation::edit_bot))
        .route(
            "/automation/bots/{id}",
            web::post().to(automation::update_bot),
        )
        .route(
            "/automation/bots/{id}/delete",
            web::post().to(automation::delete_bot),
        )
        .route("/deals/{id}/runs", web::get().to(automation::deal_runs))
        .route("/deals/{id}/bots", web::post().to(automation::start_bot))
        .route(
            "/deals/{id}/bot-runs/{run}/stop",
            web::post().to(automation::stop_bot),
        )
        .route("/settings/webhooks", web::get().to(automation::webhooks))
        .route(
            "/settings/webhooks",
            web::post().to(automation::create_webhook),
        )
        .route(
            "/settings/webhooks/{id}/toggle",
            web::post().to(automation::toggle_webhook),
        )
        .route(
            "/settings/webhooks/{id}/delete",
            web::post().to(automation::delete_webhook),
        )
        .route("/deals/{id}", web::get().to(deals::deal::show))
        .route("/deals/{id}", web::post().to(deals::deal::save))
        .route("/deals/{id}/move", web::post().to(deals::move_deal))
        .route("/deals/{id}/stage", web::post().to(deals::deal::set_stage))
        .route("/deals/{id}/delete", web::post().to(deals::deal::delete))
        .route("/deals/{id}/links", web::post().to(deals::deal::link))
        .route(
            "/deals/{id}/links/{entity}/{target}/unlink",
            web::post().to(deals::deal::unlink),
        )
        .route("/contacts", web::get().to(contacts::contacts))
        .route("/contacts", web::post().to(contacts::create_contact))
        .route("/contacts/new", web::get().to(contacts::new_contact))
        .route("/contacts/segments", web::post().to(contacts::save_segment))
        .route(
            "/contacts/segments/{id}/size",
            web::get().to(contacts::segment_size),
        )
        .route("/contacts/duplicates", web::get().to(contacts::duplicates))
        .route("/contacts/transfer", web::get().to(transfer::transfer))
        .route("/contacts/import", web::post().to(transfer::upload))
        .route("/contacts/import/{id}", web::get().to(transfer::import))
        .route("/contacts/import/{id}", web::post().to(transfer::start))
        .route(
            "/contacts/import/{id}/progress",
            web::get().to(transfer::progress),
        )
        .route(
            "/contacts/import/{id}/errors.csv",
            web::get().to(transfer::error_report),
        )
        .route("/contacts/export", web::post().to(transfer::export))
        .route(
            "/contacts/exports/{id}/file",
            web::get().to(transfer::export_file),
        )
        .route("/contacts/{id}", web::get().to(contacts::contact))
        .route("/contacts/{id}", web::post().to(contacts::save_contact))
        .route(
            "/contacts/{id}/deals",
            web::post().to(contacts::contact_new_deal),
        )
        .route("/contacts/{id}/companies", web::post().to(contacts::link))
        .route("/contacts/{id}/merge", web::post().to(contacts::merge))
        .route("/tasks", web::get().to(activities::tasks))
        .route("/tasks", web::post().to(activities::create_task))
        .route(
            "/tasks/{id}/complete",
            web::post().to(activities::complete_task),
        )
        .route("/notes/{id}", web::post().to(activities::pin_note))
        .route("/events", web::get().to(activities::events))
        .route("/timeline/{kind}/{id}", web::get().to(activities::timeline))
        .route(
            "/timeline/{kind}/{id}/notes",
            web::post().to(activities::add_note),
        )
        .route(
            "/timeline/{kind}/{id}/tasks",
            web::post().to(activities::add_task),
        )
        .route("/companies", web::get().to(contacts::companies))
        .route("/companies", web::post().to(contacts::create_company))
        .route("/companies/new", web::get().to(contacts::new_company))
        .route("/companies/{id}", web::get().to(contacts::company))
        .route("/companies/{id}", web::post().to(contacts::save_company))
        .route(
            "/companies/{id}/deals",
            web::post().to(contacts::company_new_deal),
        )
        .route(
            "/companies/{id}/merge",
            web::post().to(contacts::merge_company),
        )
        .route("/settings", web::get().to(settings_home))
        .route("/settings/users", web::get().to(users::list))
        .route("/settings/users", web::post().to(users::create))
        .route("/settings/users/new", web::get().to(users::new_form))
        .route("/settings/users/{id}", web::get().to(users::edit_form))
        .route("/settings/users/{id}", web::post().to(users::update))
        .route(
            "/settings/users/{id}/password",
            web::post().to(users::set_password),
        )
        .route("/settings/groups", web::get().to(groups::list))
        .route("/settings/groups", web::post().to(groups::create))
        .route("/settings/groups/{id}", web::post().to(groups::rename))
        .route(
            "/settings/groups/{id}/delete",
            web::post().to(groups::delete),
        )
        .route("/settings/roles", web::get().to(roles::list))
        .route("/settings/roles", web::post().to(roles::create))
        .route("/settings/roles/new", web::get().to(roles::new_form))
        .route("/settings/roles/{id}", web::get().to(roles::edit_form))
        .route("/settings/roles/{id}", web::post().to(roles::update))
        .route("/settings/roles/{id}/delete", web::post().to(roles::delete))
        .route("/settings/pipelines", web::get().to(sdeals::pipelines))
        .route(
            "/settings/pipelines",
            web::post().to(sdeals::create_pipeline),
        )
        .route(
            "/settings/pipelines/{id}/stages",
            web::post().to(sdeals::add_stage),
        )
        .route(
            "/settings/pipelines/{id}/stages/{stage}",
            web::post().to(sdeals::update_stage),
        )
        .route(
            "/settings/pipelines/{id}/stages/{stage}/shift",
            web::post().to(sdeals::shift_stage),
        )
        .route(
            "/settings/pipelines/{id}/stages/{stage}/delete",
            web::post().to(sdeals::delete_stage),
        )
        .route(
            "/settings/loss-reasons",
            web::post().to(sdeals::create_loss_reason),
        )
        .route(
            "/settings/contact-fields",
            web::get().to(settings::contact_fields::list),
        )
        .route(
            "/settings/contact-fields",
            web::post().to(settings::contact_fields::create),
        )
        .route(
            "/settings/contact-fields/{id:\\d+}",
            web::post().to(settings::contact_fields::update),
        )
        .route(
            "/settings/contact-fields/{id:\\d+}/delete",
            web::post().to(settings::contact_fields::delete),
        )
        .route(
            "/settings/contact-fields/groups",
            web::post().to(settings::contact_fields::create_group),
        )
        .route(
            "/settings/contact-fields/groups/{id:\\d+}",
            web::post().to(settings::contact_fields::update_group),
        )
        .route(
            "/settings/contact-fields/groups/{id:\\d+}/delete",
            web::post().to(settings::contact_fields::delete_group),
        )
        .route(
            "/settings/task-types",
            web::get().to(settings::task_types::list),
        )
        .route(
            "/settings/task-types",
            web::post().to(settings::task_types::create),
        )
        .route("/settings/fields", web::get().to(sdeals::fields))
        .route("/settings/fields", web::post().to(sdeals::create_field))
        .route(
            "/settings/fields/groups",
            web::post().to(sdeals::create_group),
        )
        .route(
            "/settings/fields/groups/{id:\\d+}",
            web::post().to(sdeals::update_group),
        )
        .route(
            "/settings/fields/groups/{id:\\d+}/delete",
            web::post().to(sdeals::delete_group),
        )
        .route(
            "/settings/fields/{id}",
            web::post().to(sdeals::update_field),
        )
        .route(
            "/settings/fields/{id}/delete",
            web::post().to(sdeals::delete_field),
        )
        .route("/settings/import", web::get().to(settings::import::page))
        .route("/settings/import", web::post().to(settings::import::start))
        .route(
            "/settings/import/status",
            web::get().to(settings::import::status),
        )
        .route("/settings/jobs", web::get().to(jobs::list))
        .route("/settings/jobs/{id}/retry", web::post().to(jobs::retry))
        .route("/settings/jobs/{id}/discard", web::post().to(jobs::discard))
        .route("/settings/integrations", web::get().to(integrations::list))
        .route(
            "/settings/integrations",
            web::post().to(integrations::create),
        )
        .route(
            "/settings/integrations/{id}/delete",
            web::post().to(integrations::delete),
        )
        .route("/settings/tokens", web::get().to(tokens::list))
        .route("/settings/tokens", web::post().to(tokens::create))
        .route(
            "/settings/tokens/{id}/revoke",
            web::post().to(tokens::revoke),
        )
        .route("/settings/profile", web::get().to(profile::show))
        .route("/settings/profile", web::post().to(profile::save))
        .route(
            "/settings/profile/password",
            web::post().to(profile::change_password),
        );
}

async fn settings_home(c: ctx::Ctx) -> error::PageResult {
    c.caller()?;
    pages::see_other(
        if c.is_admin() {
            "/settings/users"
        } else {
            "/settings/profile"
        },
        None,
    )
}

//! Integration tests: the real server over HTTP against PostgreSQL, one database per test.
//! One test binary (a module per area) keeps linking cheap on small machines.

mod activities;
mod amocrm;
mod analytics;
mod api;
mod auth;
mod automation;
mod backbone;
mod browser;
mod checks;
mod contacts;
mod deal_fields;
mod deals;
mod import;
mod import_roundtrip;
mod jobs;
mod messaging;
mod remote;
mod settings;
mod support;
mod tenancy;
mod transfer;

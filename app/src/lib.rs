//! Voronka: the binary's library part: configuration, composition root, web UI, public API.

pub mod activities_bench;
pub mod analytics_bench;
pub mod api;
pub mod automation_bench;
pub mod backbone;
pub mod cli;
pub mod config;
pub mod contacts_bench;
pub mod database;
pub mod deals_bench;
pub mod demo;
pub mod events;
pub mod extract;
pub mod fake_providers;
pub mod health;
pub mod hooks;
pub mod incoming;
pub mod jobs;
pub mod messaging_bench;
pub mod metrics;
pub mod onboarding;
pub mod server;
pub mod service;
pub mod state;
pub mod web;
pub mod work;

//! The `voronka` command line: what operators and scripts run.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use accounts_api::{Lang, NewAccount};
use actix_web::web;
use clap::{Args, Parser, Subcommand};
use kernel::Caller;
use kernel::pg_cluster::{Durability, PrivateCluster};

use crate::config::{Config, LogFormat, Overrides};
use crate::database::Database;
use crate::server;

#[derive(Parser)]
#[command(
    name = "voronka",
    version,
    about = "Voronka: an open-source CRM for sales teams"
)]
struct Cli {
    /// A TOML configuration file (default: ./voronka.toml if it exists).
    #[arg(long, global = true, env = "VORONKA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct ServerArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Directory for Voronka's own files (private database, secret key).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// An existing PostgreSQL database (otherwise a private cluster under the data directory).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

impl ServerArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

#[derive(Subcommand)]
enum DevCommand {
    /// Serve fake provider APIs on 127.0.0.1:<port>: point a channel's API address at it.
    FakeProviders {
        #[arg(long, default_value_t = 8099)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run Voronka: the web server, the outbox relay and the background workers (or one role).
    Serve {
        #[command(flatten)]
        server: ServerArgs,
        /// What this process runs, so web and workers can be scaled separately.
        #[arg(long, value_enum, default_value = "all")]
        role: crate::config::Role,
        /// Run only these modules, as their service (comma-separated, e.g. `messaging`): their
        /// service routes, webhooks, workers, event handlers and migrations, on their own
        /// database (`[modules.<m>] database_url`); the other modules are reached at
        /// `[remote] url`.
        #[arg(long, value_delimiter = ',')]
        modules: Option<Vec<String>>,
    },
    /// Run the web server with a demo account (created on first run); prints the URL and a login.
    Demo(ServerArgs),
    /// Apply pending database migrations and exit.
    Migrate(ServerArgs),
    /// Move a module's data into the database of its own service (writes to it pause during the
    /// copy; each table's rows and checksum are compared), and print the config that switches
    /// over; `--rollback` brings it back.
    Extract {
        /// The module, e.g. `messaging`.
        module: String,
        /// The service's database (empty, or holding only the module's migrated schema).
        #[arg(long, required_unless_present = "rollback")]
        to: Option<String>,
        /// Bring the module back from its service's database into this one.
        #[arg(long)]
        rollback: bool,
        /// With `--rollback`: the service's database (default: `[modules.<m>] database_url`).
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage long-lived API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Bring an account over from another CRM.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Analytics' read model.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Fill an account with generated deals (set-based, fast), e.g. `--deals 1000000`.
    Seed {
        /// An administrator of the account to fill.
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 10_000)]
        deals: i64,
        /// Contacts to add (each with a phone and an e-mail); 0 adds none.
        #[arg(long, default_value_t = 0)]
        contacts: i64,
        /// Event-log entries to spread over the seeded deals (with a note on every third deal
        /// and an open task on every second); 0 adds none.
        #[arg(long, default_value_t = 0)]
        log_entries: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Benchmark analytics: every report over a seeded read model (server time), and the
    /// projection's events/s.
    #[command(hide = true)]
    AnalyticsBench {
        #[arg(long)]
        email: String,
        /// Deals to generate in the read model.
        #[arg(long, default_value_t = 1_000_000)]
        deals: i64,
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        /// New deals whose events (created + 4 moves each) the projection handles.
        #[arg(long, default_value_t = 20_000)]
        projection_deals: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Benchmark the activities module (server time): timeline, board with tasks, tasks list.
    #[command(hide = true)]
    ActivitiesBench {
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// The seeded deals' ids (`voronka seed` prints them).
        #[arg(long)]
        first: i64,
        #[arg(long)]
        last: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Benchmark automation: stage changes in → triggers' actions done (with the backbone).
    #[command(hide = true)]
    AutomationBench {
        #[arg(long)]
        email: String,
        /// Stage changes per second in the sustained phase.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Seconds of moves at the same rate before the sustained phase, reported apart and not
        /// counted: a process just started has its connections and their plans to make.
        #[arg(long, default_value_t = 3)]
        warmup: u32,
        /// Stage changes made as fast as possible after the sustained phase.
        #[arg(long, default_value_t = 20000)]
        burst: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Benchmark messaging against the fake providers: webhooks acknowledged, processed, and
    /// paced sends (with the HTTP server and the backbone in this process).
    #[command(hide = true)]
    MessagingBench {
        #[arg(long)]
        email: String,
        /// Incoming updates to post.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Connections posting them at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The channel's sends per second (the fake provider refuses more).
        #[arg(long, default_value_t = 100)]
        rate: i32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Local fake Telegram, WhatsApp and Instagram APIs (for trying channels without real ones).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Benchmark the contacts module (server time): search, list, create.
    #[command(hide = true)]
    ContactsBench {
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Benchmark the deals module (server time): board, column paging, moves, creation.
    #[command(hide = true)]
    DealsBench {
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Diagnostics of the event backbone: the crash probe and the benchmark.
    #[command(hide = true)]
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage the private PostgreSQL cluster (used when no database_url is configured).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account with its first administrator; prints the account id.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_password: String,
        #[arg(long, default_value = "Administrator")]
        admin_name: String,
        #[arg(long)]
        subdomain: Option<String>,
        #[arg(long, default_value = "en")]
        lang: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// Read an amoCRM / Kommo account through its API v4 (paced under 7 requests/s, 429s waited
    /// out, pages of 250). `--dry-run` counts what would come over and lists what cannot.
    Amocrm {
        /// The account's address, e.g. https://SUBDOMAIN.amocrm.ru
        #[arg(long)]
        base_url: String,
        /// A long-lived token (or an OAuth access token) of the amoCRM account; or use an
        /// integration's OAuth code flow with --client-id, --client-secret, --redirect-uri and
        /// --code.
        #[arg(long, env = "AMOCRM_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The OAuth integration's id (its client_id in amoCRM).
        #[arg(long)]
        client_id: Option<String>,
        /// The OAuth integration's secret key.
        #[arg(long, env = "AMOCRM_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// The integration's redirect URI, as registered in amoCRM.
        #[arg(long)]
        redirect_uri: Option<String>,
        /// The authorization code from the consent redirect (single-use, 20 minutes); left out
        /// when going on with the tokens of --token-file.
        #[arg(long)]
        code: Option<String>,
        /// Where the OAuth tokens are kept between runs (they rotate at every renewal; the
        /// file is written with owner-only access). Default: amocrm-<host>.tokens.json in the
        /// data directory.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// The Voronka account to import into.
        #[arg(long)]
        account: i64,
        /// Only read and report: nothing is written.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Rebuild an account's deal figures from the deals module's history (activity counts,
    /// which exist only as events, are kept); prints what was written.
    Rebuild {
        /// An administrator of the account.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a long-lived API token for a user; prints the token.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Produce pings (some rolled back) and handle them with probe subscribers until every
    /// subscriber has handled every ping; resumes where a killed run stopped.
    Probe {
        #[arg(long, default_value_t = 2000)]
        total: i64,
        #[arg(long, default_value_t = 2)]
        subscribers: usize,
        /// Subscriber names start with this (unique per test run).
        #[arg(long, default_value = "probe")]
        prefix: String,
        #[arg(long, default_value_t = 1)]
        pause_ms: u64,
        #[arg(long, default_value_t = 7)]
        rollback_every: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Measure events/s and commit-to-handler latency on the configured bus.
    Bench {
        /// Events for the throughput run.
        #[arg(long, default_value_t = 20000)]
        burst: i64,
        /// Events per second for the latency run.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Start the private cluster (creating it if needed) and print its URL.
    Start {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Trade durability for speed (fsync off): for throwaway test data only.
        #[arg(long)]
        ephemeral: bool,
    },
    /// Stop the private cluster.
    Stop {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// A line on standard output, as `println!` but without a panic when the reader has gone
/// (`voronka extract ... | head`): what is left unprinted is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

fn load(cli_config: &Option<PathBuf>, args: &ServerArgs) -> Result<Config, Failure> {
    let config = Config::load(cli_config.as_deref(), &args.overrides())
        .map_err(|e| Failure::Config(e.to_string()))?;
    init_logging(&config);
    Ok(config)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Serve {
            server: args,
            role,
            modules,
        } => {
            let mut config = load(&cli.config, args)?;
            if let Some(list) = modules {
                config
                    .serve_only(list)
                    .map_err(|e| Failure::Other(e.to_string()))?;
            }
            serve(config, false, *role).await
        }
        Command::Demo(args) => {
            serve(load(&cli.config, args)?, true, crate::config::Role::All).await
        }
        Command::Extract {
            module,
            to,
            rollback,
            from,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            let mut db = Database::open(&config).await?;
            let here = db.url.clone();
            let (source, target) = if *rollback {
                let from = from
                    .clone()
                    .or_else(|| {
                        config
                            .modules
                            .get(module)
                            .and_then(|m| m.database_url.clone())
                    })
                    .ok_or_else(|| {
                        Failure::Other(format!(
                            "--rollback needs --from or [modules.{module}] database_url"
                        ))
                    })?;
                (from, here)
            } else {
                (here, to.clone().unwrap_or_default())
            };
            let m = module.clone();
            let rollback = *rollback;
            let result = tokio::task::spawn_blocking(move || {
                if rollback {
                    crate::extract::rollback(&m, &source, &target)
                } else {
                    crate::extract::extract(&m, &source, &target)
                }
            })
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
            db.close().await;
            let (checks, aside) = result.map_err(Failure::Other)?;
            let rows: i64 = checks.iter().map(|c| c.rows).sum();
            say!(
                "{module}: {} tables, {rows} rows copied; counts and checksums equal on both sides",
                checks.len()
            );
            for c in &checks {
                say!("  {:<32} {:>10} rows  md5 {}", c.table, c.rows, c.checksum);
            }
            say!("The old copy is kept as schema `{aside}`; drop it when satisfied.");
            if rollback {
                say!(
                    "Switch back: remove [modules.{module}] mode = \"remote\" from the config, stop the {module} service and restart."
                );
            } else {
                say!(
                    "Switch over: start the service with\n  VORONKA_MODULES__{}__DATABASE_URL=<that database> voronka serve --modules {module}\nand set in the other processes' config:\n  [modules.{module}]\n  mode = \"remote\"\n  url = \"http://<the service>:<port>\"",
                    module.to_uppercase()
                );
            }
            Ok(())
        }
        Command::Migrate(args) => {
            let config = load(&cli.config, args)?;
            let mut db = Database::open(&config).await?;
            let applied = db.migrate(&config).await;
            db.close().await;
            for (schema, version) in applied? {
                println!("applied {schema} {version}");
            }
            Ok(())
        }
        Command::Account {
            command:
                AccountCommand::Create {
                    name,
                    admin_email,
                    admin_password,
                    admin_name,
                    subdomain,
                    lang,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                let lang = Lang::parse(lang)
                    .ok_or_else(|| format!("unknown language {lang:?}; use en or ru"))?;
                let new = NewAccount {
                    name: name.clone(),
                    subdomain: subdomain.clone(),
                    admin_name: admin_name.clone(),
                    admin_email: admin_email.clone(),
                    admin_password: admin_password.clone(),
                    lang,
                };
                let (account, admin) = state
                    .modules
                    .accounts
                    .create_account(new)
                    .await
                    .map_err(|e| e.to_string())?;
                crate::onboarding::first_pipeline(state, account.id, admin.id, lang)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{}", account.id);
                Ok(())
            })
            .await
        }
        Command::Import {
            source:
                ImportSource::Amocrm {
                    base_url,
                    token,
                    client_id,
                    client_secret,
                    redirect_uri,
                    code,
                    token_file,
                    account,
                    dry_run,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                let options = importer::ClientOptions::default();
                let client = match (token, client_id) {
                    (Some(token), None) => importer::AmoClient::new(base_url, token, options)?,
                    (None, Some(client_id)) => {
                        let host: String = base_url
                            .trim_start_matches("https://")
                            .trim_start_matches("http://")
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
                            .collect();
                        let file = token_file.clone().unwrap_or_else(|| {
                            config.data_dir.join(format!("amocrm-{}.tokens.json", host.trim_end_matches('_')))
                        });
                        if let Some(dir) = file.parent() {
                            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                        }
                        let oauth = importer::OAuthClient {
                            client_id: client_id.clone(),
                            client_secret: client_secret.clone().ok_or(
                                "--client-secret (or AMOCRM_CLIENT_SECRET) is needed with --client-id",
                            )?,
                            redirect_uri: redirect_uri
                                .clone()
                                .ok_or("--redirect-uri is needed with --client-id")?,
                            token_file: Some(file),
                            sink: None,
                        };
                        importer::AmoClient::with_oauth(base_url, oauth, code.as_deref(), options).await?
                    }
                    (Some(_), Some(_)) => {
                        return Err("give either --token or the OAuth integration (--client-id …), not both".into());
                    }
                    (None, None) => {
                        return Err("give --token (a long-lived token) or the OAuth integration: --client-id, --client-secret, --redirect-uri and --code".into());
                    }
                };
                let target = state
                    .modules
                    .accounts
                    .account(kernel::AccountId(*account))
                    .await
                    .map_err(|e| format!("the Voronka account {account}: {e}"))?;
                if *dry_run {
                    println!(
                        "dry run: {} into Voronka account {} ({:?}); nothing is written",
                        client.base_url(),
                        account,
                        target.name
                    );
                    let survey = importer::survey(&client).await.map_err(|e| e.to_string())?;
                    print!("{}", survey.report());
                    return Ok(());
                }
                let outcome = crate::import::run(state, &client, target.id, |p| {
                    let step = if p.step.is_empty() { "…" } else { p.step.as_str() };
                    let total: u64 = p.created.values().chain(p.updated.values()).sum();
                    println!("  {step:<18} page {:>4}   written {total:>8}   {} requests", p.page, p.requests);
                })
                .await
                .map_err(|e| {
                    format!("{e}\nthe import stopped; run the same command again to go on from where it stopped")
                })?;
                println!(
                    "import {} of {} into Voronka account {} ({:?}) finished{}",
                    outcome.run,
                    client.base_url(),
                    account,
                    target.name,
                    if outcome.resumed { ", going on from where it had stopped" } else { "" }
                );
                print!("{}", outcome.progress.report());
                Ok(())
            })
            .await
        }
        Command::Analytics {
            command:
                AnalyticsCommand::Rebuild {
                    email,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                let user = state
                    .modules
                    .accounts
                    .find_user_by_email(email)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no user with e-mail {email}"))?;
                let started = Instant::now();
                let done = state
                    .modules
                    .analytics
                    .rebuild(Caller::user(user.account_id, user.id))
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "analytics rebuilt for account {}: {} deals, {} stage stays in {:.1} s",
                    user.account_id,
                    done.deals,
                    done.stays,
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            })
            .await
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    email,
                    name,
                    days,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                let accounts = &state.modules.accounts;
                let user = accounts
                    .find_user_by_email(email)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no user with e-mail {email}"))?;
                let token = accounts
                    .create_token(Caller::user(user.account_id, user.id), name, *days)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{}", token.secret);
                Ok(())
            })
            .await
        }
        Command::Events {
            command:
                EventsCommand::Probe {
                    total,
                    subscribers,
                    prefix,
                    pause_ms,
                    rollback_every,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            events_probe(
                &config,
                *total,
                *subscribers,
                prefix,
                *pause_ms,
                *rollback_every,
            )
            .await
            .map_err(Failure::Other)
        }
        Command::Events {
            command:
                EventsCommand::Bench {
                    burst,
                    rate,
                    seconds,
                    server: args,
                },
        } => {
            let config = load(&cli.config, args)?;
            events_bench(&config, *burst, *rate, *seconds)
                .await
                .map_err(Failure::Other)
        }
        Command::Seed {
            email,
            deals,
            contacts,
            log_entries,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                let (caller, pipeline) = bench_pipeline(state, email).await?;
                let users = bench_users(state, caller).await?;
                let users_for_log = users.clone();
                if *contacts > 0 {
                    let started = Instant::now();
                    let n = state
                        .modules
                        .contacts
                        .seed_contacts(caller, *contacts, users.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    println!(
                        "seeded {n} contacts in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                if *deals == 0 {
                    return Ok(());
                }
                let started = Instant::now();
                let seeded = state
                    .modules
                    .deals
                    .seed_deals(caller, pipeline.id, *deals, users)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "seeded {} deals into pipeline {} in {:.1} s",
                    seeded.count,
                    pipeline.id,
                    started.elapsed().as_secs_f64()
                );
                if *log_entries > 0 {
                    let started = Instant::now();
                    state
                        .modules
                        .activities
                        .seed_activities(
                            caller,
                            seeded.first.0,
                            seeded.last.0,
                            *log_entries,
                            users_for_log.clone(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    println!(
                        "seeded {log_entries} log entries, notes and tasks in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                // For scripts (scripts/bench): the pipeline, its open stages, the deal ids.
                let open: Vec<String> = pipeline
                    .stages
                    .iter()
                    .filter(|s| s.kind == deals_api::StageKind::Open)
                    .map(|s| s.id.to_string())
                    .collect();
                println!(
                    "SEEDED pipeline={} stages={} first={} last={}",
                    pipeline.id,
                    open.join(","),
                    seeded.first,
                    seeded.last
                );
                Ok(())
            })
            .await
        }
        Command::AnalyticsBench {
            email,
            deals,
            iterations,
            projection_deals,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                crate::analytics_bench::run(state, email, *deals, *iterations, *projection_deals)
                    .await
            })
            .await
        }
        Command::ActivitiesBench {
            email,
            iterations,
            first,
            last,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                crate::activities_bench::run(state, email, *iterations, *first, *last).await
            })
            .await
        }
        Command::AutomationBench {
            email,
            rate,
            seconds,
            warmup,
            burst,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_backbone(&config, async |state| {
                let phases = crate::automation_bench::Phases {
                    rate: *rate,
                    seconds: *seconds,
                    warmup: *warmup,
                    burst: *burst,
                };
                crate::automation_bench::run(state, email, phases).await
            })
            .await
        }
        Command::MessagingBench {
            email,
            messages,
            concurrency,
            rate,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            let mut db = Database::open(&config).await?;
            let result = async {
                db.migrate(&config).await?;
                let jobs = crate::backbone::job_store(&config, &db.url, server::queues()).await?;
                let state = actix_web::web::Data::new(server::build_state(
                    config.clone(),
                    &db.url,
                    Some(jobs.clone()),
                )?);
                crate::messaging_bench::run(
                    state,
                    &db.url,
                    jobs,
                    email,
                    *messages,
                    *concurrency,
                    *rate,
                )
                .await
            }
            .await;
            db.close().await;
            result.map_err(Failure::Other)
        }
        Command::Dev {
            command: DevCommand::FakeProviders { port },
        } => crate::fake_providers::run_cli(*port)
            .await
            .map_err(|e| Failure::Other(e.to_string())),
        Command::ContactsBench {
            email,
            iterations,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                crate::contacts_bench::run(state, email, *iterations).await
            })
            .await
        }
        Command::DealsBench {
            email,
            iterations,
            server: args,
        } => {
            let config = load(&cli.config, args)?;
            with_state(&config, async |state| {
                crate::deals_bench::run(state, email, *iterations).await
            })
            .await
        }
        Command::Db { command } => {
            let (dir, stop, durability) = match command {
                DbCommand::Start {
                    data_dir,
                    ephemeral,
                } => (
                    data_dir.clone(),
                    false,
                    if *ephemeral {
                        Durability::Ephemeral
                    } else {
                        Durability::Durable
                    },
                ),
                DbCommand::Stop { data_dir } => (data_dir.clone(), true, Durability::Durable),
            };
            let config = load(
                &cli.config,
                &ServerArgs {
                    data_dir: dir,
                    ..ServerArgs::default()
                },
            )?;
            let data_dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || {
                let cluster = PrivateCluster::ensure_started(&data_dir, durability)
                    .map_err(|e| e.to_string())?;
                if stop {
                    cluster.stop().map_err(|e| e.to_string())
                } else {
                    println!("{}", cluster.url("postgres"));
                    Ok(())
                }
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(Failure::Other)
        }
    }
}

/// Opens the database, migrates, builds the modules, runs `f`, and closes everything.
async fn with_state(
    config: &Config,
    f: impl AsyncFnOnce(&crate::state::AppState) -> Result<(), String>,
) -> Result<(), Failure> {
    let mut db = Database::open(config).await?;
    let result = async {
        db.migrate(config).await?;
        let state = server::build_state(config.clone(), &db.url, None)?;
        f(&state).await
    }
    .await;
    db.close().await;
    result.map_err(Failure::Other)
}

/// `with_state`, with the event backbone and the job workers running in this process.
async fn with_backbone(
    config: &Config,
    f: impl AsyncFnOnce(&crate::state::AppState) -> Result<(), String>,
) -> Result<(), Failure> {
    let mut db = Database::open(config).await?;
    let result = async {
        db.migrate(config).await?;
        let jobs = crate::backbone::job_store(config, &db.url, server::queues()).await?;
        let state = server::build_state(config.clone(), &db.url, Some(jobs.clone()))?;
        let backbone = crate::backbone::Backbone::start(
            config,
            &db.url,
            state.pool.clone(),
            jobs,
            state.metrics.clone(),
            crate::backbone::Work {
                subscribers: server::subscribers(&state.modules),
                schemas: server::outbox_schemas(config),
                modules: Some(state.modules.clone()),
            },
        )
        .await?;
        let result = f(&state).await;
        backbone.stop().await;
        result
    }
    .await;
    db.close().await;
    result.map_err(Failure::Other)
}

async fn serve(config: Config, demo: bool, role: crate::config::Role) -> Result<(), Failure> {
    let started = Instant::now();
    let mut db = Database::open(&config).await?;
    let result = serve_on(&config, &db, demo, role, started).await;
    db.close().await;
    result.map_err(Failure::Other)
}

async fn serve_on(
    config: &Config,
    db: &Database,
    demo: bool,
    role: crate::config::Role,
    started: Instant,
) -> Result<(), String> {
    use crate::config::Role;
    let applied = db.migrate(config).await?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "migrations applied");
    }
    let jobs = crate::backbone::job_store(config, &db.url, server::queues()).await?;
    let state = web::Data::new(server::build_state(
        config.clone(),
        &db.url,
        Some(jobs.clone()),
    )?);
    let subscribers = server::subscribers(&state.modules);
    let backbone = match role {
        Role::Web => None,
        Role::All | Role::Workers => Some(
            crate::backbone::Backbone::start(
                config,
                &db.url,
                state.pool.clone(),
                jobs,
                state.metrics.clone(),
                crate::backbone::Work {
                    subscribers,
                    schemas: server::outbox_schemas(config),
                    modules: Some(state.modules.clone()),
                },
            )
            .await?,
        ),
    };
    let outcome = if role == Role::Workers {
        let stop = server::shutdown_signal();
        tracing::info!(
            ready_ms = started.elapsed().as_millis() as u64,
            "Voronka workers are running"
        );
        println!("Voronka workers are running (relay and background jobs). Press Ctrl-C to stop.");
        stop.await;
        Ok(())
    } else {
        serve_http(config, &state, demo, started).await
    };
    if let Some(b) = backbone {
        b.stop().await;
    }
    outcome
}

async fn serve_http(
    config: &Config,
    state: &web::Data<crate::state::AppState>,
    demo: bool,
    started: Instant,
) -> Result<(), String> {
    let login = if demo {
        Some(
            crate::demo::seed(&state.modules)
                .await
                .map_err(|e| format!("demo data: {e}"))?,
        )
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let (handle, http) = server::start_http(state.clone(), listener).map_err(|e| e.to_string())?;
    let housekeeping = server::spawn_housekeeping(state.clone());
    let stop = server::shutdown_signal();
    let url = config.public_url();
    tracing::info!(url = %url, ready_ms = started.elapsed().as_millis() as u64, "Voronka is ready");
    println!("Voronka is running at {url}");
    if let Some(login) = login {
        println!(
            "Demo account: sign in as {} with password {}",
            login.email, login.password
        );
    }
    println!("Press Ctrl-C to stop.");
    let mut http = tokio::spawn(http);
    // Demo chats run against a fake Telegram served by this process.
    let fake = if demo && state.config.listen.port() != 0 {
        let port = state.config.listen.port().wrapping_add(19);
        match crate::demo::chats(&state.modules, &url, port).await {
            Ok((fake, _)) => {
                println!(
                    "Demo chats: a fake Telegram at {} stands in for the real one (what replies it got: {}/_fake/sent)",
                    fake.url, fake.url
                );
                Some(fake)
            }
            Err(e) => {
                println!("Demo chats are off this time: {e}");
                None
            }
        }
    } else {
        None
    };
    let outcome = tokio::select! {
        _ = stop => {
            tracing::info!("shutting down: finishing requests in flight");
            handle.stop(true).await;
            let _ = (&mut http).await;
            Ok(())
        }
        done = &mut http => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the HTTP server stopped: {e}")),
            Err(e) => Err(format!("the HTTP server task failed: {e}")),
        },
    };
    housekeeping.abort();
    if let Some(f) = fake {
        f.stop().await;
    }
    outcome
}

async fn probe_db(config: &Config) -> Result<(Database, kernel::db::DbPool), String> {
    let db = Database::open(config).await?;
    let pool = kernel::db::build_pool(&db.url, &kernel::db::PoolOptions::default())?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    crate::events::probe::install(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok((db, pool))
}

async fn events_probe(
    config: &Config,
    total: i64,
    subscribers: usize,
    prefix: &str,
    pause_ms: u64,
    rollback_every: i64,
) -> Result<(), String> {
    use crate::events::probe;
    let (mut db, pool) = probe_db(config).await?;
    let subs: Vec<std::sync::Arc<probe::ProbeSubscriber>> = (0..subscribers)
        .map(|i| std::sync::Arc::new(probe::ProbeSubscriber::new(format!("{prefix}.{i}"))))
        .collect();
    let names: Vec<String> = subs.iter().map(|s| s.name.clone()).collect();
    let backbone = probe::start_backbone(config, &db.url, &pool, &subs).await?;
    let producer = tokio::spawn(probe::run_producer(
        pool.clone(),
        total,
        std::time::Duration::from_millis(pause_ms),
        rollback_every,
    ));
    let outcome = tokio::select! {
        done = probe::wait_all_handled(&pool, &names, total, total, std::time::Duration::from_secs(600)) => done.map_err(|e| e.to_string()),
        _ = server::shutdown_signal() => Ok(false),
    };
    producer.abort();
    backbone.stop().await;
    db.close().await;
    match outcome? {
        true => {
            println!(
                "probe: complete: {total} events handled by each of {subscribers} subscribers"
            );
            Ok(())
        }
        false => Err("probe: not complete".into()),
    }
}

async fn events_bench(config: &Config, burst: i64, rate: u64, seconds: u64) -> Result<(), String> {
    use crate::events::probe;
    use std::time::{Duration, Instant};
    let (mut db, pool) = probe_db(config).await?;
    let sub = std::sync::Arc::new(probe::ProbeSubscriber::new(format!(
        "bench.{}",
        std::process::id()
    )));
    let names = vec![sub.name.clone()];
    let backbone =
        probe::start_backbone(config, &db.url, &pool, std::slice::from_ref(&sub)).await?;
    let err = |e: kernel::AppError| e.to_string();
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let base = probe::produced(&mut conn).await.map_err(err)?;
    drop(conn);
    let bus = format!("{:?} (jobs in {:?})", config.events.bus, config.jobs.store).to_lowercase();

    // Throughput: commit a burst (100 events per transaction) and time until all are handled.
    let started = Instant::now();
    probe::produce_burst(&pool, base, burst, 100)
        .await
        .map_err(err)?;
    let committed = started.elapsed();
    if !probe::wait_all_handled(&pool, &names, base + burst, burst, Duration::from_secs(600))
        .await
        .map_err(err)?
    {
        return Err("the burst was not handled within 10 minutes".into());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let (p50, p95, p99, _) = probe::latencies(&mut conn, &sub.name, base)
        .await
        .map_err(err)?;
    drop(conn);
    println!(
        "bus {bus}: throughput run: {burst} events committed in {:.2} s, all handled in {elapsed:.2} s = {:.0} events/s end to end; commit-to-handler p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms",
        committed.as_secs_f64(),
        burst as f64 / elapsed
    );

    // Latency at a steady rate: one event per transaction, paced, from 4 connections (as
    // concurrent requests would commit), so the rate is not bounded by one connection's fsyncs.
    let from = base + burst;
    let total = (rate * seconds) as i64;
    let started = Instant::now();
    const PRODUCERS: i64 = 4;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let pool = pool.clone();
        let per = rate.max(1) as f64 / PRODUCERS as f64;
        producers.push(tokio::spawn(async move {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = from + p;
            while i < from + total {
                tick.tick().await;
                probe::produce_one(&mut conn, i)
                    .await
                    .map_err(|e| e.to_string())?;
                i += PRODUCERS;
            }
            Ok::<(), String>(())
        }));
    }
    for p in producers {
        p.await.map_err(|e| e.to_string())??;
    }
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    if !probe::wait_all_handled(
        &pool,
        &names,
        from + total,
        burst + total,
        Duration::from_secs(600),
    )
    .await
    .map_err(err)?
    {
        return Err("the paced run was not handled within 10 minutes".into());
    }
    let (p50, p95, p99, _) = probe::latencies(&mut conn, &sub.name, from)
        .await
        .map_err(err)?;
    println!(
        "bus {bus}: paced run: {total} events at {achieved:.0}/s (one per transaction); commit-to-handler p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms"
    );
    drop(conn);
    backbone.stop().await;
    db.close().await;
    Ok(())
}

/// The caller (an administrator, by e-mail) and the "Benchmark" pipeline (created with 4 open
/// stages: 7 stages with incoming, won and lost).
pub async fn bench_pipeline(
    state: &crate::state::AppState,
    email: &str,
) -> Result<(Caller, deals_api::Pipeline), String> {
    let user = state
        .modules
        .accounts
        .find_user_by_email(email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user with e-mail {email}"))?;
    let caller = Caller::user(user.account_id, user.id);
    let deals = &state.modules.deals;
    let existing = deals
        .pipelines(caller)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|p| p.name == "Benchmark");
    let pipeline = match existing {
        Some(p) => p,
        None => deals
            .create_pipeline(
                caller,
                deals_api::NewPipeline {
                    name: "Benchmark".into(),
                    stages: ["Qualified", "Meeting", "Proposal", "Negotiation"]
                        .iter()
                        .map(|n| deals_api::NewStage {
                            name: n.to_string(),
                            color: "#99ccff".into(),
                        })
                        .collect(),
                },
            )
            .await
            .map_err(|e| e.to_string())?,
    };
    Ok((caller, pipeline))
}

pub async fn bench_users(
    state: &crate::state::AppState,
    caller: Caller,
) -> Result<Vec<kernel::UserId>, String> {
    let page = state
        .modules
        .accounts
        .list_users(caller, kernel::paging::PageRequest::new(None, Some(250)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(page.items.into_iter().map(|u| u.id).collect())
}

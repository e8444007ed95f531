use chrono::{DateTime, Utc};
use kernel::AccountId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TriggerId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub Uuid);

/// At most this many actions per trigger, conditions per trigger, and triggers per stage.
pub const MAX_ACTIONS: usize = 20;
pub const MAX_CONDITIONS: usize = 20;
pub const MAX_TRIGGERS_PER_PIPELINE: usize = 500;

/// What starts a trigger. The deal must be in the trigger's stage at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum When {
    /// Created in the stage.
    Created,
    /// Moved into the stage from another one.
    MovedTo,
    /// Moved into the stage or created in it.
    CreatedOrMoved,
    /// Its responsible user changed while in the stage.
    ResponsibleChanged,
    /// A field changed while in the stage: `name`, `price`, `tags`, or a custom field's id.
    FieldChanged { field: String },
    /// `offset_minutes` before (negative) or after the date in a date field, while in the stage.
    DateField { field_id: i64, offset_minutes: i64 },
    /// A message from the client arrived on the deal's chat (with the messaging module).
    MessageReceived,
    /// Only by hand, from the deal's page or a selection of deals.
    Manual,
}

impl When {
    pub fn code(&self) -> &'static str {
        match self {
            When::Created => "created",
            When::MovedTo => "moved_to",
            When::CreatedOrMoved => "created_or_moved",
            When::ResponsibleChanged => "responsible_changed",
            When::FieldChanged { .. } => "field_changed",
            When::DateField { .. } => "date_field",
            When::MessageReceived => "message_received",
            When::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOp {
    Equals,
    NotEquals,
    Contains,
    Empty,
    Filled,
}

/// A condition on the deal at the moment the trigger fires (and again when a delayed run
/// starts); all of a trigger's conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "if", rename_all = "snake_case")]
pub enum Condition {
    BudgetAtLeast {
        amount: i64,
    },
    BudgetAtMost {
        amount: i64,
    },
    HasTag {
        tag: String,
    },
    LacksTag {
        tag: String,
    },
    NameContains {
        text: String,
    },
    ResponsibleIn {
        user_ids: Vec<i64>,
    },
    /// A custom field's value as people read it, compared case-insensitively.
    Field {
        field_id: i64,
        op: FieldOp,
        value: String,
    },
    /// The deal's main contact (else its first) is in this contacts segment.
    ContactInSegment {
        segment_id: i64,
    },
}

/// When the actions run, counted from the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delay {
    Now,
    After {
        minutes: i64,
    },
    /// At the next `hour:minute` (UTC).
    AtTime {
        hour: u32,
        minute: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assign {
    Fixed,
    RoundRobin,
    LeastLoaded,
}

/// What a trigger does, in order. Texts may use `{{deal.name}}`, `{{deal.price}}`, `{{deal.id}}`
/// and `{{stage.name}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Action {
    CreateTask {
        task_type_id: i64,
        text: String,
        /// Due this long after the action runs.
        due_in_minutes: i64,
    },
    MoveTo {
        stage_id: i64,
    },
    /// One of `user_ids` (one for `fixed`): in turn, or the one with the fewest open deals.
    SetResponsible {
        assign: Assign,
        user_ids: Vec<i64>,
    },
    SetField {
        field_id: i64,
        value: String,
    },
    AddTags {
        tags: Vec<String>,
    },
    RemoveTags {
        tags: Vec<String>,
    },
    AddNote {
        text: String,
    },
    /// Sends a chat message to the deal's client on the deal's conversation (messaging).
    SendMessage {
        text: String,
    },
    /// Completes the deal's open tasks with this result.
    CompleteTasks {
        result: String,
    },
    /// POSTs the deal and the event as JSON, signed like account webhooks, to `url`.
    Webhook {
        url: String,
    },
    /// Starts a bot on the deal (unless that bot is already talking on it).
    StartBot {
        bot_id: i64,
    },
    /// Sends an e-mail through the configured SMTP server (`[automation] smtp_url`).
    SendEmail {
        to: EmailTo,
        /// For `to: address`.
        #[serde(default)]
        address: String,
        subject: String,
        body: String,
    },
}

/// Whom a robot's e-mail goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTo {
    /// The first e-mail of the deal's main contact (else its first contact).
    Contact,
    /// The deal's responsible user.
    Responsible,
    /// The address given.
    Address,
}

impl Action {
    pub fn code(&self) -> &'static str {
        match self {
            Action::CreateTask { .. } => "create_task",
            Action::MoveTo { .. } => "move_to",
            Action::SetResponsible { .. } => "set_responsible",
            Action::SetField { .. } => "set_field",
            Action::AddTags { .. } => "add_tags",
            Action::RemoveTags { .. } => "remove_tags",
            Action::AddNote { .. } => "add_note",
            Action::SendMessage { .. } => "send_message",
            Action::CompleteTasks { .. } => "complete_tasks",
            Action::Webhook { .. } => "webhook",
            Action::SendEmail { .. } => "send_email",
            Action::StartBot { .. } => "start_bot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerDraft {
    pub name: String,
    pub pipeline_id: i64,
    pub stage_id: i64,
    pub when: When,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub delay: Delay,
    /// Hold the actions until working hours (Monday to Friday, from config; UTC).
    #[serde(default)]
    pub working_hours: bool,
    pub actions: Vec<Action>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: TriggerId,
    pub name: String,
    pub pipeline_id: i64,
    pub stage_id: i64,
    pub when: When,
    pub conditions: Vec<Condition>,
    pub delay: Delay,
    pub working_hours: bool,
    pub actions: Vec<Action>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Runs of the last seven days that failed or were cut (a loop).
    pub failed_recently: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for its time.
    Pending,
    /// Handed to a worker.
    Queued,
    /// A worker is doing its actions.
    Running,
    Done,
    /// An action failed for good; `error` says why.
    Failed,
    /// Not run: the chain of robots that led here was deeper than allowed (a loop).
    Cut,
    /// Not run: at its (delayed) time the deal no longer met the conditions, left the stage,
    /// or was deleted.
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cut => "cut",
            RunStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> RunStatus {
        match s {
            "pending" => RunStatus::Pending,
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "cut" => RunStatus::Cut,
            "skipped" => RunStatus::Skipped,
            _ => RunStatus::Failed,
        }
    }
}

/// One action's outcome in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub index: usize,
    pub action: String,
    pub ok: bool,
    pub detail: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub trigger_id: TriggerId,
    pub trigger_name: String,
    pub deal_id: i64,
    pub event_type: String,
    pub status: RunStatus,
    /// How many robots' runs led to this one (1: a person's change).
    pub depth: i32,
    pub run_at: DateTime<Utc>,
    pub attempts: i32,
    pub steps: Vec<Step>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    pub deal: Option<i64>,
    pub trigger: Option<TriggerId>,
}

/// A unit of work for the job workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    Run {
        account_id: AccountId,
        run_id: RunId,
    },
    /// Several runs, done side by side by one job (one job's overhead for many small runs).
    Runs { runs: Vec<(AccountId, RunId)> },
    /// A bot's run to go on (started, replied to, or its wait is over).
    Bot {
        account_id: AccountId,
        bot_run_id: BotRunId,
    },
    Deliver {
        account_id: AccountId,
        delivery_id: DeliveryId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `{"event": …, "account_id": …, "data": …}`
    Json,
    /// amoCRM's `application/x-www-form-urlencoded` with PHP bracket keys.
    Form,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Form => "form",
        }
    }
}

/// amoCRM's webhook event codes this account can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 17] = [
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "add_company",
    "update_company",
    "delete_company",
    "add_task",
    "complete_task",
    "note_lead",
    "note_contact",
    "note_company",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDraft {
    pub url: String,
    pub events: Vec<String>,
    pub format: PayloadFormat,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub format: PayloadFormat,
    /// The HMAC-SHA256 key: `X-Voronka-Signature: sha256=<hex of HMAC(secret, body)>`.
    pub secret: String,
    pub enabled: bool,
    /// Why it was switched off by Voronka (a long run of failed deliveries).
    pub disabled_reason: Option<String>,
    pub failures_in_row: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Queued,
    Delivered,
    /// Given up after the last attempt, or the webhook was disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> DeliveryStatus {
        match s {
            "pending" => DeliveryStatus::Pending,
            "queued" | "sending" => DeliveryStatus::Queued,
            "delivered" => DeliveryStatus::Delivered,
            _ => DeliveryStatus::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    /// None for a trigger's "call a webhook" action.
    pub webhook_id: Option<WebhookId>,
    pub run_id: Option<RunId>,
    pub url: String,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_ms: Option<i32>,
    /// The start of the last response's body, or the connection error.
    pub last_response: Option<String>,
    pub next_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

// --- bots (Salesbot-style scenarios) -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BotId(pub i64);

/// At most this many steps per bot, and quick-reply buttons per message (amoCRM's limit).
pub const MAX_BOT_STEPS: usize = 100;
pub const MAX_BUTTONS: usize = 13;

/// One step of a bot. Steps are numbered from 0 in the JSON (from 1 in the UI); after a step
/// the bot goes on with the next one unless the step says where to go; past the last it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum BotStep {
    /// Sends a message to the deal's contact on its chat, with quick-reply buttons where the
    /// channel has them.
    Message {
        text: String,
        #[serde(default)]
        buttons: Vec<String>,
    },
    /// Waits for the client's reply, up to `timeout_minutes`; on a timeout goes to
    /// `on_timeout` (or stops).
    WaitReply {
        timeout_minutes: i64,
        #[serde(default)]
        on_timeout: Option<usize>,
    },
    /// Goes to the first rule's step that matches (the last reply, or the deal), else to
    /// `otherwise` (or the next step).
    Branch {
        rules: Vec<BranchRule>,
        #[serde(default)]
        otherwise: Option<usize>,
    },
    /// Does one of the triggers' actions on the deal.
    Act {
        action: Action,
    },
    Jump {
        to: usize,
    },
    Stop,
}

impl BotStep {
    pub fn code(&self) -> &'static str {
        match self {
            BotStep::Message { .. } => "message",
            BotStep::WaitReply { .. } => "wait_reply",
            BotStep::Branch { .. } => "branch",
            BotStep::Act { .. } => "act",
            BotStep::Jump { .. } => "jump",
            BotStep::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRule {
    #[serde(rename = "if")]
    pub when: Match,
    pub goto: usize,
}

/// What a branch rule looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", rename_all = "snake_case")]
pub enum Match {
    /// The last reply is this text (case and surrounding spaces ignored), e.g. a button's.
    ReplyIs {
        text: String,
    },
    ReplyContains {
        text: String,
    },
    /// A condition on the deal, as triggers have.
    Deal {
        condition: Condition,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotDraft {
    pub name: String,
    /// The pipeline whose stages the bot's moves refer to.
    pub pipeline_id: i64,
    pub steps: Vec<BotStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bot {
    pub id: BotId,
    pub name: String,
    pub pipeline_id: i64,
    pub steps: Vec<BotStep>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BotRunId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotRunStatus {
    /// Going on with its steps (or about to).
    Running,
    /// Waiting for the client's reply (or the timeout).
    Waiting,
    Done,
    /// Stopped by a person.
    Stopped,
    /// A step failed; `error` says why.
    Failed,
}

impl BotRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BotRunStatus::Running => "running",
            BotRunStatus::Waiting => "waiting",
            BotRunStatus::Done => "done",
            BotRunStatus::Stopped => "stopped",
            BotRunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> BotRunStatus {
        match s {
            "running" => BotRunStatus::Running,
            "waiting" => BotRunStatus::Waiting,
            "done" => BotRunStatus::Done,
            "stopped" => BotRunStatus::Stopped,
            _ => BotRunStatus::Failed,
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, BotRunStatus::Running | BotRunStatus::Waiting)
    }
}

/// What a bot did at a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotEvent {
    pub at: DateTime<Utc>,
    /// From 0, as in the steps.
    pub step: usize,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotRun {
    pub id: BotRunId,
    pub bot_id: BotId,
    pub bot_name: String,
    pub deal_id: i64,
    pub status: BotRunStatus,
    /// The step it is at (waiting at, or to do next).
    pub step: usize,
    pub waiting_until: Option<DateTime<Utc>>,
    /// The client's last reply.
    pub reply: Option<String>,
    pub history: Vec<BotEvent>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
